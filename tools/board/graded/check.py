"""Check a grader (a judge that rates answers 1-10) on pairs with a known winner: the grading half of
`make judge-check` (PROTOCOL=grade, or a question set that grades).

Each pair of the judge-check file ({"instruction", "right", "wrong"}) gives two answers, each
rated alone with the project's own grading prompt (board/graded/own_grade.py), through the same
labelled-call code and cache as the graded board (judges/labels.py). It reports:
- accuracy: % of pairs whose right answer is rated above the wrong one (equal ratings count half);
- mean gap: the mean of rating(right) - rating(wrong), on the 1-10 scale;
- the spread of all ratings (a grader whose ratings hardly vary tells nothing apart).
The result goes to OUT/judge/checks/NAME.grade.json.
Not handled: MT-Bench's or AlignBench's own prompts here (they need the fetched set files).
"""
from __future__ import annotations

import statistics
from datetime import datetime, timezone
from pathlib import Path

GOOD_ACCURACY, GOOD_GAP = 80.0, 2.0


def run_grade_check(judge, items: list[dict], out_dir: Path, max_tokens: int, fast: bool = False) -> dict:
    from judges.labels import label_calls
    from board.graded.own_grade import grade_calls

    calls = []
    for item in items:
        question = {"instruction": item["instruction"], "turns": [item["instruction"]]}
        calls.append((grade_calls(question, [item["right"]], max_tokens, fast)[0][2],
                      grade_calls(question, [item["wrong"]], max_tokens, fast)[0][2]))
    records, stats = label_calls(judge, [c for pair in calls for c in pair], out_dir)
    gaps, ratings = [], []
    for right, wrong in calls:
        if right in records and wrong in records:
            a, b = records[right]["score"], records[wrong]["score"]
            gaps.append(a - b)
            ratings += [a, b]
    wins = [1.0 if g > 0 else 0.5 if g == 0 else 0.0 for g in gaps]
    return {"judge": judge.name, "protocol": "grade", "n_pairs": len(items), "n_rated": len(gaps),
            "n_failed": stats.failed, "accuracy": 100 * sum(wins) / len(wins) if wins else None,
            "mean_gap": sum(gaps) / len(gaps) if gaps else None,
            "rating_sd": statistics.pstdev(ratings) if len(ratings) > 1 else None,
            "fast": fast, "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _n(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def grade_report(check: dict) -> str:
    acc, gap = check["accuracy"], check["mean_gap"]
    lines = [f"grader check of '{check['judge']}': {check['n_rated']} of {check['n_pairs']} pairs rated"
             + (f", {check['n_failed']} failed" if check["n_failed"] else ""),
             f"  accuracy (right rated above wrong): {'n/a' if acc is None else f'{acc:.0f}%'}",
             f"  mean gap rating(right) - rating(wrong): {'n/a' if gap is None else f'{gap:+.2f}'} on 1-10",
             f"  spread of the ratings (sd): {_n(check['rating_sd'])}"]
    if acc is not None and (acc < GOOD_ACCURACY or gap < GOOD_GAP):
        lines.append(f"  -> a weak grader (a useful one scores at least {GOOD_ACCURACY:.0f}% and a gap of {GOOD_GAP:.0f})")
    return "\n".join(lines)
