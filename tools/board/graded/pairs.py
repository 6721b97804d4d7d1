"""MT-Bench's pairwise mode beside the graded board: FastChat's `--mode pairwise-all`.

    python tools/board --protocol grade --versus all --answers out/a.json out/b.json \
        --questions out/sets/mt_bench.jsonl --judge smollm2_135m --out out     # make board VERSUS=all

Every two models (in the order given, as FastChat's make_match_all_pairs), every question both
answered, turn 1 with `pair-v2` (`pair-math-v1` with the GPT-4 reference for math, reasoning and
coding) and turn 2 with the multi-turn prompts; two games each, the first model shown as
Assistant A and then as B (board/graded/mt_bench.py pair_calls). A local judge's label is the most likely
of A, B, C at the label position (never fails); an API judge's is parsed as FastChat parses it.
Aggregation is FastChat's show_result.py: a game pair whose verdicts differ, or a tie, is a tie for
both models; win_rate = win / (win + loss + tie), win_rate_adjusted counts a tie as half a win.
Where we differ, and say so: a game with no label (FastChat's "error", which its show_result drops
silently) is counted in n_failed, not cached, and asked again by the next make board.
Writes OUT/board_pairwise.csv (one row per model), OUT/board_pairwise_games.json (every match with
both verdicts and explanations) and FastChat's OUT/fastchat/model_judgment/JUDGE_pair.jsonl, which
`python -m fastchat.llm_judge.show_result --mode pairwise-all --input-file ...` reads (and
`--mode pairwise-baseline --baseline-model M` against one of your models).
Does not handle: a baseline whose answers are not yours (FastChat's gpt-3.5-turbo answers are not
in the fetched files); AlignBench and the own grader (no pairwise prompt).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from lib.records import write_atomic, write_json_atomic

COLUMNS = ["model", "win_rate_adjusted", "win_rate", "loss_rate", "win", "loss", "tie", "n_matches", "n_failed"]


def match_items(prompts: dict, questions: list[dict], outputs: dict[str, dict], max_tokens: int, fast: bool):
    """One item per (model_1, model_2, question, turn) with its two calls.
    outputs: model -> {question_id: [answer per turn]} (the graded board's turn outputs)."""
    from board.graded.mt_bench import pair_calls

    models, items = list(outputs), []
    for index, q in enumerate(questions):
        qid = q.get("question_id", index)
        for i, m1 in enumerate(models):
            for m2 in models[i + 1:]:
                a1, a2 = outputs[m1].get(qid), outputs[m2].get(qid)
                if a1 is None or a2 is None:
                    continue  # a model without this answer: counted as missing by the graded board
                games: dict[tuple[int, str], dict] = {}
                for turn, name, order, call in pair_calls(prompts, q, a1, a2, max_tokens, fast):
                    games.setdefault((turn, name), {})[order] = call
                for (turn, name), calls in games.items():
                    items.append({"model_1": m1, "model_2": m2, "question_id": qid, "turn": turn, "prompt": name,
                                  "category": q.get("category") or "", "g1": calls["AB"], "g2": calls["BA"]})
    return items


def _winner(record: dict | None, shown_first: str, shown_second: str) -> str:
    """FastChat's g1/g2_winner: the model the label names, 'tie' for C, 'error' without a label."""
    label = (record or {}).get("label")
    return {"A": shown_first, "B": shown_second, "C": "tie"}.get(label, "error")


def games(items: list[dict], records: dict) -> list[dict]:
    rows = []
    for item in items:
        r1, r2 = records.get(item["g1"]), records.get(item["g2"])
        rows.append({k: item[k] for k in ("model_1", "model_2", "question_id", "turn", "prompt", "category")} | {
            "g1_winner": _winner(r1, "model_1", "model_2"), "g2_winner": _winner(r2, "model_2", "model_1"),
            "g1_probs": (r1 or {}).get("probs"), "g2_probs": (r2 or {}).get("probs"),
            "g1_judgment": (r1 or {}).get("judgment", ""), "g2_judgment": (r2 or {}).get("judgment", "")})
    return rows


def pair_table(rows: list[dict], models: list[str]) -> pd.DataFrame:
    """show_result.py's display_result_pairwise, plus n_matches and n_failed per model."""
    counts = {m: {"win": 0, "loss": 0, "tie": 0, "n_failed": 0} for m in models}
    for row in rows:
        m1, m2 = row["model_1"], row["model_2"]
        g1, g2 = row["g1_winner"], row["g2_winner"]
        if "error" in (g1, g2):
            counts[m1]["n_failed"] += 1
            counts[m2]["n_failed"] += 1
        elif g1 == "tie" or g1 != g2:
            counts[m1]["tie"] += 1
            counts[m2]["tie"] += 1
        else:
            winner, loser = (m1, m2) if g1 == "model_1" else (m2, m1)
            counts[winner]["win"] += 1
            counts[loser]["loss"] += 1
    table = []
    for model, c in counts.items():
        n = c["win"] + c["loss"] + c["tie"]
        table.append({"model": model, **c, "n_matches": n,
                      "win_rate": c["win"] / n if n else float("nan"), "loss_rate": c["loss"] / n if n else float("nan"),
                      "win_rate_adjusted": (c["win"] + 0.5 * c["tie"]) / n if n else float("nan")})
    frame = pd.DataFrame(table, columns=COLUMNS)
    return frame.sort_values("win_rate_adjusted", ascending=False, na_position="last").reset_index(drop=True)


def display(table: pd.DataFrame) -> pd.DataFrame:
    pct = lambda v: "n/a" if pd.isna(v) else f"{100 * v:.1f}%"  # noqa: E731
    return pd.DataFrame([{"model": r.model, "win rate (tie = half)": pct(r.win_rate_adjusted), "win rate": pct(r.win_rate),
                          "loss rate": pct(r.loss_rate), "win": r.win, "loss": r.loss, "tie": r.tie,
                          "matches": r.n_matches, "failed": r.n_failed} for r in table.itertuples()])


def failed_matches(table: pd.DataFrame) -> int:
    return int(table["n_failed"].sum()) // 2  # each failed match is counted for both models


def warnings_for(table: pd.DataFrame) -> list[str]:
    failed = failed_matches(table)
    return [f"pairwise: {failed} matches have a game without a verdict (FastChat's 'error'): left out of the "
            "pairwise table and counted; make board again asks them again"] if failed else []


def write(items: list[dict], rows: list[dict], table: pd.DataFrame, judge_name: str, out: Path) -> Path:
    """The pairwise files under OUT; returns FastChat's export (board/graded/export.py writes it)."""
    from board.graded.export import write_fastchat_pair

    out = Path(out)
    write_json_atomic(out / "board_pairwise_games.json", rows)
    write_atomic(out / "board_pairwise.csv", table.to_csv(index=False, float_format="%.4f").encode("utf-8"))
    return write_fastchat_pair(items, rows, judge_name, out)
