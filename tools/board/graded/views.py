"""The graded board's views, each written atomically:

- board.csv            one row per model: score, its 95% interval, turn means, the most-likely
                       rating's mean, n_questions, n_ratings, n_failed, n_missing, share_cued,
                       then one column per category (AlignBench: Reasoning, Language, Overall);
- board_categories.csv model x category means; board_versus.csv the paired differences;
- board_ratings.json   every rating: model, question, turn, prompt, score, label, source,
                       probabilities and the judge's explanation;
- board.md             the table, the warnings, the published scores in their own section (and
                       with VERSUS=all, MT-Bench's pairwise table: board/graded/pairs.py);
- board.png            the category radar chart (one polygon per model, 0-10);
- board.html           one static page (no script, no network): warnings, tables, the chart, the
                       published table, and per question each model's answer per turn with the
                       judge's explanation and rating. All model and judge text is HTML-escaped.
Not handled: pagination of a long page (683 AlignBench questions make one long page).
"""
from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

import pandas as pd

from board.graded.pairs import display as pairwise_display
from lib.records import write_atomic, write_json_atomic

COLUMNS = ["model", "score", "score_ci_low", "score_ci_high", "turn1", "turn2", "score_most_likely", "n_questions",
           "n_ratings", "n_failed", "n_missing", "share_cued"]
SOURCES = {"logits": "read from the logits at the judge's own [[", "logits-cued": "the judge wrote no [[: read after an appended one",
           "fast": "fast mode: no explanation", "text": "parsed from the text", "logprobs": "from the API's logprobs"}


def _n(value, digits: int = 2) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def published(info: dict | None) -> dict | None:
    """The set's published table (benchsets.published_path) with the judge that made it."""
    from lib.benchsets import published_path

    spec = (info or {}).get("published")
    if not spec or not spec.get("path"):
        return None
    path = published_path(spec)
    if path is None:
        return {**spec, "rows": None, "error": f"{spec['path']} not found"}
    table = pd.read_csv(path)
    return {**spec, "rows": table.to_dict("records"), "columns": list(table.columns)}


def full_table(board: pd.DataFrame, categories: pd.DataFrame) -> pd.DataFrame:
    table = board.reindex(columns=[c for c in COLUMNS if c in board.columns] +
                          [c for c in board.columns if c not in COLUMNS])
    if not categories.empty:
        table = table.merge(categories.reset_index(), on="model", how="left")
    return table


def write_csv(board: pd.DataFrame, categories: pd.DataFrame, path: Path) -> None:
    write_atomic(path, full_table(board, categories).to_csv(index=False, float_format="%.4f").encode("utf-8"))


