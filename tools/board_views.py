"""The board's four views, each written atomically (a temporary file, then a rename):

- board.csv   one row per model, alpaca_eval's columns then ours (board_stats.BOARD_COLUMNS);
- board.md    the same table in Markdown, with the judge, the reference and the warnings;
- board.png   win rates with their 95% bootstrap intervals as whiskers, and the LC win rate;
- board.html  one static page (no script, no network): the warnings, the table, the chart, and
              per question every model's answer beside the reference's with both verdicts.
              All model text is HTML-escaped.

`table_text` is the plain-text table `board.py --show` prints. Not handled: pagination or
search in the page (a large question set gives a long page), charts other than the one.
"""
from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

import pandas as pd

from board_stats import BOARD_COLUMNS
from records import write_atomic


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
    check = judge.get("last_check")
    if check:
        stale = "" if check.get("current") else " (of an older version of this judge)"
        lines.append(f"judge-check{stale}: accuracy {_num(check.get('accuracy'), 0)}%, consistency "
                     f"{_num(check.get('consistency'), 0)}% on {check.get('n_pairs')} pairs with a plainly right answer")
    else:
        lines.append("judge-check: not run for this judge (make judge-check)")
    return lines


def table_text(board: pd.DataFrame, about: dict, warnings: list[str]) -> str:
    """The table as printed by `make board`."""
    shown = display_table(board).set_index("model")
    lines = [*header_lines(about), "", shown.to_string()]
    lines += ["", *(f"WARNING: {w}" for w in warnings)] if warnings else []
    return "\n".join(lines)


def write_csv(board: pd.DataFrame, path: Path) -> None:
    write_atomic(path, board[BOARD_COLUMNS].to_csv().encode("utf-8"))


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def write_markdown(board: pd.DataFrame, about: dict, warnings: list[str], path: Path) -> None:
    shown = display_table(board)
    lines = ["# Leaderboard", "", *(f"{line}  " for line in header_lines(about)), ""]
    lines += [f"> **WARNING:** {_md_cell(w)}" + ("\n>" if i < len(warnings) - 1 else "")
              for i, w in enumerate(warnings)]
    if warnings:
        lines.append("")
    lines.append("| " + " | ".join(shown.columns) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(shown.columns) - 1)) + "|")
    for _, row in shown.iterrows():
        lines.append("| " + " | ".join(_md_cell(v) for v in row) + " |")
    lines += ["", "Win rate: % of questions where the judge prefers the model's answer to the reference's "
              "(ties count half), each pair judged in both orders. 95% CI: bootstrap over questions. "
              "LC: length-controlled win rate. Consistency: % of pairs where both orders pick the same side.", ""]
    write_atomic(path, "\n".join(lines).encode("utf-8"))


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
.verdict { font-size: 0.9em; background: #eef4fb; padding: 4px; }
.won { color: #1b5e20; font-weight: 600; } .lost { color: #b71c1c; font-weight: 600; } .tie { color: #555; font-weight: 600; }
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


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


def render_html(board: pd.DataFrame, about: dict, warnings: list[str], results: list[dict], png: bytes) -> str:
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
    out.append("<h2>Questions</h2>")
    by_question: dict[int, list[dict]] = {}
    for result in results:
        by_question.setdefault(result["question_id"], []).append(result)
    for qid in sorted(by_question):
        group = by_question[qid]
        opened = " open" if len(by_question) <= 10 else ""  # a short set is read whole; a long one on demand
        out.append(f"<details{opened}><summary>Q{qid + 1}. {_e(group[0]['instruction'][:200])}</summary>")
        if len(group[0]["instruction"]) > 200:  # the summary shows only its start
            out.append(f"<pre>{_e(group[0]['instruction'])}</pre>")
        out.append('<div class="answers">')
        out.append(f'<div class="answer"><b>reference: {_e(about["reference"])}</b>'
                   f"<pre>{_e(group[0]['reference_output'])}</pre></div>")
        for result in group:
            out.append(f'<div class="answer"><b>{_e(result["model"])}</b>{_verdict_html(result)}'
                       f"<pre>{_e(result['model_output'])}</pre></div>")
        out.append("</div></details>")
    out.append("</body></html>")
    return "\n".join(out)


def write_all(board: pd.DataFrame, about: dict, warnings: list[str], results: list[dict], out_dir: Path,
              low_consistency: bool) -> list[Path]:
    """Write board.md, board.png and board.html (board.csv is written last by board.py)."""
    png = render_png(board, about, low_consistency)
    paths = [out_dir / "board.md", out_dir / "board.png", out_dir / "board.html"]
    write_markdown(board, about, warnings, paths[0])
    write_atomic(paths[1], png)
    write_atomic(paths[2], render_html(board, about, warnings, results, png).encode("utf-8"))
    return paths
