"""Labelled calls in one decode each (backends/llama_label.py, hf_judge.py's past key values)
against the two-pass path they replace (LLMEVAL_LABEL_PATH=two-pass): the same greedy
explanations and the same probabilities (within 1e-4) on the embedded SmolLM2 judge and on the
Baichuan twin as a transformers judge; shared prompt starts decoded once; and a real kill -9 in
the middle of grading keeps every rating already read, a rerun asking only for the rest."""
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

import twins
from judges.labels import LabelledCall, label_calls
from judges.resolve import resolve_judge
from lib.registry import load_registry

ROOT = Path(__file__).resolve().parent.parent
SMOLLM2 = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
TEMPLATE = ("Rate the answer from 1 to 10 and write the rating as [[rating]].\n\n[Question]\n{question}\n\n"
            "[Answer]\n{answer}\n[End]")
needs_smollm2 = pytest.mark.skipif(not SMOLLM2.is_file(), reason="run `make models` first")


def call(question, answer, **kw):
    return LabelledCall(system="You are a strict judge.", template=TEMPLATE, fields=(("question", question), ("answer", answer)),
                        protocol="test/rate", cut=("answer",), max_tokens=16, **kw)


CALLS = [call("What is the capital of France?", "Paris."), call("What is the capital of France?", "Bananas."),
         call("Name a prime number.", "8"), call("Name a prime number.", "7", fast=True)]


def both_paths(folder: Path, entry: str, monkeypatch, calls=CALLS):
    """{path: {call: result}}: two-pass with one sequence (its numbers then do not depend on how
    its scorer splits the calls over slots), one-decode with the judge's own parallel."""
    (folder / "models.toml").write_text(entry("one", "parallel = 1") + entry("many", ""), encoding="utf-8")
    registry = load_registry(folder / "models.toml")
    got = {}
    for path, name in (("two-pass", "one"), ("", "many")):
        monkeypatch.setenv("LLMEVAL_LABEL_PATH", path)
        judge = resolve_judge(name, registry, folder)
        try:
            got[path or "one-decode"] = dict(judge.label(calls))
            got[path or "one-decode", "stats"] = judge.last_stats
        finally:
            judge.close()
    return got


def assert_same(got, calls):
    for c in calls:
        old, new = got["two-pass"][c], got["one-decode"][c]
        assert "error" not in old and "error" not in new, (old, new)
        assert new["judgment"] == old["judgment"] and new["source"] == old["source"] and new["label"] == old["label"]
        assert max(abs(new["probs"][o] - old["probs"][o]) for o in c.options) < 1e-4, (old["probs"], new["probs"])


@needs_smollm2
def test_one_decode_equals_the_two_pass_path_on_the_embedded_judge(tmp_path, monkeypatch):
    def entry(name, extra):
        return f'[models.{name}]\npath = "{SMOLLM2}"\nn_ctx = 1024\n{extra}\n'
    got = both_paths(tmp_path, entry, monkeypatch)
    assert_same(got, CALLS)
    stats = got["one-decode", "stats"]
    # the prompts share the template's head (all) and the question (pairs): decoded once
    assert stats["prompt_tokens_saved"] > stats["prompt_tokens"] // 2 and stats["copies"] >= 2
    assert stats["calls"] == len(CALLS) and stats["parallel"] > 1


def test_one_decode_equals_the_two_pass_path_on_the_baichuan_twin(tmp_path, monkeypatch):
    """The twin's random weights write arbitrary text: the cue is appended (logits-cued), and the
    numbers still match; the twin's own chat template from models.toml."""
    folder = twins.baichuan_as_llama(twins.build_baichuan(tmp_path / "twin"), tmp_path / "llama")
    declared = load_registry(ROOT / "models.toml").get("baichuan_7b")
    def entry(name, extra):
        return (f'[models.{name}]\npath = "{folder}"\nbackend = "transformers"\nn_ctx = 512\n'
                f'chat_template = {json.dumps(declared.chat_template)}\n{extra}\n')
    calls = CALLS[:2] + CALLS[3:]
    assert_same(both_paths(tmp_path, entry, monkeypatch, calls), calls)


