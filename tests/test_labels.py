"""Labelled judge calls (tools/judges/labels.py) with the embedded SmolLM2 judge, in-process:
the label position, ratings that are two tokens ("10" = "1" then "0") chained exactly (checked
against llama-cpp-python's own logits over the whole text), every call rated (none lost), the
cache reused, and fast mode beside the explained one."""
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from judges.resolve import resolve_judge
from judges.labels import (RATINGS, LabelledCall, chain_probs, fastchat_rating, label_calls, label_position,
                           option_paths, path_nodes)
from lib.registry import load_registry

ROOT = Path(__file__).resolve().parent.parent
SMOLLM2 = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
pytestmark = pytest.mark.skipif(not SMOLLM2.is_file(), reason="run `make models` first")
TEMPLATE = ("Rate the answer from 1 to 10 and write the rating as [[rating]].\n\n[Question]\n{question}\n\n"
            "[Answer]\n{answer}\n[End]")


def call(question, answer, **kw):
    return LabelledCall(system="You are a strict judge.", template=TEMPLATE, fields=(("question", question), ("answer", answer)),
                        protocol="test/rate", cut=("answer",), **kw)


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    folder = tmp_path_factory.mktemp("labels")
    (folder / "models.toml").write_text(f'[models.judge]\npath = "{SMOLLM2}"\nn_ctx = 2048\nmax_tokens = 24\n')
    judge = resolve_judge("judge", load_registry(folder / "models.toml"), folder)
    yield judge, folder
    judge.close()


def test_label_position_finds_the_judges_own_bracket_or_appends_the_cue():
    c = call("q", "a")
    assert label_position(c, "Good. Rating: [[7]] thanks") == ("Good. Rating: [[", "logits")
    assert label_position(c, "see [[rating]] ... so [[10]]") == ("see [[rating]] ... so [[", "logits")
    assert label_position(c, "I quote [[x]] here") == ("I quote [[", "logits")  # its last [[
    assert label_position(c, "No rating at all.") == ("No rating at all.\n\nRating: [[", "logits-cued")


def test_ten_is_two_tokens_and_its_chain_equals_the_models_own_logits(judge, tmp_path):
    judge, _ = judge
    backend = judge._load()
    encode = lambda text: backend.model.tokenize(text.encode(), add_bos=False, special=False)  # noqa: E731
    head, paths = option_paths(encode, "The answer is right. Rating: [[", RATINGS)
    assert len(paths["10"]) >= 3 and paths["10"][0] == paths["1"][0]  # "1", "0", "]]"...: several tokens
    # The in-process chain for one call, then the same probabilities from llama-cpp-python's own
    # full-sequence logits (logits_all), computed independently.
    c = call("What is 2+2?", "4", fast=True)
    records, stats = label_calls(judge, [c], tmp_path, quiet=True)
    record = records[c]
    import llama_cpp

    prompt = judge.tokens(c.messages())
    head, paths = option_paths(encode, c.cue, RATINGS)
    llm = llama_cpp.Llama(model_path=str(SMOLLM2), n_ctx=2048, logits_all=True, verbose=False)
    raw = {}
    for option, path in paths.items():
        tokens = prompt + head + path
        llm.reset()
        llm.eval(tokens)
        logits = np.array(llm.scores[:len(tokens)], dtype=np.float64)
        start = len(prompt) + len(head)
        lp = 0.0
        for j, token in enumerate(path):
            row = logits[start + j - 1]
            lp += row[token] - (row.max() + math.log(np.exp(row - row.max()).sum()))
        raw[option] = math.exp(lp)
    total = sum(raw.values())
    # llama.cpp's kernels round a token decoded alone differently from one inside a whole prompt
    # (measured: log-probabilities up to ~0.2 apart on this Q4_1 model, 0.05 in a probability), so
    # equal up to that; the chain itself is exact (the next test).
    for option in RATINGS:
        assert record["probs"][option] == pytest.approx(raw[option] / total, abs=0.08)
    assert record["mass"] == pytest.approx(total, rel=0.3)
    assert record["expected"] == pytest.approx(sum(int(o) * p for o, p in raw.items()) / total, abs=0.35)


