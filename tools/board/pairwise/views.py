"""The board's four views, each written atomically (a temporary file, then a rename):

- board.csv   one row per model, alpaca_eval's columns then ours (stats.BOARD_COLUMNS);
- board.md    the same table in Markdown, with the judge, the reference and the warnings;
- board.png   win rates with their 95% bootstrap intervals as whiskers, and the LC win rate;
- board.html  one static page (no script, no network): the warnings, the table, the chart, and
              per question every model's answer beside the reference's with both verdicts.
              All model text is HTML-escaped.

With `compare` (tools/board/pairwise/compare.py) board.md and board.html also show the model-vs-model
matrix (difference of win rates, its 95% interval, % of resamples where the row model is ahead),
the Bradley-Terry strengths and, with several judges, their agreement; board_versus.csv and
board_bradley_terry.csv hold the same numbers.

`table_text` is the plain-text table `tools/board --show` prints. Not handled: pagination or
search in the page (a large question set gives a long page), charts other than the one.
"""
from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

import pandas as pd

from board.pairwise.stats import BOARD_COLUMNS
from lib.records import write_atomic, write_together


def _num(value, digits: int = 1) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _int(value) -> str:
    return "n/a" if pd.isna(value) else str(int(value))


def _ci(row) -> str:
    if pd.isna(row["win_rate_ci_low"]):
        return "n/a"
    return f"[{row['win_rate_ci_low']:.1f}, {row['win_rate_ci_high']:.1f}]"


def _consistency(row) -> str:
    return "n/a (not judged)" if pd.isna(row["position_consistency"]) else f"{row['position_consistency']:.0f}%"


def display_table(board: pd.DataFrame) -> pd.DataFrame:
    """The columns a reader needs, formatted: what the printed, Markdown and HTML tables show."""
    rows = []
    for model, row in board.iterrows():
        rows.append({
            "model": model,
            "win rate": _num(row["win_rate"]),
            "95% CI": _ci(row),
            "LC win rate": _num(row["lc_win_rate"]),
            "consistency": _consistency(row),
            "wins/draws/losses": f"{_int(row['n_wins'])}/{_int(row['n_draws'])}/{_int(row['n_wins_base'])}",
            "n": _int(row["n_total"]),
            "avg length": _int(row["avg_length"]),
            "failed": _int(row["n_failed"]),
        })
    return pd.DataFrame(rows)


def header_lines(about: dict) -> list[str]:
    judge = about["judge"]
    lines = [f"judge: {judge['name']} ({judge['kind']}, protocol {judge['protocol']}, both orders); "
             f"reference: {about['reference']}; questions: {about['n_questions']}"]
    info = about.get("set") or {}
    lines += [f"set {info.get('name')}: {note}" for note in info.get("notes") or []]
    check = judge.get("last_check")
    if check:
        stale = "" if check.get("current") else " (of an older version of this judge)"
        lines.append(f"judge-check{stale}: accuracy {_num(check.get('accuracy'), 0)}%, consistency "
                     f"{_num(check.get('consistency'), 0)}% on {check.get('n_pairs')} pairs with a plainly right answer")
    else:
        lines.append("judge-check: not run for this judge (make judge-check)")
    for judge in about.get("judges") or []:
        check = judge.get("last_check")
        lines.append(f"judge {judge['name']} ({judge['kind']}, {judge['protocol']}): consistency "
                     f"{_num(judge.get('position_consistency'), 0)}%, judge-check "
                     + (f"accuracy {_num(check.get('accuracy'), 0)}%" if check else "not run"))
    for row in about.get("judge_agreement") or []:
        lines.append(f"judges {row['judge_a']} / {row['judge_b']}: same side on {_num(row['same_side'], 0)}% of "
                     f"{row['n_pairs']} pairs, Cohen's kappa {_num(row['kappa'], 2)}")
    return lines


