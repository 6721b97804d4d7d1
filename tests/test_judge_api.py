"""API judges (tools/judges/api_judge.py) against a real local OpenAI-compatible endpoint
(bench/judge_api_server.py: real log-probabilities from the embedded SmolLM2, bound to 127.0.0.1):
calls in flight at once, 429s retried (Retry-After) with no verdict lost, verdicts equal to the
in-process judge's; and a judge that fails every call (401 echoing the key, unreachable) makes
`judge-check` and `board` exit non-zero with the cause on one line, the key nowhere, every
verdict already cached kept."""
import json
import os
import subprocess
import sys

import pytest

from judge_api_server import judge_api_server
from judges.cache import Call, judge_calls
from judges.resolve import resolve_judge
from judges.prompt import make_messages, preference_from_logits, prompt_template
from lib.registry import load_registry

from conftest import ROOT, SMOLLM2, needs_smollm2, slow
pytestmark = [slow, needs_smollm2]
FAKE_KEY = "sk-test-3f9a1c7be2d04c55aa10"
# Short texts: the endpoint scores each distinct prompt once with the real model.
CALLS = [Call("2 + 2?", "4", "5"), Call("2 + 2?", "5", "4"), Call("Capital of France?", "Paris", "Rome"),
         Call("Capital of France?", "Rome", "Paris")]


def registry_for(tmp_path, base_url, concurrency=16, key_env=None):
    key = f'api_key_env = "{key_env}"\n' if key_env else ""
    (tmp_path / "models.toml").write_text(
        f'[models.api]\nbackend = "openai"\nbase_url = "{base_url}"\napi_model = "judge"\n'
        f'concurrency = {concurrency}\n{key}'
        f'[models.local]\npath = "{SMOLLM2}"\nn_ctx = 2048\n', encoding="utf-8")
    return load_registry(tmp_path / "models.toml")


def test_concurrent_calls_with_429s_all_end_with_the_in_process_verdict(tmp_path):
    with judge_api_server(SMOLLM2, latency=0.05, share_429=0.25) as server:
        registry = registry_for(tmp_path, server.base_url)
        local = resolve_judge("local", registry, tmp_path / "out")
        ours, _ = judge_calls(local, CALLS, tmp_path / "out")
        api = resolve_judge("api", registry, tmp_path / "out")
        assert api.concurrency == 16
        # 32 requests, 16 in flight, every 4th answered 429 (Retry-After): none lost. The same 4
        # texts 8 times each, so the endpoint's model scores only 4 prompts.
        results = list(api.judge(CALLS * 8))
        assert len(results) == 32 and not [r for _, r in results if "error" in r]
        assert server.stats["429"] >= 8 and server.stats["requests"] == 32 + server.stats["429"]
        template = prompt_template()
        for call, result in results:  # the endpoint's own log-probabilities, read back exactly
            lm, lM = server.scorer.logprobs(make_messages(call, template))
            assert result["preference"] == pytest.approx(preference_from_logits(lm, lM), abs=1e-9)
            assert (result["preference"] > 1.5) == (ours[call]["preference"] > 1.5)  # the same model's verdict
        # Through the cache: each verdict written once, under the API judge's own identity.
        verdicts, stats = judge_calls(api, CALLS, tmp_path / "out")
        assert (stats.made, stats.failed) == (4, 0)
        again, stats = judge_calls(api, CALLS, tmp_path / "out")
        assert (stats.made, stats.reused) == (0, 4)
    lines = (tmp_path / "out" / "judge" / "verdicts.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 8 and sorted(json.loads(line)["protocol"] for line in lines) == ["logits-v2"] * 4 + ["logprob-v1"] * 4


def run_tool(tool, args, env):
    return subprocess.run([sys.executable, str(ROOT / "tools" / tool), *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, **env})


def test_a_refused_key_stops_judge_check_and_board_without_leaking_it(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"instruction": "2 + 2?", "right": "4", "wrong": "5"}) + "\n", encoding="utf-8")
    answers = [{"instruction": "2 + 2?", "input": "", "output": "4", "generator": "m"}]
    (tmp_path / "output.json").write_text(json.dumps(answers), encoding="utf-8")
    (tmp_path / "reference.json").write_text(json.dumps([{**answers[0], "output": "5", "generator": "ref"}]),
                                             encoding="utf-8")
    out = tmp_path / "out"
    cached = {"key": "kept", "judge": "api", "judge_id": "x", "protocol": "logprob-v1", "preference": 1.5}
    (out / "judge").mkdir(parents=True)
    (out / "judge" / "verdicts.jsonl").write_text(json.dumps(cached) + "\n", encoding="utf-8")
    env = {"JUDGE_KEY": FAKE_KEY}
    with judge_api_server(SMOLLM2, reject_key=FAKE_KEY) as server:
        registry_for(tmp_path, server.base_url, key_env="JUDGE_KEY")
        toml = str(tmp_path / "models.toml")
        check = run_tool("judge_check.py", ["--judge", "api", "--models-toml", toml, "--out", str(out),
                                            "--pairs", str(pairs)], env)
        board = run_tool("board", ["--judge", "api", "--models-toml", toml, "--out", str(out), "--outputs",
                                      str(tmp_path / "output.json"), "--reference", str(tmp_path / "reference.json")], env)
    for run in (check, board):
        assert run.returncode == 1
        error = [line for line in run.stderr.splitlines() if line.startswith("error:")]
        assert len(error) == 1 and "refused model 'judge'" in error[0] and "Incorrect API key" in error[0], run.stderr
        assert "Traceback" not in run.stderr and FAKE_KEY not in run.stderr + run.stdout
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not [p for p in files if FAKE_KEY.encode() in p.read_bytes()]
    assert json.loads((out / "judge" / "verdicts.jsonl").read_text(encoding="utf-8")) == cached  # kept


def test_an_unreachable_judge_fails_judge_check_with_the_cause(tmp_path):
    from llama_server import free_port

    registry_for(tmp_path, f"http://user:{FAKE_KEY}@127.0.0.1:{free_port()}/v1", concurrency=8)
    # 4 pairs, both orders: 8 calls, one wave of 8 in flight, so the test waits out the client's
    # backoff (about half a minute) once, not once per wave
    run = run_tool("judge_check.py", ["--judge", "api", "--models-toml", str(tmp_path / "models.toml"),
                                      "--out", str(tmp_path / "out"), "--limit", "4"], {})
    assert run.returncode == 1
    error = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "failed every call" in error[0] and "cannot reach the judge" in error[0], run.stderr
    assert FAKE_KEY not in run.stderr + run.stdout
    assert not (tmp_path / "out" / "judge" / "verdicts.jsonl").exists()