def display_table(board: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in board.iterrows():
        rows.append({"model": r["model"], "score": _n(r["score"]),
                     "95% CI": f"[{_n(r['score_ci_low'])}, {_n(r['score_ci_high'])}]",
                     "turn 1": _n(r.get("turn1")), "turn 2": _n(r.get("turn2")),
                     "most likely": _n(r["score_most_likely"]), "questions": str(r["n_questions"]),
                     "ratings": str(r["n_ratings"]), "failed": str(r["n_failed"]), "missing": str(r["n_missing"])})
    return pd.DataFrame(rows)


def header(about: dict) -> list[str]:
    what = {"mt_bench": "MT-Bench (FastChat's single-answer prompts; score = mean over all graded turns)",
            "alignbench": "AlignBench (the project's own prompt by its protocol; score = Overall = (Reasoning + Language) / 2)",
            "own": "the project's own 1-10 grading prompt (not a published benchmark)"}[about["grader"]]
    lines = [f"graded: {what}", f"judge: {about['judge']} ({about['judge_kind']}); questions: {about['questions']}"]
    if about["judge_kind"] in ("llama.cpp", "transformers"):
        lines.append("a local judge: each rating is the expected value sum k*P(k) over 1-10, read from the logits "
                     "after its explanation; 'most likely' is the mean of the most probable ratings")
    return lines + [f"note: {n}" for n in about.get("notes", [])]


def _md(table: pd.DataFrame) -> list[str]:
    esc = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    return ["| " + " | ".join(map(esc, table.columns)) + " |", "|" + "---|" * len(table.columns)] + \
           ["| " + " | ".join(esc(v) for v in row) + " |" for row in table.itertuples(index=False)]


def published_lines(pub: dict | None, judge: str) -> tuple[str, pd.DataFrame | None]:
    if not pub:
        return "", None
    same = pub.get("comparable_with") and pub["comparable_with"] == judge
    note = (f"Published scores ({pub['path']}), judged by {pub.get('judge', '?')}: comparable only with a board "
            f"graded by the same judge" + (" - this one is." if same else f"; this board's judge is {judge}, so they are not."))
    rows = pub.get("rows")
    return note, (pd.DataFrame(rows, columns=pub.get("columns")) if rows else None)


def versus_display(versus: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([{"A": r.model_a, "B": r.model_b, "A - B": _n(r.difference),
                          "95% CI": f"[{_n(r.ci_low)}, {_n(r.ci_high)}]", "A ahead": f"{_n(r.a_ahead_pct, 0)}%",
                          "questions": r.n_questions} for r in versus.itertuples()])


PAIRWISE_NOTE = ("every two models, every question and turn, two games (each model shown first once); verdicts "
                 "that differ count as a tie, as FastChat's show_result counts them; win rate (tie = half) is its "
                 "win_rate_adjusted. Games without a verdict are counted as failed, not dropped silently.")


def render_png(categories: pd.DataFrame, about: dict) -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    plt.rcParams["font.sans-serif"] = ["Noto Sans CJK SC", "WenQuanYi Zen Hei", "DejaVu Sans"]
    cats = [c for c in categories.columns if c not in ("Reasoning", "Language", "Overall")] if not categories.empty else []
    fig = plt.figure(figsize=(6.4, 5.6), dpi=100)
    ax = fig.add_subplot(111, polar=True)
    if len(cats) >= 3:
        angles = np.linspace(0, 2 * np.pi, len(cats), endpoint=False).tolist()
        for model, row in categories[cats].iterrows():
            values = [0.0 if pd.isna(v) else float(v) for v in row]
            ax.plot(angles + angles[:1], values + values[:1], label=str(model))
            ax.fill(angles + angles[:1], values + values[:1], alpha=0.1)
        ax.set_xticks(angles)
        ax.set_xticklabels(cats, fontsize=8)
    ax.set_ylim(0, 10)
    ax.set_title(f"{about['grader']}: mean rating per category (judge {about['judge']})", fontsize=9)
    if len(cats) >= 3:
        ax.legend(loc="upper right", bbox_to_anchor=(1.3, 1.1), fontsize=7)
    else:
        ax.text(0, 0, "fewer than 3 categories: no radar", ha="center")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _html_table(table: pd.DataFrame, table_id: str) -> str:
    e = html.escape
    head = "".join(f"<th>{e(str(c))}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in row) + "</tr>" for row in table.itertuples(index=False))
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _rating_html(row: dict) -> str:
    e = html.escape
    score = _n(row.get("score"))
    source = SOURCES.get(row.get("source"), "failed: no rating")
    probs = row.get("probs") or {}
    top = ", ".join(f"{k}: {v:.2f}" for k, v in sorted(probs.items(), key=lambda kv: -kv[1])[:3]) if probs else ""
    return (f'<div class="rating" data-score="{e(score)}"><b>rating {e(score)}</b> (most likely {e(str(row.get("label")))}; '
            f'{e(source)}{"; " + e(top) if top else ""})<pre class="judgment">{e(row.get("judgment") or "")}</pre></div>')


def render_html(board, categories, versus, frame, items, about, warnings, png: bytes, pairwise=None) -> str:
    e = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>graded board</title><style>"
             "body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px}pre{white-space:pre-wrap;background:#f6f6f6}"
             ".warn{color:#a00}</style></head><body><h1>Graded board</h1>"]
    parts += [f"<p>{e(line)}</p>" for line in header(about)]
    parts += [f'<p class="warn">warning: {e(w)}</p>' for w in warnings]
    parts.append(_html_table(display_table(board), "board"))
    if not categories.empty:
        parts += ["<h2>By category</h2>", _html_table(categories.reset_index().round(2).fillna("n/a"), "categories")]
    if not versus.empty:
        parts += ["<h2>Model against model</h2>", _html_table(versus_display(versus), "versus")]
    if pairwise is not None:
        parts += ["<h2>MT-Bench pairwise (FastChat's pairwise-all)</h2>", f"<p>{e(PAIRWISE_NOTE)}</p>",
                  _html_table(pairwise_display(pairwise), "pairwise")]
    parts.append(f'<img id="radar" alt="category radar" src="data:image/png;base64,{base64.b64encode(png).decode()}">')
    note, pub = published_lines(about.get("published"), about["judge"])
    if note:
        parts += ["<h2>Published scores</h2>", f"<p>{e(note)}</p>"]
        if pub is not None:
            parts.append(_html_table(pub.fillna(""), "published"))
    parts.append("<h2>Answers and ratings</h2>")
    by_key = {(r["model"], r["question_id"], r["turn"]): r for r in frame.to_dict("records")}
    seen = {}
    for item in items:
        seen.setdefault(item["question_id"], []).append(item)
    for qid, group in seen.items():
        q = group[0]["question"]
        turns = q.get("turns") or [q.get("instruction", "")]
        parts.append(f'<section class="question" id="q-{e(str(qid))}"><h3>{e(str(qid))} ({e(group[0]["category"])})</h3>')
        for t, text in enumerate(turns, 1):
            parts.append(f"<p><b>turn {t}</b></p><pre class='turn'>{e(text)}</pre>")
            for item in group:
                if item["turn"] != t:
                    continue
                answer = item["outputs"][t - 1] if t - 1 < len(item["outputs"]) else ""
                parts.append(f'<div class="answer" data-model="{e(item["model"])}"><p>{e(item["model"])}:</p>'
                             f"<pre>{e(answer)}</pre>{_rating_html(by_key[(item['model'], qid, t)])}</div>")
        parts.append("</section>")
    return "".join(parts) + "</body></html>"


def write_all(board, categories, versus, frame, items, about, warnings, out: Path, pairwise=None) -> None:
    out = Path(out)
    write_atomic(out / "board_categories.csv", categories.to_csv(float_format="%.4f").encode("utf-8"))
    write_atomic(out / "board_versus.csv", versus.to_csv(index=False, float_format="%.4f").encode("utf-8"))
    write_json_atomic(out / "board_ratings.json", frame.to_dict("records"))
    md = ["# Graded board", ""] + [f"- {line}" for line in header(about)] + [""] + _md(display_table(board))
    if not categories.empty:
        md += ["", "## By category", ""] + _md(categories.reset_index().round(2).fillna("n/a"))
    if not versus.empty:
        md += ["", "## Model against model", ""] + _md(versus_display(versus))
    if pairwise is not None:
        md += ["", "## MT-Bench pairwise (FastChat's pairwise-all)", "", PAIRWISE_NOTE, ""] + _md(pairwise_display(pairwise))
    md += [""] + [f"**warning**: {w}" for w in warnings]
    note, pub = published_lines(about.get("published"), about["judge"])
    if note:
        md += ["", "## Published scores", "", note, ""] + (_md(pub.fillna("")) if pub is not None else [])
    write_atomic(out / "board.md", ("\n".join(md) + "\n").encode("utf-8"))
    png = render_png(categories, about)
    write_atomic(out / "board.png", png)
    write_atomic(out / "board.html", render_html(board, categories, versus, frame, items, about, warnings, png,
                                                 pairwise).encode("utf-8"))