def versus_matrix(versus: pd.DataFrame) -> pd.DataFrame:
    """Row model A, column model B: 'diff [low, high] p%' (A's win rate minus B's, in points)."""
    models = list(dict.fromkeys(versus["model_a"]))
    matrix = pd.DataFrame("", index=pd.Index(models, name="A \\ B"), columns=models)
    for _, r in versus.iterrows():
        matrix.loc[r["model_a"], r["model_b"]] = (
            "n/a" if pd.isna(r["ci_low"]) else
            f"{r['diff']:+.1f} [{r['ci_low']:+.1f}, {r['ci_high']:+.1f}] {r['p_a_ahead']:.0f}%")
    for m in models:
        matrix.loc[m, m] = "-"
    return matrix


def bt_display(bt: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "model": bt.index,
        "strength": [f"{s:+.2f} [{lo:+.2f}, {hi:+.2f}]" for s, lo, hi in
                     zip(bt["strength"], bt["strength_ci_low"], bt["strength_ci_high"])],
        "win rate vs reference": [f"{w:.1f} [{lo:.1f}, {hi:.1f}]" for w, lo, hi in
                                  zip(bt["win_rate_vs_reference"], bt["wr_ci_low"], bt["wr_ci_high"])],
        "battles": [str(int(n)) for n in bt["n_battles"]]})


VERSUS_NOTE = ("Row A against column B: A's win rate minus B's (points) over the questions both answered, "
               "[95% percentile bootstrap interval, questions resampled, paired], then the % of resamples in "
               "which A is ahead. An interval that excludes 0 says which is better on this question set.")
BT_NOTE = ("Bradley-Terry over every battle (reference included): strength on the logit scale, the reference "
           "at 0, and the win rate against the reference it implies, each with its 95% percentile bootstrap "
           "interval (questions resampled).")


def dataset_matrix(by_dataset: pd.DataFrame) -> pd.DataFrame:
    """Models down, datasets across (with their question counts): "win rate [low, high]"."""
    cells = by_dataset.assign(cell=[_num(r.win_rate) + ("" if pd.isna(r.win_rate_ci_low) else
                                    f" [{_num(r.win_rate_ci_low)}, {_num(r.win_rate_ci_high)}]")
                                    for r in by_dataset.itertuples()])
    sizes = cells.groupby("dataset", sort=False)["n_questions"].max()
    table = cells.pivot(index="model", columns="dataset", values="cell")
    table = table.reindex(index=list(dict.fromkeys(cells["model"])), columns=list(sizes.index)).fillna("")
    table.columns = [f"{d} ({n} question{'s' if n != 1 else ''})" for d, n in sizes.items()]
    return table.reset_index()


def compare_sections(compare: dict | None) -> list[tuple[str, pd.DataFrame, str]]:
    """(title, table, note) for each comparison the board has."""
    compare = compare or {}
    found = []
    if compare.get("versus") is not None and len(compare["versus"]):
        found.append(("Model against model", versus_matrix(compare["versus"]).reset_index(), VERSUS_NOTE))
    if compare.get("bt") is not None and len(compare["bt"]):
        found.append(("Bradley-Terry", bt_display(compare["bt"]), BT_NOTE))
    if compare.get("by_judge") is not None and len(compare["by_judge"]):
        found.append(("By judge", compare["by_judge"].map(lambda v: _num(v, 1)).reset_index(),
                      "Each judge's own win rate and LC win rate against the reference; the board above "
                      "uses their mean preference."))
    if compare.get("by_dataset") is not None and len(compare["by_dataset"]):
        found.append(("By dataset", dataset_matrix(compare["by_dataset"]),
                      "Each model's win rate against the reference on the questions of each dataset (the "
                      "questions' `dataset` field), with its 95% percentile bootstrap interval."))
    if compare.get("agreement") is not None and len(compare["agreement"]):
        agreement = compare["agreement"].assign(
            same_side=lambda t: t["same_side"].map(lambda v: _num(v, 1)),
            kappa=lambda t: t["kappa"].map(lambda v: _num(v, 2)))
        found.append(("Agreement between judges", agreement,
                      "Same side: % of pairs both judges gave the same side (model, tie, reference); "
                      "Cohen's kappa: that agreement beyond chance (1 = always, 0 = as by chance)."))
    # Sections of a protocol or a set (board/arena_hard/board.py: Arena-Hard's score, the published table).
    found += [(title, table, note) for title, table, note, _ in compare.get("sections") or []]
    return found


