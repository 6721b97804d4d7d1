"""Arena-Hard-Auto v0.1's scores from its judge's labels: battles, Bradley-Terry, bootstrap, style control.

    battles = to_battles(games, baseline)          # games: model, question_id, game (1|2), label
    scores = arena_scores(battles, baseline)       # score, score_low, score_high per model (%)
    styled = arena_scores(battles, baseline, features=style_table(answers, count_tokens))

As show_result.py and utils_math.py of lmarena/arena-hard-auto at 0489bf3 (the v0.1 judge's
commit) compute them:
- each game's label becomes battles of the baseline (model_a) against the model (model_b); game
  1 shows the baseline as assistant A, game 2 as B; `>>` counts as 3 battles (--weight 3), any
  other label as 1, a missing or unknown label as none (the game is dropped, and counted);
- Bradley-Terry: a logistic regression without intercept or penalty over every battle, a tie
  half a win for each side (its duplicated rows), anchored at the baseline; a model's score is
  the win rate against the baseline it implies (%);
- the 95% interval: 100 rounds, each resampling the battles with replacement from
  np.random.RandomState(42) (its module seeds numpy with 42 and draws with pandas' sample),
  percentiles 2.5 and 97.5 of each strength, turned into win rates;
- style control (--style-control): per battle, four features, the baseline's minus the model's
  over their sum + 1, standardized: the answer's tokens (cl100k, as its add_markdown_info.py
  counts them), its headers, list items and bold spans (counted after its code-block removal);
  fit with sklearn's default L2 penalty (C = 1) over Elo-scaled columns, as its fit_bt is; the
  bootstrap as above, the features fixed.
Fit here by Newton's method on the soft labels, not sklearn's lbfgs: the same optimum (tests/
test_arena_score.py computes Arena-Hard's way with sklearn and compares). Where we differ: a
feature constant over all battles (no answer has a header) is left out, where Arena-Hard would
divide by a zero deviation; a model missing from a resample is left out of that round.
Not handled: v2.0's scoring (a mean of per-battle scores, 90% intervals).
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit

LABELS = ("A>>B", "A>B", "A=B", "B>A", "B>>A")
WEIGHT = 3  # battles a `>>` label counts for (show_result.py --weight)
ROUNDS = 100  # bootstrap rounds (--num-rounds)
SEED = 42  # utils_math.py: np.random.seed(42)
STYLE = ("token_len", "header_count", "list_count", "bold_count")
LOG10 = math.log(10)
# The model's side of a label, per game: game 1 has the baseline as A, game 2 the model as A.
_WINNER = {1: {"A>>B": ("model_a", WEIGHT), "A>B": ("model_a", 1), "A=B": ("tie", 1), "B>A": ("model_b", 1),
               "B>>A": ("model_b", WEIGHT)},
           2: {"A>>B": ("model_b", WEIGHT), "A>B": ("model_b", 1), "A=B": ("tie", 1), "B>A": ("model_a", 1),
               "B>>A": ("model_a", WEIGHT)}}


def to_battles(games: list[dict], baseline: str) -> pd.DataFrame:
    """One row per battle (question_id, model_a = baseline, model_b = the model, winner), in
    Arena-Hard's order: models by name (its judgment files, as arena_hard/board.py export writes them),
    each model's questions as given, game 1 first."""
    rows = []
    order = {m: i for i, m in enumerate(sorted({g["model"] for g in games}))}
    first = {}  # each model's questions in the order they first come (as its judgment file lists them)
    for g in games:
        first.setdefault((g["model"], g["question_id"]), len(first))
    for game in sorted(games, key=lambda g: (order[g["model"]], first[(g["model"], g["question_id"])], g["game"])):
        winner, weight = _WINNER[game["game"]].get(game.get("label") or "", (None, 0))
        rows += [{"question_id": game["question_id"], "model_a": baseline, "model_b": game["model"],
                  "winner": winner}] * weight
    return pd.DataFrame(rows, columns=["question_id", "model_a", "model_b", "winner"])


def dropped_games(games: list[dict]) -> dict[str, int]:
    """Per model: games whose label is missing or not one of the five (they count for nothing)."""
    found: dict[str, int] = {}
    for game in games:
        found[game["model"]] = found.get(game["model"], 0) + (game.get("label") not in LABELS)
    return found


