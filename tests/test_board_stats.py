"""The board's numbers: alpaca_eval's win rate, both orders combined, bootstrap intervals,
length control, position consistency and the warnings. No model needed."""
import math

import numpy as np
import pandas as pd
import pytest
from alpaca_eval.metrics import get_winrate

from board.provenance import safe_settings
from board.pairwise.stats import (BOARD_COLUMNS, board_table, bootstrap_ci, by_dataset, judge_consistency,
                         length_controlled_win_rate, warnings_for, win_rate_stats)
from judges.pairs import combine


def result(model, qid, pref_model_first, pref_reference_first, model_output="a", reference_output="b"):
    identical = model_output == reference_output
    pref, agree = (1.5, None) if identical else combine(pref_model_first, pref_reference_first)
    return {"model": model, "question_id": qid, "instruction": f"q{qid}", "model_output": model_output,
            "reference_output": reference_output, "identical": identical,
            "pref_model_first": None if identical else pref_model_first,
            "pref_reference_first": None if identical else pref_reference_first,
            "preference": pref, "consistent": agree, "n_calls": 0 if identical else 2, "n_failed": 0}


def test_combine_both_orders():
    # Model first: pref 1 means "first (the model) is better"; reference first: pref 2 means the model.
    assert combine(1, 2) == (2.0, True)  # both orders pick the model
    assert combine(2, 1) == (1.0, True)  # both pick the reference
    assert combine(2, 2) == (1.5, False)  # always the second shown: disagree -> a tie
    assert combine(1, 1) == (1.5, False)
    pref, agree = combine(1.2, 1.7)  # soft: P(model) 0.8 and 0.7 -> 0.75
    assert pref == pytest.approx(1.75) and agree
    assert combine(0, 0) == (1.5, True)  # alpaca_eval's 0 is a draw


def test_win_rate_columns_match_alpaca_eval():
    rng = np.random.default_rng(1)
    results = [result("m", i, *rng.uniform(1, 2, size=2)) for i in range(40)]
    results += [result("m", 40, 1, 1, "same", "same")]  # identical answers: a tie, no call
    board = board_table(results)
    assert list(board.columns) == BOARD_COLUMNS
    expected = get_winrate(pd.DataFrame({"preference": [r["preference"] for r in results]}))
    for key, value in expected.items():
        assert board.loc["m", key] == pytest.approx(value), key
    assert board.loc["m", "n_judge_calls"] == 80 and board.loc["m", "n_failed"] == 0
    low, high = board.loc["m", "win_rate_ci_low"], board.loc["m", "win_rate_ci_high"]
    assert 0 <= low < board.loc["m", "win_rate"] < high <= 100


@pytest.mark.parametrize("prefs", [
    [1.0, 2.0, 1.5, 0.0, 1.75, 1.25, 1.5000001, 1.4999999, 2.0, 1.0],  # ties as 1.5 and as 0, soft verdicts
    [1.0, float("nan"), 2.0, 0.7, 2.3, 2.6, -0.4, 1.5],  # NaN and values outside [1, 2]
    [2.0, 2.0, 2.0], [1.5], [0.0, 0.0],  # one-sided, a lone tie, no pair left
])
def test_win_rate_stats_is_get_winrate(prefs):
    # written out so a board need not import alpaca_eval (3 s): every key, every edge, as get_winrate
    ours = win_rate_stats(pd.Series(prefs))
    theirs = get_winrate(pd.DataFrame({"preference": prefs}))
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, nan_ok=True), key


def test_bootstrap_is_reproducible_and_degenerate_cases():
    prefs = pd.Series([1.0, 2.0, 1.5, 1.8, 1.1, 2.0, 1.9, 1.3])
    assert bootstrap_ci(prefs) == bootstrap_ci(prefs)  # fixed seed
    assert bootstrap_ci(pd.Series([1.5, 1.5, 1.5])) == (50.0, 50.0)
    assert all(math.isnan(v) for v in bootstrap_ci(pd.Series([2.0])))


def test_length_control_removes_a_pure_length_effect():
    n = 60
    rng = np.random.default_rng(0)
    diff = rng.normal(0, 200, size=n)
    ref_len = pd.Series(np.full(n, 500.0))
    model_len = pd.Series(500 + diff)
    # The judge prefers whichever answer is longer, and nothing else.
    by_length = pd.Series(1 + 1 / (1 + np.exp(-diff / 50)))
    raw = (by_length.mean() - 1) * 100
    # Make the model longer on average: raw win rate well above 50, LC back near 50.
    longer = model_len + 150
    by_length_longer = pd.Series(1 + 1 / (1 + np.exp(-(diff + 150) / 50)))
    assert (by_length_longer.mean() - 1) * 100 > 65
    assert abs(length_controlled_win_rate(by_length_longer, longer, ref_len) - 50) < 12
    assert abs(raw - 50) < 15
    # A preference that does not depend on length: LC stays near the raw win rate.
    flat = pd.Series(rng.uniform(1.5, 2.0, size=n))
    assert length_controlled_win_rate(flat, model_len, ref_len) == pytest.approx((flat.mean() - 1) * 100, abs=3)
    # All ties: 50.
    assert length_controlled_win_rate(pd.Series([1.5] * 5), model_len[:5], ref_len[:5]) == pytest.approx(50)