def compare_csvs(compare: dict | None, out_dir: Path) -> tuple[dict[Path, bytes], list[Path]]:
    """({path: bytes} of the comparison CSVs, those of an earlier board that no longer apply)."""
    files, stale = {}, []
    for key, name, index in (("versus", "board_versus.csv", False), ("bt", "board_bradley_terry.csv", True),
                             ("by_judge", "board_by_judge.csv", True), ("by_dataset", "board_by_dataset.csv", False)):
        table = (compare or {}).get(key)
        if table is not None and len(table):
            files[out_dir / name] = table.to_csv(index=index).encode("utf-8")
        else:
            stale.append(out_dir / name)  # from an earlier board with more judges or models
    return files, stale


def table_text(board: pd.DataFrame, about: dict, warnings: list[str]) -> str:
    """The table as printed by `make board`."""
    shown = display_table(board).set_index("model")
    lines = [*header_lines(about), "", shown.to_string()]
    lines += ["", *(f"WARNING: {w}" for w in warnings)] if warnings else []
    return "\n".join(lines)


def csv_bytes(board: pd.DataFrame) -> bytes:
    return board[BOARD_COLUMNS].to_csv().encode("utf-8")


def write_csv(board: pd.DataFrame, path: Path) -> None:
    write_atomic(path, csv_bytes(board))


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(shown: pd.DataFrame) -> list[str]:
    lines = ["| " + " | ".join(_md_cell(c) for c in shown.columns) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(shown.columns) - 1)) + "|"]
    return lines + ["| " + " | ".join(_md_cell(v) for v in row) + " |" for _, row in shown.iterrows()]


def render_markdown(board: pd.DataFrame, about: dict, warnings: list[str], compare: dict | None = None) -> str:
    shown = display_table(board)
    lines = ["# Leaderboard", "", *(f"{line}  " for line in header_lines(about)), ""]
    lines += [f"> **WARNING:** {_md_cell(w)}" + ("\n>" if i < len(warnings) - 1 else "")
              for i, w in enumerate(warnings)]
    if warnings:
        lines.append("")
    lines += _md_table(shown)
    lines += ["", "Win rate: % of questions where the judge prefers the model's answer to the reference's "
              "(ties count half), each pair judged in both orders. 95% CI: bootstrap over questions. "
              "LC: length-controlled win rate. Consistency: % of pairs where both orders pick the same side.", ""]
    for title, table, note in compare_sections(compare):
        lines += [f"## {title}", "", *_md_table(table), "", note, ""]
    return "\n".join(lines)