KILLED = """
import sys
sys.path.insert(0, {tools!r}); sys.path.insert(0, {tests!r})
from pathlib import Path
from test_labels_stream import CALLS
from judges.labels import label_calls
from judges.resolve import resolve_judge
from lib.registry import load_registry
out = Path({out!r})
judge = resolve_judge("judge", load_registry(out / "models.toml"), out)
label_calls(judge, CALLS, out, quiet=True)
"""


@needs_smollm2
def test_a_kill_during_grading_keeps_every_rating_read(tmp_path):
    """One sequence, so the calls end one after another; kill -9 once the first is cached."""
    (tmp_path / "models.toml").write_text(f'[models.judge]\npath = "{SMOLLM2}"\nn_ctx = 1024\nparallel = 1\n', encoding="utf-8")
    script = KILLED.format(tools=str(ROOT / "tools"), tests=str(ROOT / "tests"), out=str(tmp_path))
    env = {k: v for k, v in os.environ.items() if k != "LLMEVAL_LABEL_PATH"}
    child = subprocess.Popen([sys.executable, "-c", script], env=env)
    cache = tmp_path / "judge" / "labels.jsonl"
    deadline = time.monotonic() + 300
    while child.poll() is None and time.monotonic() < deadline:
        if cache.is_file() and cache.read_text(encoding="utf-8").count("\n") >= 1:
            break
        time.sleep(0.02)
    assert child.poll() is None, "grading ended before the kill"
    child.send_signal(signal.SIGKILL)
    child.wait()
    kept = [json.loads(line) for line in cache.read_text(encoding="utf-8").splitlines()]
    assert 1 <= len(kept) < len(CALLS) and all(r["label"] in CALLS[0].options for r in kept)
    judge = resolve_judge("judge", load_registry(tmp_path / "models.toml"), tmp_path)
    try:
        records, stats = label_calls(judge, CALLS, tmp_path, quiet=True)
    finally:
        judge.close()
    assert stats.reused == len(kept) and stats.made == len(CALLS) - len(kept) and len(records) == len(CALLS)
    assert all("_generated" not in r for r in records.values())  # the progress count is never cached


def test_the_count_line_says_the_time_make_bench_judge_measured(tmp_path):
    """OUT/bench_judge.json's labelled rows give the expected time; none, another judge's or a
    damaged file give no estimate (and no error)."""
    from judges.labels import expected_time

    (tmp_path / "models.toml").write_text(f'[models.judge]\npath = "{SMOLLM2}"\n', encoding="utf-8")
    judge = resolve_judge("judge", load_registry(tmp_path / "models.toml"), tmp_path, check_only=True)
    calls = [replace(c, protocol="mt_bench/single-v1") for c in CALLS]
    assert expected_time(judge, calls, 120, tmp_path) is None
    rows = [{"set": "arena_hard", "max_tokens": 128, "one_decode": {"calls_per_s": 1.0}},
            {"set": "mt_bench", "max_tokens": 128, "one_decode": {"calls_per_s": 0.5}}]
    bench = {"labelled_judge": {"model": SMOLLM2.name, "machine": "2 cores", "date": "2026-12-02", "rows": rows}}
    (tmp_path / "bench_judge.json").write_text(json.dumps(bench), encoding="utf-8")
    line = expected_time(judge, calls, 120, tmp_path)
    assert line.startswith("about 4 min at the 0.50 calls/s") and "mt_bench (2 cores, 2026-12-02" in line
    assert "up to 128 tokens; these allow 16" in line
    bench["labelled_judge"]["model"] = "other.gguf"
    (tmp_path / "bench_judge.json").write_text(json.dumps(bench), encoding="utf-8")
    assert expected_time(judge, calls, 120, tmp_path) is None
    (tmp_path / "bench_judge.json").write_text("{not json", encoding="utf-8")
    assert expected_time(judge, calls, 120, tmp_path) is None