def test_consistency_counts_only_judged_pairs_and_warns():
    results = [result("m", i, 2, 2) for i in range(8)] + [result("m", 9, 1, 1, "x", "x")]
    consistency, n = judge_consistency(results)
    assert (consistency, n) == (0.0, 8)
    board = board_table(results)
    assert board.loc["m", "position_consistency"] == 0.0
    assert board.loc["m", "win_rate"] == 50.0  # a judge that always says "second" is a tie, not 83%
    found = warnings_for(board, consistency, n, "tiny", n_questions=9, check=None)
    assert found[0].startswith("JUDGE WITHOUT SIGNAL") and any("only 9 questions" in w for w in found)
    good = [result("m", i, 1.1, 1.9) for i in range(40)]
    assert not warnings_for(board_table(good), *judge_consistency(good), "big", n_questions=40, check=None)


def test_failed_pairs_are_left_out_and_counted():
    results = [result("m", i, 1.2, 1.8) for i in range(3)]
    results[0].update(preference=None, consistent=None, pref_reference_first=None, n_failed=1)
    board = board_table(results)
    assert board.loc["m", "n_total"] == 2 and board.loc["m", "n_failed"] == 1
    assert any("no verdict" in w for w in warnings_for(board, 100.0, 2, "j", 3, None))


def test_manifest_settings_carry_no_secret():
    raw = {"path": "m.gguf", "api_key_env": "OPENAI_API_KEY", "api_key": "sk-secret",
           "base_url": "https://user:pw@example.test/v1", "hf_token": "hf_secret", "max_tokens": 9}
    clean = safe_settings(raw)
    assert clean == {"path": "m.gguf", "api_key_env": "OPENAI_API_KEY",
                     "base_url": "https://example.test/v1", "max_tokens": 9}


def test_logprob_reply_parsing_never_guesses():
    from judges.prompt import parse_logprob_reply

    def reply(text, top):
        return {"choices": [{"message": {"content": text}, "logprobs": {"content": [
            {"token": text, "logprob": 0.0, "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top]}]}}]}

    assert parse_logprob_reply(reply("M", [("M", -0.1), ("m", -0.1)]))["preference"] == pytest.approx(1.5)
    assert parse_logprob_reply(reply("m", [("m", -0.01), ("The", -5)]))["preference"] == 1.0  # only m: P(m) = 1
    assert parse_logprob_reply(reply("M", [("M", 0.0), ("m", -2000.0)]))["preference"] == pytest.approx(2.0)
    forced = parse_logprob_reply(reply("M", [("The", -0.5), ("A", -1.0)]))  # grammar-forced, not in the top
    assert forced == {"preference": 2.0, "soft": False, "text": "M", "source": "text"}
    assert "error" in parse_logprob_reply(reply("Output", [("Output", -0.1)]))
    assert "error" in parse_logprob_reply({"unexpected": True})


def test_a_judge_that_follows_length_is_named_for_the_models_it_moves():
    """Verdicts that depend on answer length only: the long and the short model's win rates move
    10 points or more from their LC win rates and the board says so, naming them; a model as long
    as the reference is not named, and a judge blind to length gives no such warning."""
    rng = np.random.default_rng(3)

    def board_of(by_length: bool):
        results = []
        for model, shift in (("verbose", 400), ("plain", 0), ("terse", -300)):
            for q in range(40):
                d = shift + rng.normal(0, 100)
                p = 1 / (1 + np.exp(-d / 100)) if by_length else rng.uniform(0.4, 0.6)  # P(model better)
                results.append(result(model, q, 2 - p, 1 + p, "a" * int(500 + d), "b" * 500))
        return board_table(results), results

    board, results = board_of(by_length=True)
    found = [w for w in warnings_for(board, *judge_consistency(results), "j", 40, None) if w.startswith("LENGTH")]
    gaps = (board["lc_win_rate"] - board["win_rate"]).abs()
    assert gaps["verbose"] >= 10 and gaps["terse"] >= 10 and gaps["plain"] < 10
    assert len(found) == 1 and "'verbose' (" in found[0] and "'terse' (" in found[0] and "'plain'" not in found[0]
    assert "rank these models by lc_win_rate" in found[0]
    board, results = board_of(by_length=False)
    assert not [w for w in warnings_for(board, *judge_consistency(results), "j", 40, None) if w.startswith("LENGTH")]


def test_by_dataset_is_each_models_win_rate_on_each_datasets_questions():
    rng = np.random.default_rng(5)
    datasets = {q: ("math" if q < 12 else "writing") for q in range(30)}
    results = [result(m, q, *rng.uniform(1, 2, size=2)) for m in ("a", "b") for q in range(30)]
    results[0].update(preference=None, consistent=None, n_failed=1)  # a's first math pair: no verdict
    table = by_dataset(results, datasets)
    assert [(r.dataset, r.model) for r in table.itertuples()] == [("math", "a"), ("math", "b"),
                                                                   ("writing", "a"), ("writing", "b")]
    for row in table.itertuples():
        prefs = pd.Series([r["preference"] for r in results if r["model"] == row.model
                           and datasets[r["question_id"]] == row.dataset and r["preference"] is not None])
        assert row.win_rate == pytest.approx(get_winrate(pd.DataFrame({"preference": prefs}))["win_rate"])
        assert (row.win_rate_ci_low, row.win_rate_ci_high) == bootstrap_ci(prefs)
        assert row.n_total == len(prefs) and row.n_questions == (12 if row.dataset == "math" else 18)
    assert table.loc[0, "n_total"] == 11
    assert by_dataset(results, {q: "one" for q in range(30)}).empty  # one dataset: no breakdown
