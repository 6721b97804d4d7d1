"""The board's numbers, from one combined preference per (model, question) pair.

A preference follows alpaca_eval: 1 = the reference's answer is better, 2 = the model's, 1.5 a
tie, anything in between for a soft verdict. Per model:

- alpaca_eval's own columns (win_rate, standard_error, n_wins, n_wins_base, n_draws, n_total,
  discrete_win_rate), computed as alpaca_eval.metrics.get_winrate computes them (written out here,
  because importing alpaca_eval costs every board 3 s; tests/test_board_stats.py checks them
  against get_winrate itself), and avg_length (characters of the model's answers) as alpaca_eval
  computes it;
- win_rate_ci_low / win_rate_ci_high: a percentile bootstrap 95% interval of the win rate over
  questions (scipy.stats.bootstrap, fixed seed);
- lc_win_rate, lc_standard_error: AlpacaEval 2's length-controlled win rate, fit jointly over
  every model on the board (one length slope for the judge, a difficulty per question):
  tools/board/pairwise/lc.py says how and what it does not handle;
- position_consistency: the share (%) of judged pairs whose two verdicts (model shown first,
  then second) pick the same side; identical answers are not judged and do not count;
- n_judge_calls, n_failed: calls this model's pairs need, and pairs left without a verdict.

Pairs without a verdict (a call failed) are left out of every figure but n_failed.
Each model's win-rate interval is resampled on its own: how sure "A beats B" is comes from the
paired bootstrap in tools/board/pairwise/compare.py, not from two intervals that overlap.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

ALPACA_COLUMNS = ["win_rate", "standard_error", "n_wins", "n_wins_base", "n_draws", "n_total",
                  "discrete_win_rate", "avg_length"]
EXTRA_COLUMNS = ["win_rate_ci_low", "win_rate_ci_high", "lc_win_rate", "lc_standard_error",
                 "position_consistency",
                 "n_judge_calls", "n_failed"]
BOARD_COLUMNS = ALPACA_COLUMNS + EXTRA_COLUMNS

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0

# Below these the board warns (see docs/board.md, "Warnings come first").
MIN_CONSISTENCY = 60.0  # a coin-flip judge agrees with itself on about 50% of swapped pairs
FEW_QUESTIONS = 30
# Points between the win rate and the LC win rate that say the judge's verdicts follow length
# (AlpacaEval 2's own board has Claude 2 at 17.2 against 28.2 length-controlled).
LENGTH_GAP = 10.0


def win_rate_stats(preferences: pd.Series) -> dict:
    """alpaca_eval's head-to-head numbers (get_winrate: its absolute scoring rule, and its zero-one
    rule for discrete_win_rate): 0 reads as a tie (1.5), and anything outside [1, 2] (NaN too) is
    left out of all but n_draws."""
    raw = pd.Series(preferences, dtype=float)
    prefs = raw.replace({0.0: 1.5})
    n_draws = (prefs == 1.5).sum()
    wins = prefs[(prefs >= 1) & (prefs <= 2)] - 1
    # zero-one: a tie stays a tie, any other verdict is rounded to the side it leans to
    discrete = raw.replace({1.5: 0.0}).round().replace({0.0: 1.5})
    discrete = discrete[(discrete >= 1) & (discrete <= 2)] - 1
    return {"win_rate": wins.mean() * 100, "standard_error": wins.sem() * 100,
            "n_wins": (wins > 0.5).sum(), "n_wins_base": (wins < 0.5).sum(), "n_draws": n_draws,
            "n_total": len(wins), "discrete_win_rate": discrete.mean() * 100}


def bootstrap_ci(preferences: pd.Series) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the win rate (in %); NaN below two pairs."""
    from scipy.stats import bootstrap

    wins = preferences.to_numpy(dtype=float) - 1
    if len(wins) < 2:
        return math.nan, math.nan
    if np.all(wins == wins[0]):  # every resample is the same: the interval is a point
        return wins[0] * 100, wins[0] * 100
    result = bootstrap((wins,), np.mean, confidence_level=0.95, n_resamples=BOOTSTRAP_RESAMPLES,
                       method="percentile", rng=np.random.default_rng(BOOTSTRAP_SEED))
    return result.confidence_interval.low * 100, result.confidence_interval.high * 100


def length_controlled_win_rate(preferences: pd.Series, len_model: pd.Series, len_reference: pd.Series) -> float:
    """One model's LC win rate (in %) on its own (no question difficulty: nothing to learn it
    from). board_table fits every model together instead."""
    from board.pairwise.lc import length_controlled

    frame = pd.DataFrame({"model": "m", "question_id": range(len(preferences)),
                          "preference": preferences.to_numpy(dtype=float),
                          "len_model": len_model.to_numpy(), "len_reference": len_reference.to_numpy()})
    return float(length_controlled(frame).loc["m", "lc_win_rate"])


