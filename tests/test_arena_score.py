"""Our Arena-Hard v0.1 scores (tools/board/arena_hard/score.py) against Arena-Hard's own way of computing
them, on the same battles: its show_result.py and utils_math.py at lmarena/arena-hard-auto@0489bf3
(read, not copied into tools/): battles from the exported judgment files with pandas, Bradley-Terry
by sklearn's LogisticRegression (no intercept, no penalty, tol 1e-8, rows duplicated, a tie one win
each), 100 bootstrap rounds of battles.sample(frac=1, replace=True) after np.random.seed(42), win
rates against the baseline from the Elo scale; style control with its feature matrix and sklearn's
default (L2, C=1) fit. Point estimates equal to 0.01 points, intervals too: the same draws."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from board.arena_hard.score import LABELS, arena_scores, markdown_detail, style_of, to_battles, token_counter
from board.arena_hard.board import export

BASELINE = "gpt-4-0314"
pytestmark = pytest.mark.filterwarnings("ignore:'penalty' was deprecated")  # Arena-Hard's own call
MODELS = ["alpha", "beta", "gamma"]


def games_and_answers(n_questions=40, seed=3):
    """Labels drawn with a per-model lean, answers of varied length and markdown."""
    rng = np.random.default_rng(seed)
    lean = {"alpha": [0.05, 0.15, 0.2, 0.35, 0.25], "beta": [0.25, 0.35, 0.2, 0.15, 0.05],
            "gamma": [0.1, 0.2, 0.4, 0.2, 0.1]}
    games, results = [], []
    for m in MODELS:
        for q in range(n_questions):
            for n in (1, 2):
                # game 2 shows the model as A: mirror the lean so each model keeps its strength
                p = lean[m] if n == 1 else lean[m][::-1]
                label = str(rng.choice(LABELS, p=p))
                if m == "gamma" and q == 3 and n == 2:
                    label = None  # a dropped game
                games.append({"model": m, "question_id": q, "game": n, "label": label, "judgment": f"... [[{label}]]",
                              "user_prompt": f"prompt {q}"})
            words = int(rng.integers(5, 120))
            text = ("# Title\n" if rng.random() < 0.4 else "") + " ".join(["word"] * words) + \
                   ("\n- item\n- **bold** item\n" if rng.random() < 0.5 else "")
            results.append({"model": m, "question_id": q, "model_output": text,
                            "reference_output": "## Answer\n" + " ".join(["ref"] * (20 + q)) + "\n1. step\n"})
    return games, results


# --- Arena-Hard's computation (its method choices, in the test only) ------------------------------
def their_battles(judge_dir, multiplier=3, metadata=None):
    from glob import glob

    judgments = pd.concat([pd.read_json(f, lines=True) for f in sorted(glob(f"{judge_dir}/*jsonl"))])
    out = []
    for _, row in judgments.iterrows():
        for n, game in enumerate(row["games"]):
            winner, weight = {"A=B": ("tie", 1), "A>B": ("model_a", 1), "A>>B": ("model_a", multiplier),
                              "B>A": ("model_b", 1), "B>>A": ("model_b", multiplier)}.get(game["score"], (None, 0))
            if n == 1 and winner in ("model_a", "model_b"):
                winner = "model_b" if winner == "model_a" else "model_a"
            battle = {"question_id": row["question_id"], "model_a": BASELINE, "model_b": row["model"], "winner": winner}
            if metadata:
                a, b = metadata[BASELINE][row["question_id"]], metadata[row["model"]][row["question_id"]]
                battle["conv_metadata"] = {"sum_assistant_a_tokens": a["token_len"], "sum_assistant_b_tokens": b["token_len"],
                                           **{f"{k}_a": a[k] for k in ("header_count", "list_count", "bold_count")},
                                           **{f"{k}_b": b[k] for k in ("header_count", "list_count", "bold_count")}}
            out += [battle] * weight
    return pd.DataFrame(out)


def their_mle_elo(df, baseline=BASELINE):
    from sklearn.linear_model import LogisticRegression

    models = pd.concat([df["model_a"], df["model_b"]]).unique()
    models = pd.Series(np.arange(len(models)), index=models)
    df = pd.concat([df, df], ignore_index=True)
    X = np.zeros([len(df), len(models)])
    X[np.arange(len(df)), models[df["model_a"]]] = +math.log(10)
    X[np.arange(len(df)), models[df["model_b"]]] = -math.log(10)
    Y = np.zeros(len(df))
    Y[df["winner"] == "model_a"] = 1.0
    tie = (df["winner"] == "tie").to_numpy()
    tie[len(tie) // 2:] = False
    Y[tie] = 1.0
    lr = LogisticRegression(fit_intercept=False, penalty=None, tol=1e-8)
    lr.fit(X, Y)
    elo = 400 * lr.coef_[0] + 1000
    elo += 1000 - elo[models[baseline]]
    return pd.Series(elo, index=models.index)


def to_win_rate(elo, baseline_elo):
    return 100 / (1 + 10 ** ((baseline_elo - elo) / 400))


def their_scores(battles):
    np.random.seed(42)
    point = their_mle_elo(battles)
    rows = [their_mle_elo(battles.sample(frac=1.0, replace=True)) for _ in range(100)]
    boot = pd.DataFrame(rows)
    return {m: (to_win_rate(point[m], point[BASELINE]), to_win_rate(np.percentile(boot[m], 2.5), 1000),
                to_win_rate(np.percentile(boot[m], 97.5), 1000)) for m in point.index}


def their_style_scores(battles):
    from sklearn.linear_model import LogisticRegression

    elements = ["sum_assistant_a_tokens", "header_count_a", "list_count_a", "bold_count_a",
                "sum_assistant_b_tokens", "header_count_b", "list_count_b", "bold_count_b"]
    models = pd.concat([battles["model_a"], battles["model_b"]]).unique()
    models = pd.Series(np.arange(len(models)), index=models)
    df = pd.concat([battles, battles], ignore_index=True)
    p, n, k = len(models), len(df), 4
    X = np.zeros([n, p + k])
    X[np.arange(n), models[df["model_a"]]] = +math.log(10)
    X[np.arange(n), models[df["model_b"]]] = -math.log(10)
    style = np.array([df.conv_metadata.map(lambda x: x[e] if type(x[e]) is int else sum(x[e].values())).tolist()
                      for e in elements])
    diff = (style[:k] - style[k:]).astype(float)
    total = (style[:k] + style[k:]).astype(float) + 1
    diff = diff / total
    X[:, -k:] = ((diff - diff.mean(axis=1)[:, None]) / diff.std(axis=1)[:, None]).T
    Y = np.zeros(n)
    Y[df["winner"] == "model_a"] = 1.0
    tie = (df["winner"] == "tie").to_numpy()
    tie[n // 2:] = False
    Y[tie] = 1.0

    def fit(X_, Y_):
        lr = LogisticRegression(fit_intercept=False, tol=1e-10, max_iter=10000)
        lr.fit(X_, Y_)
        elo = 400 * lr.coef_[0][:p] + 1000
        return pd.Series(elo + 1114 - elo[models[BASELINE]], index=models.index)

    np.random.seed(42)
    point = fit(X, Y)
    half = n // 2
    ties = (battles["winner"] == "tie").to_numpy()
    rows = []
    for _ in range(100):
        idx = np.random.choice(list(range(half)), size=half, replace=True)
        non, tied = idx[~ties[idx]], idx[ties[idx]]
        tied = np.concatenate([tied, tied + half])
        rows.append(fit(np.concatenate([X[non], X[non], X[tied]]), np.concatenate([Y[non], Y[non], Y[tied]])))
    boot = pd.DataFrame(rows)
    return {m: (to_win_rate(point[m], 1114), to_win_rate(np.percentile(boot[m], 2.5), 1114),
                to_win_rate(np.percentile(boot[m], 97.5), 1114)) for m in point.index}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("arena")
    games, results = games_and_answers()
    questions = {q: {"instruction": f"question {q}", "dataset": "cluster"} for q in range(40)}
    root = export(out, questions, results, games, BASELINE, "tiny-judge", {q: f"uid{q}" for q in range(40)})
    return out, root, games, results


def test_export_is_arena_hards_layout(exported):
    out, root, games, results = exported
    assert sorted(p.name for p in (root / "model_answer").iterdir()) == sorted(f"{m}.jsonl" for m in [*MODELS, BASELINE])
    rows = [json.loads(line) for line in (root / "model_judgment" / "tiny-judge" / "gamma.jsonl").open()]
    assert len(rows) == 40 and rows[3]["games"][1]["score"] is None and rows[0]["question_id"] == "uid0"
    assert [g["score"] for g in rows[0]["games"]] == [g["label"] for g in games if g["model"] == "gamma"][:2]
    answer = json.loads((root / "model_answer" / "alpha.jsonl").open().readline())
    assert answer["choices"][0]["turns"][0]["content"] == results[0]["model_output"]
    assert answer["conv_metadata"]["token_len"] == answer["choices"][0]["turns"][0]["token_len"] > 0


def test_bradley_terry_and_bootstrap_equal_arena_hards(exported):
    out, root, games, _ = exported
    theirs = their_scores(their_battles(root / "model_judgment" / "tiny-judge"))
    battles = to_battles([{**g, "question_id": f"uid{g['question_id']}"} for g in games], BASELINE)
    ours, _ = arena_scores(battles, BASELINE)
    assert set(ours.index) == set(theirs) == {*MODELS, BASELINE}
    for model, (score, low, high) in theirs.items():
        row = ours.loc[model]
        assert row["score"] == pytest.approx(score, abs=0.01), model
        assert row["score_low"] == pytest.approx(low, abs=0.01), model  # the same 100 resamples
        assert row["score_high"] == pytest.approx(high, abs=0.01), model
    assert ours.loc[BASELINE, "score"] == pytest.approx(50)
    assert ours.loc["alpha", "score"] > 50 > ours.loc["beta", "score"]
    # gamma's dropped game counts for nothing: one battle fewer than its labels would give
    assert int(ours.loc["gamma", "n_battles"]) == len(battles[battles.model_b == "gamma"])


def test_style_control_equals_arena_hards(exported):
    out, root, games, results = exported
    metadata = {}
    for path in (root / "model_answer").glob("*.jsonl"):
        rows = [json.loads(line) for line in path.open()]
        metadata[rows[0]["model_id"]] = {r["question_id"]: r["conv_metadata"] for r in rows}
    theirs = their_style_scores(their_battles(root / "model_judgment" / "tiny-judge", metadata=metadata))
    count, _ = token_counter(out / "tiktoken")
    style = {}
    for r in results:
        style[(r["model"], f"uid{r['question_id']}")] = style_of(r["model_output"], count)
        style[(BASELINE, f"uid{r['question_id']}")] = style_of(r["reference_output"], count)
    battles = to_battles([{**g, "question_id": f"uid{g['question_id']}"} for g in games], BASELINE)
    ours, about = arena_scores(battles, BASELINE, style=style)
    assert about["style_features"] == ["token_len", "header_count", "list_count", "bold_count"]
    for model, (score, low, high) in theirs.items():
        row = ours.loc[model]
        assert row["score"] == pytest.approx(score, abs=0.01), model
        assert row["score_low"] == pytest.approx(low, abs=0.02), model
        assert row["score_high"] == pytest.approx(high, abs=0.02), model


def test_markdown_counts_follow_add_markdown_info(tmp_path):
    text = "# One\n## Two\n#NoSpace\n1. first\n  - nested\n* star\n**bold** and __under__\n```\n# code\n- x\n```\n"
    counts = markdown_detail(text)
    assert counts["header_count"]["h1"] == 1 and counts["header_count"]["h2"] == 1
    assert counts["list_count"] == {"ordered": 1, "unordered": 2}  # the code block's "- x" is gone
    assert counts["bold_count"] == {"**": 1, "__": 1}
    count, name = token_counter(tmp_path / "tiktoken")
    assert name == "tiktoken cl100k_base" and count("Hello world") == 2
