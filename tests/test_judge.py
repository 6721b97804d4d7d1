"""Judging with the real embedded SmolLM2 in-process (tools/judges/llama_judge.py): both orders,
the verdict cache (reuse, resume after SIGKILL, failures not cached, torn lines), answers cut to
fit the context, the weights-hash cache, a chat_template override, and the same verdicts (to
1e-3) through llama_cpp.server as an OpenAI-compatible judge and alpaca_eval's annotator path."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from judges.cache import Call, JudgeError, judge_calls
from judges.identity import file_sha256
from judges.pairs import Pair, judge_pairs
from judges.resolve import resolve_judge
from llama_server import judge_server
from lib.registry import load_registry

from conftest import ROOT, SMOLLM2, needs_smollm2, slow
pytestmark = needs_smollm2

PAIRS = [
    Pair("m", "What is the capital of France?", "Paris.", "Berlin.", 0),
    Pair("m", "中国的首都是哪里？", "北京。", "上海。", 1),
    Pair("m", "Say hi.", "Hi!", "Hi!", 2),  # identical: a tie, never sent to the judge
]


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    folder = tmp_path_factory.mktemp("judge")
    (folder / "models.toml").write_text(f"""
[models.judge]
path = "{SMOLLM2}"
n_ctx = 2048

[models.small_ctx_judge]
path = "{SMOLLM2}"
n_ctx = 640
""", encoding="utf-8")
    return load_registry(folder / "models.toml")


@pytest.fixture(scope="module")
def judged(registry, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    judge = resolve_judge("judge", registry, out)
    results, stats = judge_pairs(judge, PAIRS, out)
    return out, judge, results, stats


def test_every_pair_judged_in_both_orders(judged):
    out, judge, results, stats = judged
    assert (stats.made, stats.reused, stats.failed) == (4, 0, 0)
    for r in results[:2]:
        assert 1 <= r["pref_model_first"] <= 2 and 1 <= r["pref_reference_first"] <= 2
        assert r["preference"] == pytest.approx(1 + ((2 - r["pref_model_first"]) + (r["pref_reference_first"] - 1)) / 2)
        assert isinstance(r["consistent"], bool)
    assert results[2]["identical"] and results[2]["preference"] == 1.5 and results[2]["n_calls"] == 0
    lines = [json.loads(line) for line in (out / "judge" / "verdicts.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 4 and {line["judge_id"] for line in lines} == {judge.judge_id}
    assert all(line["protocol"] == "logits-v2" for line in lines)


def test_second_run_reuses_every_verdict_without_loading_the_model(judged, registry):
    out, judge, results, _ = judged
    second = resolve_judge("judge", registry, out)
    again, stats = judge_pairs(second, PAIRS, out)
    assert (stats.made, stats.reused) == (0, 4)
    assert [r["preference"] for r in again] == [r["preference"] for r in results]
    assert second.model is None  # the model was never loaded


def test_judge_identity_is_the_weights_not_the_name(judged, registry, tmp_path):
    out, judge, _, _ = judged
    # Same weights under another name: the same judge. Different bytes: a different judge.
    assert resolve_judge("small_ctx_judge", registry, out).judge_id == judge.judge_id
    other = tmp_path / "other.gguf"
    other.write_bytes(b"not the same weights")
    cache = tmp_path / "hashes.json"
    assert file_sha256(other, cache) != file_sha256(SMOLLM2, cache)
    # The hash is remembered by path, size and mtime, and redone when the file changes.
    entries = json.loads(cache.read_text(encoding="utf-8"))
    assert len(entries) == 2
    other.write_bytes(b"changed weights!!")
    file_sha256(other, cache)
    assert len(json.loads(cache.read_text(encoding="utf-8"))) == 3


def test_long_answers_are_cut_to_fit_the_judge_context(judged, registry):
    out, *_ = judged
    judge = resolve_judge("small_ctx_judge", registry, out)
    long = Call("Describe the sea.", "The sea is blue and deep. " * 80, "Waves. " * 150)
    verdicts, stats = judge_calls(judge, [long], out)
    assert stats.failed == 0, stats.errors
    assert verdicts[long]["truncated"] is True and 1 <= verdicts[long]["preference"] <= 2


def test_a_judge_that_fails_every_call_caches_nothing_and_says_why(tmp_path):
    from llama_server import free_port

    (tmp_path / "models.toml").write_text(f'[models.down]\nbackend = "openai"\napi_model = "x"\n'
                                          f'base_url = "http://127.0.0.1:{free_port()}/v1"\n', encoding="utf-8")
    from judges.api_judge import ApiJudge

    down = ApiJudge(load_registry(tmp_path / "models.toml").models["down"], max_retries=0)
    calls = [Call(f"q{i}", "a", "b") for i in range(8)]
    with pytest.raises(JudgeError, match=r"judge 'down' failed every call .*cannot reach the judge at http://127.0.0.1"):
        judge_calls(down, calls, tmp_path)
    assert not (tmp_path / "judge" / "verdicts.jsonl").exists()  # the next run tries them again


def test_torn_cache_lines_are_skipped_and_the_next_verdict_starts_a_line(tmp_path):
    from judges.cache import VerdictCache

    path = tmp_path / "verdicts.jsonl"
    good = {"key": "a", "preference": 1.25}
    # a crash mid-line, inside a multi-byte character (the first byte of 北)
    path.write_bytes((json.dumps(good) + "\n").encode() + '{"key": "b", "instruction": "北'.encode()[:-2])
    cache = VerdictCache(path)
    assert set(cache.verdicts) == {"a"}
    cache.add({"key": "c", "preference": 2.0})
    assert set(VerdictCache(path).verdicts) == {"a", "c"}


def test_chat_template_override_judges(tmp_path):
    """A base model without a usable template can judge with the template models.toml gives it."""
    template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                "{% if add_generation_prompt %}assistant: {% endif %}")
    (tmp_path / "models.toml").write_text(f'[models.plain]\npath = "{SMOLLM2}"\nn_ctx = 1024\n'
                                          f'chat_template = """{template}"""\n', encoding="utf-8")
    judge = resolve_judge("plain", load_registry(tmp_path / "models.toml"), tmp_path)
    assert judge.identity["chat_template_sha256"]
    call = Call("2 + 2?", "4", "5")
    verdicts, stats = judge_calls(judge, [call], tmp_path)
    assert stats.made == 1 and 1 <= verdicts[call]["preference"] <= 2
    assert "assistant: " in judge.model.formatter(messages=[{"role": "user", "content": "x"}]).prompt


@slow
def test_killed_run_resumes_without_losing_verdicts(tmp_path):
    (tmp_path / "models.toml").write_text(f'[models.judge]\npath = "{SMOLLM2}"\nn_ctx = 2048\n', encoding="utf-8")
    questions = ["What is 2 + 2?", "Name a colour.", "Who wrote Hamlet?"]
    outputs = [{"instruction": q, "input": "", "output": f"answer {i}", "generator": "m"} for i, q in enumerate(questions)]
    reference = [{**r, "output": f"other {i}", "generator": "ref"} for i, r in enumerate(outputs)]
    (tmp_path / "output.json").write_text(json.dumps(outputs), encoding="utf-8")
    (tmp_path / "reference.json").write_text(json.dumps(reference), encoding="utf-8")
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "tools" / "board"), "--models-toml", str(tmp_path / "models.toml"),
           "--outputs", str(tmp_path / "output.json"), "--reference", str(tmp_path / "reference.json"),
           "--judge", "judge", "--out", str(out)]
    cache = out / "judge" / "verdicts.jsonl"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if cache.exists() and len(cache.read_text(encoding="utf-8").splitlines()) >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)  # the run and its judge server, at once
    finally:
        proc.wait()
    kept = len(cache.read_text(encoding="utf-8").splitlines())
    assert 2 <= kept < 6 and not (out / "board.csv").exists()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"{6 - kept} made, {kept} from cache, 0 failed" in again.stderr
    board = (out / "board.csv").read_text(encoding="utf-8")
    assert board.splitlines()[1].startswith("m,")


def test_api_judges_match_our_protocol(judged, tmp_path):
    """alpaca_eval's own annotator (weighted_alpaca_eval_gpt4_turbo's config, pointed at our local
    server) run through judge.py: its order switch is off, so each call's verdict is the same as
    our own protocol's for the same order. Then an OpenAI-compatible endpoint from models.toml."""
    import yaml

    out, judge, results, _ = judged
    calls = [c for p in PAIRS[:2] for c in p.calls()]
    ours = {c: judge_calls(judge, [c], out)[0][c]["preference"] for c in calls}
    with judge_server(judge.spec, tmp_path / "server.log") as base_url:
        config = tmp_path / "local_weighted" / "configs.yaml"
        config.parent.mkdir()
        config.write_text(yaml.safe_dump({"local_weighted": {
            "prompt_template": "alpaca_eval_clf_gpt4_turbo/alpaca_eval_clf.txt",
            "fn_completions": "openai_completions",
            "completions_kwargs": {"model_name": "judge", "max_tokens": 1, "temperature": 1, "logprobs": True,
                                   "top_logprobs": 20, "requires_chatml": True, "num_procs": 1,
                                   "openai_api_base": base_url, "openai_api_keys": ["local-needs-no-key"]},
            "fn_completion_parser": "logprob_parser",
            "completion_parser_kwargs": {"numerator_token": "m", "denominator_tokens": ["m", "M"], "is_binarize": False},
            "completion_key": "completions_all", "batch_size": 1}}), encoding="utf-8")
        annotator = resolve_judge(str(config), load_registry_stub(), tmp_path)
        assert annotator.kind == "alpaca_eval"
        verdicts, stats = judge_calls(annotator, calls, tmp_path)
        assert stats.failed == 0, stats.errors
        for call in calls:
            assert verdicts[call]["preference"] == pytest.approx(ours[call], abs=1e-3)
        # The config's API keys decide nothing: not in the judge's identity, nor in any file we wrote.
        assert "local-needs-no-key" not in json.dumps(annotator.identity)
        written = [p for p in tmp_path.rglob("*") if p.is_file() and p != config]
        assert written and not [p for p in written if b"local-needs-no-key" in p.read_bytes()]

        # The same server as an OpenAI-compatible endpoint declared in models.toml (no grammar).
        (tmp_path / "models.toml").write_text(
            f'[models.api_judge]\nbackend = "openai"\nbase_url = "{base_url}"\napi_model = "judge"\n', encoding="utf-8")
        api = resolve_judge("api_judge", load_registry(tmp_path / "models.toml"), tmp_path)
        assert api.kind == "openai" and api.identity["base_url"] == base_url and api.judge_id != judge.judge_id
        verdicts, stats = judge_calls(api, calls, tmp_path)
        assert stats.failed == 0, stats.errors
        for call in calls:
            assert verdicts[call]["preference"] == pytest.approx(ours[call], abs=1e-3)