def render_png(board: pd.DataFrame, about: dict, low_consistency: bool) -> bytes:
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    data = board.iloc[::-1]  # best at the top
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.5 * len(data)), dpi=100)
    y = list(range(len(data)))
    win = data["win_rate"].to_numpy(dtype=float)
    low = (win - data["win_rate_ci_low"].to_numpy(dtype=float)).clip(min=0)
    high = (data["win_rate_ci_high"].to_numpy(dtype=float) - win).clip(min=0)
    ax.errorbar(win, y, xerr=[low, high], fmt="o", color="tab:blue", capsize=4, label="win rate, 95% CI")
    ax.plot(data["lc_win_rate"].to_numpy(dtype=float), [v - 0.2 for v in y], "D", color="tab:orange",
            markersize=5, label="length-controlled")  # a little below, so it never hides the win rate
    ax.axvline(50, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(y, [str(m) for m in data.index])
    ax.set_ylim(-0.6, len(data) - 0.4)
    ax.set_xlim(0, 100)
    ax.set_xlabel(f"% preferred to the reference ({about['reference']})")
    title = f"judge: {about['judge']['name']}, {about['n_questions']} questions"
    if low_consistency:
        title += "\nWARNING: judge without signal (low position consistency)"
    ax.set_title(title, fontsize=10, color="darkred" if low_consistency else "black")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 1400px; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #f3f3f3; } td.model, th:first-child { text-align: left; } td.model { font-weight: 600; }
.warning { background: #fde8e8; border: 2px solid #c62828; color: #8e0000; padding: 8px 12px; margin: 6px 0; font-weight: 600; }
.about { color: #555; }
details { border: 1px solid #ddd; margin: 8px 0; padding: 4px 8px; }
summary { cursor: pointer; font-weight: 600; }
.answers { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 10px; }
.answer { border: 1px solid #e0e0e0; padding: 6px; background: #fafafa; }
.answer pre { white-space: pre-wrap; word-wrap: break-word; font-family: inherit; margin: 4px 0; max-height: 24em; overflow: auto; }
.cut { font-style: italic; color: #555; }
.verdict { font-size: 0.9em; background: #eef4fb; padding: 4px; }
.won { color: #1b5e20; font-weight: 600; } .lost { color: #b71c1c; font-weight: 600; } .tie { color: #555; font-weight: 600; }
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


HTML_TEXT_CHARS = 8_000  # of each answer or question on the page; board_pairs.json has them whole


def _pre(text: str) -> str:
    """A text in <pre>, cut at HTML_TEXT_CHARS so that a huge answer does not make a huge page."""
    if len(text) <= HTML_TEXT_CHARS:
        return f"<pre>{_e(text)}</pre>"
    return (f"<pre>{_e(text[:HTML_TEXT_CHARS])}</pre><p class=\"cut\">... cut here: {len(text):,} characters in "
            "all; board_pairs.json has the whole text</p>")


def _side(p_model: float | None) -> str:
    if p_model is None:
        return '<span class="lost">no verdict (call failed; rerun)</span>'
    if abs(p_model - 0.5) < 1e-9:
        return '<span class="tie">tie</span>'
    if p_model > 0.5:
        return f'<span class="won">model</span> (P = {p_model:.2f})'
    return f'<span class="lost">reference</span> (P(model) = {p_model:.2f})'


def _verdict_html(result: dict) -> str:
    if result["identical"]:
        return '<div class="verdict">same answer as the reference: <span class="tie">tie</span>, not judged</div>'
    a, b = result["pref_model_first"], result["pref_reference_first"]
    first = None if a is None else 2 - a  # P(model better) with the model shown first
    second = None if b is None else b - 1
    lines = [f"model shown first: judge picks {_side(first)}",
             f"model shown second: judge picks {_side(second)}"]
    if result["preference"] is not None:
        agree = "orders agree" if result["consistent"] else "orders disagree"
        lines.append(f"combined: {_side(result['preference'] - 1)}; {agree}")
    return '<div class="verdict">' + "<br>".join(lines) + "</div>"


def _html_table(table: pd.DataFrame, table_id: str, classes: dict | None = None) -> list[str]:
    """classes: (row label, column) -> CSS class of that cell."""
    out = [f'<table id="{table_id}"><thead><tr>' + "".join(f"<th>{_e(c)}</th>" for c in table.columns)
           + "</tr></thead><tbody>"]
    for _, row in table.iterrows():
        cells = [f'<td class="model">{_e(row.iloc[0])}</td>']
        for column, value in list(row.items())[1:]:
            css = (classes or {}).get((row.iloc[0], column))
            cells.append(f'<td class="{css}">{_e(value)}</td>' if css else f"<td>{_e(value)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return out + ["</tbody></table>"]


def versus_classes(versus: pd.DataFrame) -> dict:
    """A cell whose interval excludes 0 is coloured by who is ahead."""
    return {(r["model_a"], r["model_b"]): "won" if r["ci_low"] > 0 else "lost"
            for _, r in versus.iterrows() if r["ci_low"] > 0 or r["ci_high"] < 0}


def render_html(board: pd.DataFrame, about: dict, warnings: list[str], results: list[dict], png: bytes,
                compare: dict | None = None) -> str:
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>Leaderboard: {_e(about['judge']['name'])} judge</title><style>{CSS}</style></head><body>",
           "<h1>Leaderboard</h1>"]
    out += [f'<p class="about">{_e(line)}</p>' for line in header_lines(about)]
    out += [f'<div class="warning">WARNING: {_e(w)}</div>' for w in warnings]
    shown = display_table(board)
    out.append('<table id="board"><thead><tr>' + "".join(f"<th>{_e(c)}</th>" for c in shown.columns)
               + "</tr></thead><tbody>")
    for _, row in shown.iterrows():
        cells = [f'<td class="model">{_e(row["model"])}</td>'] + [f"<td>{_e(v)}</td>" for v in list(row)[1:]]
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    out.append(f'<img alt="win rates with 95% intervals" src="data:image/png;base64,{base64.b64encode(png).decode()}">')
    out.append("<p>Win rate: % of questions where the judge prefers the model's answer to the reference's "
               "(ties count half). Every pair is judged twice, the model's answer shown first and then "
               "second; P is the judge's probability that the model's answer is better. A judge whose two "
               "verdicts keep disagreeing follows the position of the answers, not their content.</p>")
    for title, table, note in compare_sections(compare):
        table_id = {"Model against model": "versus", "Bradley-Terry": "bradley-terry", "By judge": "by-judge",
                    "By dataset": "by-dataset", **{t: i for t, _, _, i in (compare or {}).get("sections") or []}
                    }.get(title, "agreement")
        classes = versus_classes(compare["versus"]) if table_id == "versus" else None
        out += [f"<h2>{_e(title)}</h2>", *_html_table(table, table_id, classes), f"<p>{_e(note)}</p>"]
    out.append("<h2>Questions</h2>")
    by_question: dict[int, list[dict]] = {}
    for result in results:
        by_question.setdefault(result["question_id"], []).append(result)
    for qid in sorted(by_question):
        group = by_question[qid]
        opened = " open" if len(by_question) <= 10 else ""  # a short set is read whole; a long one on demand
        out.append(f"<details{opened}><summary>Q{qid + 1}. {_e(group[0]['instruction'][:200])}</summary>")
        if len(group[0]["instruction"]) > 200:  # the summary shows only its start
            out.append(_pre(group[0]["instruction"]))
        out.append('<div class="answers">')
        out.append(f'<div class="answer"><b>reference: {_e(about["reference"])}</b>'
                   f"{_pre(group[0]['reference_output'])}</div>")
        for result in group:
            out.append(f'<div class="answer"><b>{_e(result["model"])}</b>{_verdict_html(result)}'
                       f"{_pre(result['model_output'])}</div>")
        out.append("</div></details>")
    out.append("</body></html>")
    return "\n".join(out)


def view_files(board: pd.DataFrame, about: dict, warnings: list[str], results: list[dict], out_dir: Path,
               low_consistency: bool, compare: dict | None = None) -> tuple[dict[Path, bytes], list[Path]]:
    """({path: bytes} of board.md, board.png, board.html and the comparison CSVs; stale CSVs).
    board.csv is not among them: tools/board writes it last, as make's target."""
    png = render_png(board, about, low_consistency)
    files = {out_dir / "board.md": render_markdown(board, about, warnings, compare).encode("utf-8"),
             out_dir / "board.png": png,
             out_dir / "board.html": render_html(board, about, warnings, results, png, compare).encode("utf-8")}
    csvs, stale = compare_csvs(compare, out_dir)
    return {**files, **csvs}, stale


def write_all(board: pd.DataFrame, about: dict, warnings: list[str], results: list[dict], out_dir: Path,
              low_consistency: bool, compare: dict | None = None) -> list[Path]:
    """Write the views together (none replaced when one cannot be written); their paths."""
    files, stale = view_files(board, about, warnings, results, out_dir, low_consistency, compare)
    write_together(files)
    for path in stale:
        path.unlink(missing_ok=True)
    return list(files)
