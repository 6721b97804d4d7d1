"""Which model is better, and how sure: model-vs-model statistics on top of the board.

- versus_table: for every two models A, B, the difference of their win rates against the
  reference over the questions both have a verdict on, with a paired percentile bootstrap 95%
  interval (questions resampled, the same resample for both models) and the share of resamples
  in which A is strictly ahead;
- bradley_terry: a Bradley-Terry fit over all battles (model vs reference, and model vs model
  when the board judged them against each other): each model's strength on the logit scale
  (reference = 0) and the win rate against the reference it implies, with percentile bootstrap
  95% intervals (questions resampled, as Arena-Hard-Auto resamples battles);
- judge_agreement: for every two judges, the share of pairs whose verdicts pick the same side
  (model / tie / reference) and Cohen's kappa over those three sides; disagreeing_judges names
  a judge that agrees with the others much less than they agree with each other;
- combine_judges: one result per (model, question) from several judges: the mean preference.

Soft preferences (alpaca_eval's 1..2) are used as they are: 1.5 is half a win for each side.
Not handled: a BT model with ties as their own outcome (Davidson), or weighting judges.
"""
from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit

RESAMPLES = 2000  # paired bootstrap of the win-rate difference
BT_RESAMPLES = 200  # each one refits Bradley-Terry
SEED = 0
BT_L2 = 1e-3  # keeps a model that won every battle finite; negligible otherwise
MIN_KAPPA = 0.2  # "slight" agreement or less (Landis and Koch)
KAPPA_GAP = 0.2  # a judge this far below the others' agreement with each other is named
CI_LABEL = "95% percentile bootstrap interval over questions"


def _question_resamples(n_questions: int, n_resamples: int) -> np.ndarray:
    """How many times each question is drawn in each resample (n_resamples x n_questions)."""
    rng = np.random.default_rng(SEED)
    return rng.multinomial(n_questions, np.full(n_questions, 1 / n_questions), size=n_resamples).astype(float)


def versus_table(results: list[dict], models: list[str] | None = None) -> pd.DataFrame:
    """One row per ordered pair (A, B), A != B: diff = win rate A - win rate B (points), its
    interval, p_a_ahead (% of resamples where A's win rate is higher), n_questions."""
    frame = pd.DataFrame(results)
    frame = frame[frame["preference"].notna()]
    wins = frame.pivot_table(index="question_id", columns="model", values="preference", aggfunc="mean") - 1
    models = [m for m in (models or list(dict.fromkeys(frame["model"]))) if m in wins.columns]
    pairs = list(combinations(models, 2))
    values = wins.to_numpy(dtype=float)
    col = {m: i for i, m in enumerate(wins.columns)}
    both = np.stack([~np.isnan(values[:, col[a]]) & ~np.isnan(values[:, col[b]]) for a, b in pairs], 1) \
        if pairs else np.zeros((len(wins), 0), bool)
    d = np.stack([np.nan_to_num(values[:, col[a]] - values[:, col[b]]) for a, b in pairs], 1) * both \
        if pairs else np.zeros((len(wins), 0))
    counts = _question_resamples(len(wins), RESAMPLES) if len(wins) else np.zeros((RESAMPLES, 0))
    # One resample of the questions for every pair at once: paired within a pair, and consistent across pairs.
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (counts @ d) / (counts @ both) * 100
    rows = []
    for k, (a, b) in enumerate(pairs):
        n = int(both[:, k].sum())
        diff = d[:, k].sum() / n * 100 if n else math.nan
        low = high = ahead = behind = math.nan
        if n >= 2:
            boot = means[:, k][~np.isnan(means[:, k])]
            low, high = np.percentile(boot, [2.5, 97.5])
            ahead, behind = float((boot > 0).mean() * 100), float((boot < 0).mean() * 100)
        rows.append((a, b, n, diff, low, high, ahead))
        rows.append((b, a, n, -diff, -high, -low, behind))
    return pd.DataFrame(rows, columns=["model_a", "model_b", "n_questions", "diff", "ci_low", "ci_high", "p_a_ahead"])