def load_registry_stub():
    class Stub:
        models, source = {}, "models.toml"
    return Stub()


@pytest.fixture(scope="module")
def hf_judge(tmp_path_factory):
    """The same GGUF loaded by transformers (dequantized, fp32), 4 prompts to a forward pass: loaded
    once for the tests below (transformers reads a GGUF three times over, about 20 s here)."""
    folder = tmp_path_factory.mktemp("hf")
    (folder / "models.toml").write_text(f'[models.hf]\npath = "{SMOLLM2}"\nbackend = "transformers"\n'
                                        'n_ctx = 2048\nparallel = 4\n', encoding="utf-8")
    hf = resolve_judge("hf", load_registry(folder / "models.toml"), folder)
    yield hf
    hf.close()


def test_a_transformers_judge_gives_the_llama_cpp_verdict(judged, hf_judge, tmp_path):
    """The same GGUF loaded by transformers (dequantized, fp32) judges from the same two logits:
    the verdict matches llama.cpp's up to the quantized arithmetic."""
    out, judge, results, _ = judged
    hf = hf_judge
    assert hf.kind == "transformers" and hf.protocol == judge.protocol and hf.judge_id != judge.judge_id
    call = PAIRS[0].calls()[0]
    verdicts, stats = judge_calls(hf, [call], tmp_path)
    assert stats.made == 1
    assert verdicts[call]["preference"] == pytest.approx(results[0]["pref_model_first"], abs=0.05)