def test_the_chain_multiplies_every_token_of_an_option_and_its_closing_bracket():
    # "1" then "]]" for 1; "1", "0", "]]" for 10: P(10) = P(1) P(0 | 1) P(]] | 10), exactly.
    paths = {"1": [1, 99], "10": [1, 0, 99], "2": [2, 99]}
    lp = {((), 1): math.log(0.5), ((), 2): math.log(0.2), ((1,), 99): math.log(0.3), ((1,), 0): math.log(0.6),
          ((1, 0), 99): math.log(0.9), ((2,), 99): math.log(1.0)}
    probs, mass = chain_probs(paths, lambda node, token: lp[(node, token)])
    raw = {"1": 0.5 * 0.3, "10": 0.5 * 0.6 * 0.9, "2": 0.2}
    assert mass == pytest.approx(sum(raw.values()))
    assert probs == pytest.approx({k: v / sum(raw.values()) for k, v in raw.items()})
    assert path_nodes(paths) == [(), (1,), (2,), (1, 0)]


def test_every_call_gets_a_rating_cached_and_fast_mode_reads_it_without_an_explanation(judge, tmp_path):
    judge, out_dir = judge[0], tmp_path
    calls = [call("What is the capital of France?", "Paris."), call("What is the capital of France?", "Bananas are yellow."),
             call("Name a prime number.", "7"), call("Name a prime number.", "8")]
    calls += [replace(c, fast=True) for c in calls[:2]]
    records, stats = label_calls(judge, calls, out_dir, quiet=True)
    assert stats.failed == 0 and len(records) == len(calls)  # no rating lost
    for c in calls:
        r = records[c]
        assert r["label"] in RATINGS and 1 <= r["expected"] <= 10 and r["score"] == r["expected"]
        assert sum(r["probs"].values()) == pytest.approx(1, abs=1e-4) and 0 < r["mass"] <= 1 + 1e-6
        assert (r["source"] == "fast") == c.fast and r["source"] in ("fast", "logits", "logits-cued")
        assert (r["judgment"] == "") == c.fast
        if r["source"] == "logits-cued":
            assert fastchat_rating(r["judgment"]) is None  # cued only when the judge wrote no rating
    again, stats2 = label_calls(judge, calls, out_dir, quiet=True)
    assert stats2.reused == len(calls) and stats2.made == 0
    assert {c: again[c]["expected"] for c in calls} == {c: records[c]["expected"] for c in calls}


def test_the_transformers_judge_rates_like_the_llama_cpp_one(judge, tmp_path):
    """The same weights (transformers dequantizes the GGUF): every call rated, the ratings' chain
    the same, so the fast ratings agree with llama.cpp's up to the two libraries' arithmetic."""
    llama, _ = judge
    (tmp_path / "models.toml").write_text(f'[models.hf]\npath = "{SMOLLM2}"\nbackend = "transformers"\n'
                                          f'n_ctx = 2048\nmax_tokens = 8\n')
    hf = resolve_judge("hf", load_registry(tmp_path / "models.toml"), tmp_path)
    calls = [call("What is 2+2?", "4", fast=True), call("What is 2+2?", "22", fast=True), call("Capital of Italy?", "Rome")]
    try:
        got, stats = label_calls(hf, calls, tmp_path / "hf", quiet=True)
    finally:
        hf.close()
    ref, _ = label_calls(llama, calls[:2], tmp_path / "llama", quiet=True)
    assert stats.failed == 0 and len(got) == 3 and got[calls[2]]["judgment"]
    for c in calls[:2]:
        assert sum(got[c]["probs"].values()) == pytest.approx(1, abs=1e-4)
        assert got[c]["expected"] == pytest.approx(ref[c]["expected"], abs=0.5)
