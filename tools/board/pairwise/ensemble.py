"""The board's judging with several judges and model-against-model battles (for tools/board).

- versus_pairs: with VERSUS=all, every two models' answers to the same question, as pairs the
  judge sees in both orders (the first model plays the "model", the second the "reference");
- judge_everything: each judge judges every pair (against the reference, and the battles) with
  its own verdict cache entries (keyed by its identity, so adding a judge re-judges nothing the
  others did), and the results are combined by mean preference (compare.combine_judges);
- ensemble_summary: what the board shows about several judges: each one's win rates on its own,
  their agreement, and the warnings (a disagreeing judge, a judge whose judge-check failed).

Not handled: weighting judges, or a judge that only some pairs were judged by (a pair some judge
has no verdict on is left out of the board and retried by the next run).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import pandas as pd

from lib.records import question_key


@dataclass
class Judged:
    """Everything judged: the combined results against the reference, the battles between
    models (for Bradley-Terry), and each judge's own results and call counts."""
    results: list[dict]
    battles: list[dict]
    by_judge: dict[str, list[dict]]
    stats: dict = field(default_factory=dict)


def versus_pairs(outputs: list[dict], question_ids: dict, models: list[str]):
    """One pair per question and every two models that both answered it (in `models` order)."""
    from judges.pairs import Pair

    answers = {(r["generator"], question_key(r)): r for r in outputs}
    pairs = []
    for key, qid in question_ids.items():
        for a, b in combinations(models, 2):
            if (a, key) in answers and (b, key) in answers:
                ra, rb = answers[(a, key)], answers[(b, key)]
                instruction = ra["instruction"] + (f"\n\n{ra['input']}" if ra.get("input") else "")
                pairs.append((Pair(a, instruction, ra["output"], rb["output"], qid), b))
    return pairs


def judge_everything(judges: list, pairs: list, battles: list, out_dir, progress) -> Judged:
    """Judge the board's pairs and the battles (list of (Pair, opponent)) with every judge."""
    from board.pairwise.compare import combine_judges
    from judges.pairs import judge_pairs

    by_judge, stats = {}, {"made": 0, "reused_from_cache": 0, "failed": 0, "errors": [], "seconds": 0.0}
    all_pairs = list(pairs) + [p for p, _ in battles]
    for judge in judges:
        if len(judges) > 1:
            progress(f"judge {judge.name}:")
        try:
            results, judge_stats = judge_pairs(judge, all_pairs, out_dir, progress=progress)
        finally:
            judge.close()  # one judge's model in memory at a time
        for result, (_, opponent) in zip(results[len(pairs):], battles):
            result["opponent"] = opponent
        by_judge[judge.name] = results
        stats["made"] += judge_stats.made
        stats["reused_from_cache"] += judge_stats.reused
        stats["failed"] += judge_stats.failed
        stats["errors"] += [f"{judge.name}: {e}" for e in judge_stats.errors]
        stats["seconds"] += judge_stats.seconds
    combined = combine_judges(by_judge) if len(judges) > 1 else next(iter(by_judge.values()))
    against_reference = [r for r in combined if "opponent" not in r]
    model_battles = [{"model_a": r["model"], "model_b": r["opponent"], "question_id": r["question_id"],
                      "preference": None if r["preference"] is None else 3 - float(r["preference"])}
                     for r in combined if "opponent" in r]
    return Judged(against_reference, model_battles, by_judge, stats)


def ensemble_summary(judged: Judged, judges: list, checks: dict) -> tuple[pd.DataFrame | None, pd.DataFrame | None,
                                                                         list[str]]:
    """(each judge's win rate and LC win rate per model, agreement between judges, warnings);
    None, None, [] with one judge. checks: judge name -> its current judge-check (or None)."""
    from board.pairwise.compare import disagreeing_judges, judge_agreement
    from board.pairwise.stats import board_table

    if len(judges) < 2:
        return None, None, []
    columns = {}
    for name, results in judged.by_judge.items():
        own = board_table([r for r in results if "opponent" not in r])
        columns[f"{name} win rate"] = own["win_rate"]
        columns[f"{name} LC"] = own["lc_win_rate"]
    by_judge = pd.DataFrame(columns)
    by_judge.index.name = "model"
    agreement = judge_agreement(judged.by_judge)
    warnings = disagreeing_judges(agreement)
    for name, check in checks.items():
        if check and check.get("accuracy") is not None and check["accuracy"] < 80:
            warnings.append(f"judge-check: '{name}' picked the plainly right answer on only "
                            f"{check['accuracy']:.0f}% of {check['n_pairs']} test pairs.")
    return by_judge, agreement, warnings