def _newton(X: np.ndarray, y: np.ndarray, w: np.ndarray, ridge: float, start: np.ndarray) -> np.ndarray:
    """argmin 0.5 * ridge * |b|^2 + sum w * logloss(y, X b): convex, a few Newton steps."""
    b = start.copy()
    for _ in range(100):
        p = expit(X @ b)
        grad = X.T @ (w * (p - y)) + ridge * b
        hess = (X * (w * p * (1 - p))[:, None]).T @ X + ridge * np.eye(len(b))
        step = np.linalg.lstsq(hess, grad, rcond=None)[0]
        b -= step
        if np.abs(step).max() < 1e-10:
            break
    return b


def _design(battles: pd.DataFrame, models: list[str], features: np.ndarray | None):
    """(X, y, w): one row per battle, soft label P(model_a wins), weight 2 (Arena-Hard duplicates
    every battle, a tie once as a win of each side)."""
    index = {m: i for i, m in enumerate(models)}
    n = len(battles)
    X = np.zeros((n, len(models) + (0 if features is None else features.shape[1])))
    X[np.arange(n), battles["model_a"].map(index).to_numpy()] = 1.0
    X[np.arange(n), battles["model_b"].map(index).to_numpy()] = -1.0
    if features is not None:
        X[:, len(models):] = features
    y = np.where(battles["winner"] == "model_a", 1.0, np.where(battles["winner"] == "tie", 0.5, 0.0))
    return X, y, np.full(n, 2.0)


def _strengths(X, y, w, models: list[str], baseline: str, styled: bool) -> tuple[np.ndarray, np.ndarray]:
    """(each model's logit strength against the baseline (baseline 0), the style coefficients)."""
    base = models.index(baseline)
    p = len(models)
    if styled:  # fit_bt: sklearn's default LogisticRegression, L2 with C = 1, Elo-scaled columns
        Xs = X.copy()
        Xs[:, :p] *= LOG10
        b = _newton(Xs, y, w, 1.0, np.zeros(X.shape[1]))
        return (b[:p] - b[base]) * LOG10, b[p:]
    keep = [i for i in range(p) if i != base]  # anchored: the baseline's column left out
    b = _newton(X[:, keep], y, w, 1e-9, np.zeros(len(keep)))
    out = np.zeros(p)
    out[keep] = b
    return out, np.zeros(0)