def _bt_fit(first: np.ndarray, second: np.ndarray, p_first: np.ndarray, weight: np.ndarray, n: int,
            anchor: int, start: np.ndarray) -> np.ndarray:
    """Strengths s (s[anchor] = 0) maximizing sum weight * soft log-likelihood of sigmoid(s_a - s_b)
    (plus a tiny ridge), by Newton's method: the problem is concave with one parameter per model."""
    free = np.array([i for i in range(n) if i != anchor], dtype=int)
    s = start.copy()
    for _ in range(50):
        prob = expit(s[first] - s[second])
        r = weight * (prob - p_first)
        grad = np.bincount(first, r, n) - np.bincount(second, r, n) + BT_L2 * s
        pair = np.bincount(first * n + second, weight * prob * (1 - prob), n * n).reshape(n, n)
        hess = np.diag(pair.sum(0) + pair.sum(1) + BT_L2) - pair - pair.T
        step = np.linalg.solve(hess[np.ix_(free, free)], grad[free])
        s[free] -= step
        if np.abs(step).max() < 1e-8:
            break
    return s


def bradley_terry(battles: list[dict], reference: str) -> pd.DataFrame:
    """battles: dicts with model_a, model_b, question_id and preference (alpaca_eval's: 1 = A
    better, 2 = B better). One row per model: strength (logit, reference 0), its interval,
    win_rate_vs_reference (%) and its interval, n_battles."""
    frame = pd.DataFrame(battles)
    frame = frame[frame["preference"].notna()] if len(frame) else frame
    columns = ["strength", "strength_ci_low", "strength_ci_high", "win_rate_vs_reference",
               "wr_ci_low", "wr_ci_high", "n_battles"]
    if frame.empty:
        return pd.DataFrame(columns=columns, dtype=float)
    models = list(dict.fromkeys([reference, *frame["model_a"], *frame["model_b"]]))
    index = {m: i for i, m in enumerate(models)}
    first, second = frame["model_a"].map(index).to_numpy(), frame["model_b"].map(index).to_numpy()
    p_first = 2 - frame["preference"].astype(float).replace({0.0: 1.5}).to_numpy()  # P(A better)
    questions = pd.factorize(frame["question_id"])[0]
    n, anchor = len(models), index[reference]
    fit = _bt_fit(first, second, p_first, np.ones(len(frame)), n, anchor, np.zeros(n))
    counts = _question_resamples(questions.max() + 1, BT_RESAMPLES)
    boot = np.array([_bt_fit(first, second, p_first, c[questions], n, anchor, fit) for c in counts])
    low, high = np.percentile(boot, [2.5, 97.5], axis=0)
    n_battles = np.bincount(first, minlength=n) + np.bincount(second, minlength=n)
    table = pd.DataFrame({"strength": fit, "strength_ci_low": low, "strength_ci_high": high,
                          "win_rate_vs_reference": expit(fit) * 100, "wr_ci_low": expit(low) * 100,
                          "wr_ci_high": expit(high) * 100, "n_battles": n_battles}, index=pd.Index(models, name="model"))
    return table.sort_values("strength", ascending=False)


def reference_battles(results: list[dict], reference: str) -> list[dict]:
    """The board's pairs as battles for bradley_terry (model as A; the reference against itself left out)."""
    return [{"model_a": r["model"], "model_b": reference, "question_id": r["question_id"],
             "preference": None if r["preference"] is None else 3 - float(r["preference"])}
            for r in results if r["model"] != reference]


def _side(preference: float) -> int:
    return 0 if preference == 1.5 or preference == 0 else (1 if preference > 1.5 else -1)