def model_row(pairs: pd.DataFrame) -> dict:
    """One board row from one model's pairs (columns: preference, consistent, identical,
    model_output, reference_output, n_calls, n_failed)."""
    judged = pairs[pairs["preference"].notna()]
    prefs = judged["preference"].astype(float)
    row = {c: math.nan for c in BOARD_COLUMNS}
    if len(judged):
        row.update(win_rate_stats(prefs))
        row["win_rate_ci_low"], row["win_rate_ci_high"] = bootstrap_ci(prefs)
    swapped = judged[~judged["identical"].astype(bool)]
    if len(swapped):
        row["position_consistency"] = float(swapped["consistent"].astype(bool).mean() * 100)
    row["avg_length"] = int(pairs["model_output"].str.len().mean()) if len(pairs) else 0
    row["n_judge_calls"] = int(pairs["n_calls"].sum())
    row["n_failed"] = int(pairs["preference"].isna().sum())
    for key in ("n_wins", "n_wins_base", "n_draws", "n_total"):
        row[key] = int(row[key]) if not pd.isna(row[key]) else 0
    return row


def board_table(results: list[dict]) -> pd.DataFrame:
    """The board: one row per model, best win rate first."""
    from board.pairwise.lc import length_controlled

    frame = pd.DataFrame(results)
    rows = {model: model_row(group) for model, group in frame.groupby("model", sort=False)}
    board = pd.DataFrame.from_dict(rows, orient="index")[BOARD_COLUMNS]
    lc = length_controlled(pd.DataFrame({
        "model": frame["model"], "question_id": frame["question_id"], "preference": frame["preference"],
        "len_model": frame["model_output"].str.len(), "len_reference": frame["reference_output"].str.len()}))
    board[["lc_win_rate", "lc_standard_error"]] = lc.reindex(board.index)[["lc_win_rate", "lc_standard_error"]]
    board.index.name = "model"
    return board.sort_values("win_rate", ascending=False, na_position="last")


def by_dataset(results: list[dict], datasets: dict[int, str]) -> pd.DataFrame:
    """Each model's win rate on each `dataset` of the questions (`datasets`: question_id -> name),
    with its 95% bootstrap interval, as MT-Bench and Arena-Hard break scores down by category:
    one row per (model, dataset), datasets in question order. Empty with one dataset."""
    order = list(dict.fromkeys(datasets[q] for q in sorted(datasets)))
    if len(order) < 2:
        return pd.DataFrame()
    frame = pd.DataFrame(results)
    frame["dataset"] = frame["question_id"].map(datasets)
    rows = []
    for dataset in order:
        for model, group in frame[frame["dataset"] == dataset].groupby("model", sort=False):
            prefs = group["preference"].dropna().astype(float)
            low, high = bootstrap_ci(prefs)
            rows.append({"model": model, "dataset": dataset, "n_questions": len(group), "n_total": len(prefs),
                         "win_rate": win_rate_stats(prefs)["win_rate"] if len(prefs) else math.nan,
                         "win_rate_ci_low": low, "win_rate_ci_high": high})
    return pd.DataFrame(rows)


def judge_consistency(results: list[dict]) -> tuple[float, int]:
    """Over every model: (% of judged, non-identical pairs whose two orders agree, how many)."""
    judged = [r for r in results if r["preference"] is not None and not r["identical"]]
    if not judged:
        return math.nan, 0
    return sum(bool(r["consistent"]) for r in judged) / len(judged) * 100, len(judged)


def warnings_for(board: pd.DataFrame, consistency: float, n_swapped: int, judge: str,
                 n_questions: int, check: dict | None) -> list[str]:
    """The warnings a reader must see before trusting the board, most serious first."""
    found = []
    if n_swapped and consistency < MIN_CONSISTENCY:
        found.append(
            f"JUDGE WITHOUT SIGNAL: '{judge}' picked the same answer in both orders on only "
            f"{consistency:.0f}% of {n_swapped} pairs (a coin flip agrees on ~50%): its verdicts follow "
            "where an answer is shown, not what it says, so this board ranks nothing. "
            "Use a stronger judge (JUDGE=...) and run make judge-check.")
    if check and check.get("accuracy") is not None and check["accuracy"] < 80:
        found.append(f"judge-check: '{judge}' picked the plainly right answer on only "
                     f"{check['accuracy']:.0f}% of {check['n_pairs']} test pairs.")
    failed = int(board["n_failed"].sum()) if len(board) else 0
    if failed:
        found.append(f"{failed} pairs have no verdict (judge calls failed) and are left out; "
                     "run make board again to retry them.")
    if n_questions < FEW_QUESTIONS:
        found.append(f"only {n_questions} questions: the intervals are wide and lc_win_rate is a rough "
                     "estimate; differences inside the intervals mean nothing.")
    else:  # with few questions the LC figure is too rough to read a gap from
        gap = board[(board["lc_win_rate"] - board["win_rate"]).abs() >= LENGTH_GAP]
        if len(gap):
            each = " and ".join(f"'{m}' ({r.win_rate:.1f} -> {r.lc_win_rate:.1f}, answers of "
                                f"{r.avg_length:.0f} characters on average)" for m, r in gap.iterrows())
            found.append(f"LENGTH: the length-controlled win rate differs from the win rate by {LENGTH_GAP:.0f} "
                         f"points or more for {each}: this judge's verdicts follow answer length, so rank "
                         "these models by lc_win_rate.")
    return found
