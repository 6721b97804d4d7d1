"""Agreement of a judge with human labels: LLMBar's figures, PandaLM's, and bootstrap intervals.

Each judged pair is {"label", "first", "second", "pred"}: label "1"/"2"/"tie" (people's);
"first" the judge's choice with output_1 shown first (LLMBar's swap = False), "second" its
choice with the outputs swapped, given in the pair's own terms (LLMBar's reversed swap = True
winner); each "1", "2", "tie" (neither: exact 0.5) or None (the call failed: the pair is left
out and counted, never guessed); "pred" the pair's one 3-way verdict ("1"/"2"/"tie").

`two_way(rows)` scores the pairs labelled 1 or 2 as LLMBar's evaluate.py does:
- accuracy_first / accuracy_second: % correct in each order (a "tie" counts half);
- accuracy: their mean, LLMBar's `correct_average`, with a 95% percentile bootstrap interval
  over the pairs (2000 resamples, seed 0) of the per-pair mean of the two orders;
- correct_both: % correct in both orders; same_choice: % of pairs where both orders chose the
  same output (LLMBar's `equal`).
A grader has no orders (each answer rated alone): accuracy is its verdict's (a tie half, as
LLMBar's Rating evaluators split a tie between their two orders), the order figures are None.
`three_way(rows)` scores every pair as PandaLM does: accuracy of pred against the label, and
macro-F1 over {tie, 1, 2} (each class's F1 = 2TP / (2TP + FP + FN), 0 when it has no TP; a
prediction outside the classes counts wrong: sklearn's f1_score(labels=[0, 1, 2],
average="macro")), both with bootstrap intervals. Not handled: Cohen's kappa (LLMBar's
statistics have it; its int() of "1"/"2" makes it meaningless there).
"""
from __future__ import annotations

CLASSES = ("tie", "1", "2")
RESAMPLES, SEED = 2000, 0


def credit(choice: str | None, label: str) -> float:
    return 1.0 if choice == label else 0.5 if choice == "tie" else 0.0


def bootstrap(values: list[float], resamples: int = RESAMPLES, seed: int = SEED) -> tuple[float | None, float | None]:
    """95% percentile bootstrap interval (in %) of the mean of per-pair scores in [0, 1]; None below 2."""
    import numpy as np

    if len(values) < 2:
        return None, None
    x = np.asarray(values, dtype=float)
    means = 100 * x[np.random.default_rng(seed).integers(0, len(x), (resamples, len(x)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return round(float(low), 2), round(float(high), 2)


def _pct(values) -> float | None:
    values = list(values)
    return round(100 * sum(values) / len(values), 2) if values else None


def two_way(rows: list[dict]) -> dict:
    """LLMBar's figures on the pairs labelled 1 or 2 whose judging did not fail."""
    labelled = [r for r in rows if r["label"] in ("1", "2")]
    graded = any(r.get("first") is None and r.get("second") is None and r.get("pred") is not None for r in labelled)
    if graded:
        done = [r for r in labelled if r.get("pred") is not None]
        per_pair = [credit(r["pred"], r["label"]) for r in done]
        out = {"accuracy_first": None, "accuracy_second": None,
               "correct_both": _pct(r["pred"] == r["label"] for r in done), "same_choice": None,
               "ties": _pct(r["pred"] == "tie" for r in done)}
    else:
        done = [r for r in labelled if r.get("first") is not None and r.get("second") is not None]
        per_pair = [(credit(r["first"], r["label"]) + credit(r["second"], r["label"])) / 2 for r in done]
        out = {"accuracy_first": _pct(credit(r["first"], r["label"]) for r in done),
               "accuracy_second": _pct(credit(r["second"], r["label"]) for r in done),
               "correct_both": _pct(r["first"] == r["label"] == r["second"] for r in done),
               "same_choice": _pct(r["first"] == r["second"] != "tie" for r in done)}
    low, high = bootstrap(per_pair)
    return {"n_pairs": len(done), "n_failed": len(labelled) - len(done), "accuracy": _pct(per_pair),
            "accuracy_ci": [low, high], **out}


def macro_f1(labels: list[str], preds: list[str | None]) -> float:
    f1s = []
    for c in CLASSES:
        tp = sum(y == c and p == c for y, p in zip(labels, preds))
        fp = sum(y != c and p == c for y, p in zip(labels, preds))
        fn = sum(y == c and p != c for y, p in zip(labels, preds))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return 100 * sum(f1s) / len(f1s)


def three_way(rows: list[dict], count_missing: bool = False) -> dict:
    """PandaLM's accuracy and macro-F1 over {tie, 1, 2}. A pair without a verdict is left out
    (a failed call), or, with count_missing (a published judge's unlabelled reply), counted wrong."""
    import numpy as np

    done = [r for r in rows if count_missing or r.get("pred") is not None]
    code = {c: k for k, c in enumerate(CLASSES)}
    y = np.array([code[r["label"]] for r in done], dtype=int)
    p = np.array([code.get(r.get("pred"), -1) for r in done], dtype=int)
    acc_ci = f1_ci = [None, None]
    if len(done) >= 2:  # resampled pairs, vectorized: RESAMPLES x n indices
        idx = np.random.default_rng(SEED).integers(0, len(done), (RESAMPLES, len(done)))
        ys, ps = y[idx], p[idx]
        accs = 100 * (ys == ps).mean(axis=1)
        f1s = []
        for k in range(len(CLASSES)):
            tp = ((ys == k) & (ps == k)).sum(axis=1)
            fp = ((ys != k) & (ps == k)).sum(axis=1)
            fn = ((ys == k) & (ps != k)).sum(axis=1)
            f1s.append(np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0))
        f1 = 100 * np.mean(f1s, axis=0)
        acc_ci = [round(float(v), 2) for v in np.percentile(accs, [2.5, 97.5])]
        f1_ci = [round(float(v), 2) for v in np.percentile(f1, [2.5, 97.5])]
    labels, preds = [r["label"] for r in done], [r.get("pred") for r in done]
    return {"n_pairs": len(done), "n_failed": len(rows) - len(done),
            "accuracy": _pct(a == b for a, b in zip(labels, preds)), "accuracy_ci": acc_ci,
            "macro_f1": round(macro_f1(labels, preds), 2) if done else None, "macro_f1_ci": f1_ci,
            "predicted": {c: sum(v == c for v in preds) for c in CLASSES},
            "unlabelled": sum(v is None for v in preds)}


def score(rows: list[dict], ties: bool, subsets: list[str] | None = None) -> dict:
    """The figures of one run: together, and per subset when the set has several."""
    out = {"all": two_way(rows)}
    if ties:
        out["all"]["three_way"] = three_way(rows)
    if subsets and len(subsets) > 1:
        out["subsets"] = {s: two_way([r for r in rows if r.get("subset") == s]) for s in subsets}
        accs = [v["accuracy"] for v in out["subsets"].values() if v["accuracy"] is not None]
        out["all"]["mean_of_subsets"] = round(sum(accs) / len(accs), 2) if accs else None
    return out