def test_a_transformers_judge_batches_without_changing_a_verdict(hf_judge):
    """Prompts of different lengths, left-padded 4 to a forward pass: each verdict equals the one
    of its prompt alone (fp32 on the CPU: float rounding only)."""
    import dataclasses

    from judge_check import load_check_pairs
    from judges.prompt import prompt_template

    hf, spec = hf_judge, hf_judge.spec
    try:
        pairs = load_check_pairs(ROOT / "data" / "judge_check.jsonl")[:3]
        calls = [c for p in pairs for c in (Call(p["instruction"], p["right"], p["wrong"]),
                                            Call(p["instruction"], p["wrong"], p["right"]))]
        assert len({len(hf.ids(c, prompt_template())) for c in calls}) > 1  # padding is really exercised
        batched = dict(hf.judge(calls))
        assert hf.last_stats["forward_passes"] == 2  # 6 prompts, 4 to a pass
        hf.spec = dataclasses.replace(hf.spec, parallel=1)
        alone = dict(hf.judge(calls))
        assert hf.last_stats["forward_passes"] == 6
    finally:
        hf.spec = spec
    for call in calls:
        assert batched[call]["preference"] == pytest.approx(alone[call]["preference"], abs=1e-4)
        assert batched[call]["logits"]["m"] == pytest.approx(alone[call]["logits"]["m"], abs=1e-2)