def standardized(features: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """construct_style_matrices: each column minus its mean over its deviation; columns with no
    deviation left out (their indices in `kept`)."""
    std = features.std(axis=0)
    kept = [j for j in range(features.shape[1]) if std[j] > 0]
    return (features[:, kept] - features[:, kept].mean(axis=0)) / std[kept], kept


def battle_features(battles: pd.DataFrame, style: dict) -> np.ndarray:
    """(baseline's - model's) / (baseline's + model's + 1) for each style feature;
    style: (model, question_id) -> {feature: count}."""
    a = np.array([[style[(m, q)][f] for f in STYLE] for m, q in zip(battles["model_a"], battles["question_id"])], float)
    b = np.array([[style[(m, q)][f] for f in STYLE] for m, q in zip(battles["model_b"], battles["question_id"])], float)
    return (a - b) / (a + b + 1)


def arena_scores(battles: pd.DataFrame, baseline: str, style: dict | None = None, rounds: int = ROUNDS,
                 seed: int = SEED) -> tuple[pd.DataFrame, dict]:
    """Per model (the baseline included, at 50): score, score_low, score_high (win rate against
    the baseline, %), strength (logit), n_battles; and what the fit used (style coefficients)."""
    columns = ["score", "score_low", "score_high", "strength", "n_battles"]
    if battles.empty:
        return pd.DataFrame(columns=columns, dtype=float), {}
    models = list(dict.fromkeys([baseline, *sorted(set(battles["model_b"]))]))
    features, kept = None, []
    if style is not None:
        features, kept = standardized(battle_features(battles, style))
        if not kept:
            features = None
    X, y, w = _design(battles, models, features)
    styled = features is not None
    point, coef = _strengths(X, y, w, models, baseline, styled)
    rng = np.random.RandomState(seed)
    boot = np.full((rounds, len(models)), np.nan)
    for r in range(rounds):
        idx = rng.choice(len(battles), size=len(battles), replace=True)
        present = [m for m in models if m == baseline or (battles["model_b"].iloc[idx] == m).any()]
        cols = [models.index(m) for m in present] + list(range(len(models), X.shape[1]))
        got, _ = _strengths(X[idx][:, cols], y[idx], w[idx], present, baseline, styled)
        boot[r, [models.index(m) for m in present]] = got
    low, high = np.nanpercentile(boot, 2.5, axis=0), np.nanpercentile(boot, 97.5, axis=0)
    counts = battles["model_b"].value_counts()
    counts[baseline] = len(battles)  # the baseline plays every battle
    table = pd.DataFrame({"score": expit(point) * 100, "score_low": expit(low) * 100, "score_high": expit(high) * 100,
                          "strength": point, "n_battles": [int(counts.get(m, 0)) for m in models]},
                         index=pd.Index(models, name="model"))
    about = {}
    if style is not None:  # show_result.py prints these: how much each feature sways the judge
        about = {"style_features": [STYLE[j] for j in kept],
                 "style_coefficients": {STYLE[j]: round(float(c), 3) for j, c in zip(kept, coef)}}
    return table.sort_values("score", ascending=False), about


# --- Style features of one answer, as add_markdown_info.py counts them -----------------------------
CODE_BLOCK = re.compile("```([^`]*)```")
CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"  # tiktoken's cache key


def markdown_detail(text: str) -> dict[str, dict[str, int]]:
    """add_markdown_info.count_markdown_elements after its code-block removal (what is inside
    ``` blocks goes, the fences stay): headers h1..h6, list items, bold spans."""
    for block in CODE_BLOCK.findall(text):
        text = text.replace(block, "")
    return {
        "header_count": {f"h{k}": len(re.findall(rf"^#{{{k}}}\s", text, re.MULTILINE)) for k in range(1, 7)},
        "list_count": {"ordered": len(re.findall(r"^\s*\d+\.\s", text, re.MULTILINE)),
                       "unordered": len(re.findall(r"^\s*[-*+]\s", text, re.MULTILINE))},
        "bold_count": {"**": len(re.findall(r"\*\*[^*\n]+\*\*", text)), "__": len(re.findall(r"__[^_\n]+__", text))},
    }


def token_counter(cache_dir: Path):
    """(count(text) -> int, name): tiktoken's cl100k_base, Arena-Hard's gpt-3.5-turbo encoder.
    tiktoken would download its vocabulary; the bpe-openai package ships the same file, which is
    put where tiktoken looks for it (`cache_dir`, checked by tiktoken's own sha256). Without
    either, a word-and-punctuation count stands in (the board says which)."""
    import gzip
    import hashlib
    import os

    cache_dir = Path(os.environ.get("TIKTOKEN_CACHE_DIR") or cache_dir)
    cached = cache_dir / hashlib.sha1(CL100K_URL.encode()).hexdigest()
    try:
        import tiktoken

        if not cached.is_file():
            from importlib.util import find_spec

            from lib.records import write_atomic

            package = find_spec("bpe_openai")  # its data file only: importing it loads a 74 MB library
            shipped = Path(package.submodule_search_locations[0]) / "data" / "cl100k_base.tiktoken.gz"
            write_atomic(cached, gzip.decompress(shipped.read_bytes()))
        os.environ["TIKTOKEN_CACHE_DIR"] = str(cache_dir)
        encoder = tiktoken.get_encoding("cl100k_base")
        return (lambda text: len(encoder.encode(text, disallowed_special=()))), "tiktoken cl100k_base"
    except Exception:  # noqa: BLE001  (not installed, or a vocabulary that fails tiktoken's check)
        pattern = re.compile(r"\w+|[^\w\s]", re.UNICODE)
        return (lambda text: len(pattern.findall(text))), "words and punctuation marks (no cl100k vocabulary here)"


def style_of(text: str, count_tokens) -> dict[str, int]:
    """The four style features of one answer (each markdown count summed, as construct_style_matrices does)."""
    return {"token_len": count_tokens(text), **{k: sum(v.values()) for k, v in markdown_detail(text).items()}}