def judge_agreement(by_judge: dict[str, list[dict]]) -> pd.DataFrame:
    """One row per two judges: n_pairs both judged, same_side (%), kappa (Cohen's, over the
    sides model / tie / reference)."""
    from sklearn.metrics import cohen_kappa_score

    sides = {judge: {(r["model"], r.get("opponent"), r["question_id"]): _side(float(r["preference"]))
                     for r in results if r["preference"] is not None and not r.get("identical")}
             for judge, results in by_judge.items()}
    rows = []
    for a, b in combinations(sides, 2):
        keys = sorted(set(sides[a]) & set(sides[b]), key=str)
        x, y = [sides[a][k] for k in keys], [sides[b][k] for k in keys]
        same = float(np.mean(np.equal(x, y)) * 100) if keys else math.nan
        if len(keys) < 2 or len(set(x) | set(y)) < 2:
            kappa = math.nan  # undefined: every verdict on one side
        else:
            kappa = float(cohen_kappa_score(x, y, labels=[-1, 0, 1]))
        rows.append((a, b, len(keys), same, kappa))
    return pd.DataFrame(rows, columns=["judge_a", "judge_b", "n_pairs", "same_side", "kappa"])


def disagreeing_judges(agreement: pd.DataFrame) -> list[str]:
    """Warnings naming a judge that disagrees with the rest (or two judges that disagree)."""
    judges = list(dict.fromkeys([*agreement["judge_a"], *agreement["judge_b"]]))
    found = []

    def kappa(a, b):
        row = agreement[((agreement.judge_a == a) & (agreement.judge_b == b)) |
                        ((agreement.judge_a == b) & (agreement.judge_b == a))]
        return float(row["kappa"].iloc[0]) if len(row) else math.nan

    if len(judges) == 2:
        k = kappa(*judges)
        if not math.isnan(k) and k < MIN_KAPPA:
            found.append(f"JUDGES DISAGREE: '{judges[0]}' and '{judges[1]}' agree little beyond chance "
                         f"(Cohen's kappa {k:.2f}); with two judges the board cannot tell which is wrong: "
                         "add a third (JUDGE=\"a b c\") or run make judge-check.")
    for judge in judges if len(judges) >= 3 else []:
        others = [j for j in judges if j != judge]
        mine = np.nanmean([kappa(judge, o) for o in others])
        theirs = np.nanmean([kappa(a, b) for a, b in combinations(others, 2)])
        if not math.isnan(mine) and not math.isnan(theirs) and mine < theirs - KAPPA_GAP:
            found.append(f"DISAGREEING JUDGE: '{judge}' agrees with the other judges with a mean Cohen's kappa of "
                         f"{mine:.2f}, while they agree with each other at {theirs:.2f}; drop it or check it "
                         "with make judge-check.")
    return found


def combine_judges(by_judge: dict[str, list[dict]]) -> list[dict]:
    """One result per (model, question): the judges' mean preference, or None (left out of the
    board, counted failed, retried by the next run) unless every judge gave a verdict; consistent
    when every judge's two orders agreed; preferences keeps each judge's own."""
    merged: dict = {}
    for judge, results in by_judge.items():
        for r in results:
            key = (r["model"], r.get("opponent"), r["question_id"])  # opponent: a model-vs-model battle
            into = merged.setdefault(key, {**r, "preferences": {}, "n_calls": 0, "n_failed": 0, "consistent": True})
            into["preferences"][judge] = r["preference"]
            for order in ("pref_model_first", "pref_reference_first"):
                into.setdefault(f"_{order}", []).append(r.get(order))
            into["n_calls"] += r["n_calls"]
            into["n_failed"] += r["n_failed"]
            if r["preference"] is not None and r.get("consistent") is not None:
                into["consistent"] = into["consistent"] and bool(r["consistent"])
    for r in merged.values():
        given = [p for p in r["preferences"].values() if p is not None]
        complete = len(given) == len(by_judge)
        r["preference"] = float(np.mean(given)) if complete else None
        for order in ("pref_model_first", "pref_reference_first"):  # each order: the judges' mean too
            each = r.pop(f"_{order}")
            r[order] = float(np.mean(each)) if None not in each else None
        if r["identical"] or not complete:
            r["consistent"] = None
        if not complete:
            r["n_failed"] = max(r["n_failed"], 1)
    return list(merged.values())
