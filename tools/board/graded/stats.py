"""The graded board's numbers: per model, the score with a bootstrap interval over questions,
turn and category means, AlignBench's Reasoning / Language / Overall, and model-vs-model
paired differences.

Input: one row per graded (model, question, turn): `model`, `question_id`, `category`, `turn`,
`score` (the rating; NaN when the call failed: counted in n_failed, never averaged in),
`label` (the most likely rating), `source` (where it was read: logits, logits-cued, fast, text,
logprobs). The score is:
- mt_bench / own: the mean over all graded turns (FastChat's "Average"), turn 1 and turn 2
  means beside it;
- alignbench: Overall = (Reasoning + Language) / 2, Reasoning = mean of the 数学计算 and 逻辑推理
  category means, Language = mean of the other categories' means (AlignBench's own).
Intervals: a percentile bootstrap over questions (2,000 resamples, fixed seed): a question's
ratings go in or out together, as compare.py resamples questions for the pairwise board.
Does not handle: weighting categories by size (AlignBench and FastChat do not either).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from board.graded.alignbench import REASONING, aggregate

N_RESAMPLES = 2000
SEED = 0
FLAT = 0.5  # a judge whose ratings have a standard deviation below this has no signal
MIN_QUESTIONS = 30


def _headline(rows: pd.DataFrame, grader: str) -> float:
    if rows.empty:
        return float("nan")
    if grader == "alignbench":
        value = aggregate(rows.groupby("category")["score"].mean().to_dict())["Overall"]
        return float("nan") if value is None else float(value)
    return float(rows["score"].mean())


def _resamples(n: int, seed: int = SEED) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(N_RESAMPLES, n))


def _boot(rows: pd.DataFrame, grader: str, seed: int = SEED) -> np.ndarray:
    """The headline score over resampled questions (each question's rows kept together)."""
    qids = rows["question_id"].unique()
    if len(qids) < 2:
        return np.array([])
    index = {q: k for k, q in enumerate(qids)}
    q = rows["question_id"].map(index).to_numpy()
    scores = rows["score"].to_numpy(float)
    n = len(qids)
    sums, counts = np.bincount(q, scores, n), np.bincount(q, minlength=n).astype(float)
    draws = _resamples(n, seed)
    if grader != "alignbench":
        weights = np.stack([np.bincount(d, minlength=n) for d in draws])
        return (weights @ sums) / np.maximum(weights @ counts, 1)
    cats = sorted(rows["category"].unique())
    cat_of_q = rows.groupby("question_id")["category"].first().reindex(qids).map({c: k for k, c in enumerate(cats)})
    cat_of_q = cat_of_q.to_numpy()
    out = []
    for draw in draws:
        w = np.bincount(draw, minlength=n)
        s, c = np.bincount(cat_of_q, w * sums, len(cats)), np.bincount(cat_of_q, w * counts, len(cats))
        means = {cat: s[k] / c[k] for k, cat in enumerate(cats) if c[k] > 0}
        value = aggregate(means)["Overall"]
        out.append(np.nan if value is None else value)
    return np.array(out)


def model_row(rows: pd.DataFrame, grader: str) -> dict:
    """One model's row of the board (rows: all its graded turns, failed ones with score NaN)."""
    ok = rows[rows["score"].notna()]
    boot = _boot(ok, grader)
    boot = boot[~np.isnan(boot)] if boot.size else boot
    row = {"model": rows["model"].iloc[0], "score": _headline(ok, grader),
           "score_ci_low": float(np.percentile(boot, 2.5)) if boot.size else float("nan"),
           "score_ci_high": float(np.percentile(boot, 97.5)) if boot.size else float("nan")}
    for turn in sorted(rows["turn"].unique()):
        row[f"turn{turn}"] = float(ok[ok["turn"] == turn]["score"].mean()) if (ok["turn"] == turn).any() else float("nan")
    labels = pd.to_numeric(ok["label"], errors="coerce")
    row["score_most_likely"] = float(labels.mean()) if grader != "alignbench" else _headline(ok.assign(score=labels), grader)
    row["n_questions"] = int(ok["question_id"].nunique())
    row["n_ratings"] = int(len(ok))
    row["n_failed"] = int(rows["score"].isna().sum())
    row["share_cued"] = float((ok["source"] == "logits-cued").mean()) if len(ok) else 0.0
    return row


def category_table(rows: pd.DataFrame, grader: str) -> pd.DataFrame:
    """model x category means (AlignBench: plus Reasoning, Language, Overall)."""
    ok = rows[rows["score"].notna()]
    if ok.empty:
        return pd.DataFrame()
    table = ok.pivot_table(index="model", columns="category", values="score", aggfunc="mean")
    if grader == "alignbench":
        for model in table.index:
            summary = aggregate(table.loc[model].dropna().to_dict())
            for key, value in summary.items():
                table.loc[model, key] = value
    return table


def board_table(rows: pd.DataFrame, grader: str) -> pd.DataFrame:
    board = pd.DataFrame([model_row(group, grader) for _, group in rows.groupby("model", sort=False)])
    return board.sort_values("score", ascending=False, na_position="last").reset_index(drop=True)


def versus_table(rows: pd.DataFrame, grader: str) -> pd.DataFrame:
    """Every two models: the paired difference of their scores over the questions both have
    graded, with its bootstrap 95% interval and the % of resamples where the first is ahead."""
    ok = rows[rows["score"].notna()]
    models = list(dict.fromkeys(ok["model"]))
    out = []
    for i, a in enumerate(models):
        for b in models[i + 1:]:
            ra, rb = ok[ok["model"] == a], ok[ok["model"] == b]
            keys = ["question_id", "turn"]
            common = ra.merge(rb, on=keys, suffixes=("_a", "_b"))
            if common.empty:
                continue
            qa = common[keys + ["category_a", "score_a"]].rename(columns={"category_a": "category", "score_a": "score"})
            qb = common[keys + ["category_a", "score_b"]].rename(columns={"category_a": "category", "score_b": "score"})
            diff = _headline(qa, grader) - _headline(qb, grader)
            boot = _boot(qa, grader) - _boot(qb, grader)  # same seed: the same resampled questions
            boot = boot[~np.isnan(boot)] if boot.size else boot
            out.append({"model_a": a, "model_b": b, "n_questions": int(common["question_id"].nunique()),
                        "difference": diff,
                        "ci_low": float(np.percentile(boot, 2.5)) if boot.size else float("nan"),
                        "ci_high": float(np.percentile(boot, 97.5)) if boot.size else float("nan"),
                        "a_ahead_pct": float((boot > 0).mean() * 100) if boot.size else float("nan")})
    return pd.DataFrame(out, columns=["model_a", "model_b", "n_questions", "difference", "ci_low", "ci_high",
                                      "a_ahead_pct"])


def warnings_for(rows: pd.DataFrame, board: pd.DataFrame, grader: str, info: dict | None, fast: bool) -> list[str]:
    warnings = []
    ok = rows[rows["score"].notna()]
    if len(ok) >= 2 and float(ok["score"].std()) < FLAT:
        warnings.append(f"the judge's ratings hardly vary (standard deviation {ok['score'].std():.2f} on 1-10 over "
                        f"{len(ok)} ratings): it tells the answers apart little; this board has no signal")
    cued = (ok["source"] == "logits-cued").mean() if len(ok) else 0
    if cued > 0:
        warnings.append(f"{cued:.0%} of the ratings were read from the logits after the board appended the rating's "
                        "bracket: the judge wrote none itself (a weak judge, or max tokens too few)")
    n_questions = rows["question_id"].nunique()
    if n_questions < MIN_QUESTIONS:
        warnings.append(f"only {n_questions} questions: intervals are wide, and the ranking can change with more")
    if info and info.get("limit"):
        warnings.append(f"a LIMIT sample: {info['limit']} of the set's {info.get('n_total', '?')} questions "
                        f"(seed {info.get('seed', '?')}), not the full benchmark: not comparable with published scores")
    failed = int(rows["score"].isna().sum())
    if failed:
        warnings.append(f"{failed} ratings failed (no rating in the reply): left out, never averaged in; "
                        "make board again retries them")
    if fast:
        warnings.append("fast mode: ratings read without the judge's explanation (not the protocol)")
    if grader == "alignbench":
        missing = [c for c in REASONING if c not in set(ok["category"])]
        if missing:
            warnings.append(f"no graded questions in {', '.join(missing)}: Reasoning and Overall cannot be computed")
    return warnings
