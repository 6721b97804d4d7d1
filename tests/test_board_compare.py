"""Model against model (tools/board/pairwise/compare.py): paired bootstrap of win-rate differences,
Bradley-Terry with bootstrap intervals, agreement between judges, combining judges."""
import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from scipy.stats import bootstrap

from board.pairwise.compare import (bradley_terry, combine_judges, disagreeing_judges, judge_agreement,
                           reference_battles, versus_table)


def res(model, qid, pref, identical=False):
    return {"model": model, "question_id": qid, "preference": pref, "identical": identical,
            "consistent": None if pref is None or identical else True, "n_calls": 2, "n_failed": int(pref is None)}


def test_versus_is_the_paired_difference_with_its_bootstrap():
    rng = np.random.default_rng(3)
    n = 120
    a, b = rng.uniform(1.2, 2.0, n), rng.uniform(1.0, 1.9, n)
    results = [res("A", q, a[q]) for q in range(n)] + [res("B", q, b[q]) for q in range(n)]
    results += [res("B", n, 2.0), res("A", n + 1, None)]  # answered by one only / no verdict: left out
    table = versus_table(results).set_index(["model_a", "model_b"])
    ab, ba = table.loc[("A", "B")], table.loc[("B", "A")]
    assert ab["n_questions"] == n
    assert ab["diff"] == pytest.approx((a - b).mean() * 100)
    assert ba["diff"] == pytest.approx(-ab["diff"]) and ba["ci_low"] == pytest.approx(-ab["ci_high"])
    # The same interval scipy's paired percentile bootstrap gives (different draws: within a point).
    ref = bootstrap(((a - b) * 100,), np.mean, method="percentile", n_resamples=4000,
                    rng=np.random.default_rng(0)).confidence_interval
    assert ab["ci_low"] == pytest.approx(ref.low, abs=1) and ab["ci_high"] == pytest.approx(ref.high, abs=1)
    assert ab["p_a_ahead"] > 99 and ab["p_a_ahead"] + ba["p_a_ahead"] == pytest.approx(100)


def test_versus_of_two_equal_models_is_unsure():
    rng = np.random.default_rng(4)
    same = rng.uniform(1, 2, 200)
    results = [res("A", q, same[q]) for q in range(200)] + [res("B", q, rng.permutation(same)[0]) for q in range(200)]
    ab = versus_table(results).set_index(["model_a", "model_b"]).loc[("A", "B")]
    assert ab["ci_low"] < 0 < ab["ci_high"] and 5 < ab["p_a_ahead"] < 95


def test_bradley_terry_recovers_known_strengths():
    rng = np.random.default_rng(5)
    truth = {"ref": 0.0, "strong": 1.0, "weak": -1.0, "mid": 0.2}
    battles = []
    for q in range(400):
        for a, b in [("strong", "ref"), ("weak", "ref"), ("mid", "ref"), ("strong", "weak"), ("mid", "strong")]:
            p_a = expit(truth[a] - truth[b])
            battles.append({"model_a": a, "model_b": b, "question_id": q, "preference": 2 - float(rng.random() < p_a)})
    bt = bradley_terry(battles, "ref")
    assert bt.loc["ref", "strength"] == 0 and bt.loc["ref", "n_battles"] == 1200
    for model, s in truth.items():
        assert bt.loc[model, "strength"] == pytest.approx(s, abs=0.2), model
        if model != "ref":
            assert bt.loc[model, "strength_ci_low"] < s < bt.loc[model, "strength_ci_high"], model
            assert bt.loc[model, "wr_ci_low"] < bt.loc[model, "win_rate_vs_reference"] < bt.loc[model, "wr_ci_high"]
    assert list(bt.index[:2]) == ["strong", "mid"]


def test_bradley_terry_on_reference_pairs_only_gives_back_the_win_rate():
    results = [res("m", q, 2.0 if q % 4 else 1.0) for q in range(100)] + [res("ref", q, 1.5, True) for q in range(100)]
    bt = bradley_terry(reference_battles(results, "ref"), "ref")
    assert bt.loc["m", "win_rate_vs_reference"] == pytest.approx(75, abs=0.1)
    winner = bradley_terry(reference_battles([res("w", q, 2.0) for q in range(5)], "ref"), "ref")
    assert np.isfinite(winner.loc["w", "strength"]) and winner.loc["w", "strength"] > 3  # won every battle


def test_judge_agreement_and_the_disagreeing_judge():
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(6)
    truth = rng.choice([1.0, 1.5, 2.0], size=150, p=[0.45, 0.1, 0.45])
    noisy = np.where(rng.random(150) < 0.1, 3 - truth, truth)
    by_judge = {"a": [res("m", q, truth[q]) for q in range(150)],
                "b": [res("m", q, noisy[q]) for q in range(150)],
                "c": [res("m", q, truth[q]) for q in range(150)],
                "coin": [res("m", q, rng.choice([1.0, 2.0])) for q in range(150)]}
    by_judge["c"][0]["preference"] = None  # a failed call: only pairs both judged count
    table = judge_agreement(by_judge).set_index(["judge_a", "judge_b"])
    assert table.loc[("a", "c"), "n_pairs"] == 149 and table.loc[("a", "c"), "same_side"] == 100
    sides = lambda p: np.sign(p - 1.5)
    assert table.loc[("a", "b"), "kappa"] == pytest.approx(cohen_kappa_score(sides(truth), sides(noisy)))
    assert table.loc[("a", "b"), "same_side"] == pytest.approx((sides(truth) == sides(noisy)).mean() * 100)
    found = disagreeing_judges(judge_agreement(by_judge))
    assert len(found) == 1 and "'coin'" in found[0]
    two = disagreeing_judges(judge_agreement({"a": by_judge["a"], "coin": by_judge["coin"]}))
    assert len(two) == 1 and "JUDGES DISAGREE" in two[0]
    assert not disagreeing_judges(judge_agreement({k: by_judge[k] for k in "abc"}))


def test_combine_judges_mean_preference():
    by_judge = {"x": [res("m", 0, 2.0), res("m", 1, 1.0), res("m", 2, 1.5, True)],
                "y": [res("m", 0, 1.5), res("m", 1, None), res("m", 2, 1.5, True)]}
    by_judge["y"][0]["consistent"] = False
    merged = {r["question_id"]: r for r in combine_judges(by_judge)}
    assert merged[0]["preference"] == 1.75 and merged[0]["consistent"] is False
    assert merged[0]["preferences"] == {"x": 2.0, "y": 1.5} and merged[0]["n_calls"] == 4
    assert merged[1]["preference"] is None and merged[1]["n_failed"] == 1  # left out until y answers
    assert merged[2]["preference"] == 1.5 and merged[2]["consistent"] is None


def test_combine_judges_averages_each_order_too():
    one = {"model": "m", "question_id": 0, "preference": 1.75, "identical": False, "consistent": True,
           "n_calls": 2, "n_failed": 0, "pref_model_first": 1.2, "pref_reference_first": 1.7}
    two = {**one, "preference": 1.25, "pref_model_first": 1.8, "pref_reference_first": 1.3}
    merged = combine_judges({"x": [one], "y": [two]})[0]
    assert merged["pref_model_first"] == pytest.approx(1.5) and merged["pref_reference_first"] == pytest.approx(1.5)
    assert merged["preference"] == pytest.approx(1.5)