@slow
def test_disk_full_during_the_board_is_reported_as_such_and_keeps_verdicts(tmp_path):
    """A real full disk (a 1 MB tmpfs, filled): the board says so in one line, exits non-zero,
    and the verdicts written before the disk filled are kept."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (tmp_path / "models.toml").write_text(f'[models.judge]\npath = "{SMOLLM2}"\nn_ctx = 2048\n', encoding="utf-8")
        answers = [{"instruction": "2 + 2?", "input": "", "output": "4", "generator": "m"},
                   {"instruction": "3 + 3?", "input": "", "output": "6", "generator": "m"}]
        (tmp_path / "output.json").write_text(json.dumps(answers), encoding="utf-8")
        (tmp_path / "reference.json").write_text(json.dumps([{**a, "output": "7", "generator": "ref"} for a in answers]),
                                                 encoding="utf-8")
        out = disk / "out"
        cache = out / "judge" / "verdicts.jsonl"
        cache.parent.mkdir(parents=True)
        kept = {"key": "kept", "judge": "judge", "judge_id": "x", "protocol": "logits-v2", "preference": 1.5}
        cache.write_text(json.dumps(kept) + "\n", encoding="utf-8")
        file_sha256(SMOLLM2, out / "judge" / "file_hashes.json")  # so the judge starts: the disk fills after
        with (disk / "filler").open("wb", buffering=0) as f:  # fill the disk to the last byte
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        run = subprocess.run([sys.executable, str(ROOT / "tools" / "board"), "--models-toml", str(tmp_path / "models.toml"),
                              "--outputs", str(tmp_path / "output.json"), "--reference", str(tmp_path / "reference.json"),
                              "--judge", "judge", "--out", str(out)], capture_output=True, text=True, timeout=600)
        assert run.returncode == 1
        errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "disk full" in errors[0] and "free some space" in errors[0], run.stderr
        assert "Traceback" not in run.stderr
        assert json.loads(cache.read_text(encoding="utf-8").splitlines()[0]) == kept
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_a_verdict_does_not_depend_on_what_is_judged_beside_it(judged):
    """Batched with shared starts decoded once, or alone: the same logits (as the answers' greedy
    tokens are the same at any N), so a board's verdicts do not depend on which calls share a run."""
    from judge_check import load_check_pairs

    _, judge, _, _ = judged
    pairs = load_check_pairs(ROOT / "data" / "judge_check.jsonl")[:3]  # 6 calls, each judged 3 ways
    calls = [c for p in pairs for c in (Call(p["instruction"], p["right"], p["wrong"]),
                                        Call(p["instruction"], p["wrong"], p["right"]))]
    together = dict(judge.judge(calls))
    assert judge.last_stats["decoded_tokens"] < judge.last_stats["prompt_tokens"]  # starts were shared
    halves = {**dict(judge.judge(calls[::2])), **dict(judge.judge(calls[1::2]))}
    for call in calls:
        alone = dict(judge.judge([call]))[call]
        for other in (alone, halves[call]):
            assert other["logits"] == together[call]["logits"]
            assert other["preference"] == pytest.approx(together[call]["preference"], abs=1e-9)
