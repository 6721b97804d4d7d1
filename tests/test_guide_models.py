"""The original guide's own command, `make infer MODELS="chatglm_6b baichuan_7b"`, end to end and
offline, on architecture twins (tests/twins.py) in a temporary Hugging Face cache at the revisions
the project's models.toml pins.

The registry is the project's models.toml, byte for byte (copied beside a models/ folder of the
test's own, so the converted GGUF never lands in the project's models/); only OUT and QUESTIONS
are the test's. Every real step runs: `make download` finds the cache (HF_HUB_OFFLINE=1) and
creates chatglm_6b's own environment from envs/chatglm-6b.txt (models/chatglm_6b/.venv of the
project, kept and reused by later runs: building it takes about a minute, pip fetching
transformers 4.27.1 and friends from PyPI and torch 2.13.0 from the machine's wheels); the
repo's own code answers through the worker with chat(); baichuan_7b is converted by llama.cpp's
converter, quantized to Q4_K_M and answered by the batched engine with models.toml's template.
Random weights answer garbage: the test asks for non-empty decoded text, one per question.
"""
import json
import os
import shutil
import subprocess

import pytest

import twins

from conftest import ROOT, SMOLLM2, needs_smollm2, slow
pytestmark = [
    slow,
    needs_smollm2,
    pytest.mark.skipif(not twins.twin_available(), reason="../shared/twins/chatglm-6b is not beside the clone"),
]
QUESTIONS = ["What is the capital of France?", "为什么天空是蓝色的？"]


def make(guide, *args, env_extra=None, timeout=900, no_network=False):
    env = {**os.environ, "HF_HUB_CACHE": str(guide["cache"]), "HF_HOME": str(guide["tmp"] / "hf-home"),
           "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    env = {k: v for k, v in env.items() if v is not None}  # None: unset
    cmd = [*(["unshare", "-rn"] if no_network else []), "make", "--no-print-directory", "-C", str(ROOT), *args,
           f"MODELS_TOML={guide['toml']}", f"OUT={guide['out']}", f"QUESTIONS={guide['questions']}"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def guide(tmp_path_factory):
    """Twins in a temporary hub cache, and the project's models.toml in a folder of the test's own."""
    tmp = tmp_path_factory.mktemp("guide")
    cache = tmp / "hub"
    twins.hub_cache(cache, tmp / "twins")
    project = tmp / "project"
    (project / "models").mkdir(parents=True)
    shutil.copyfile(ROOT / "models.toml", project / "models.toml")
    (project / "envs").symlink_to(ROOT / "envs")
    (project / "models" / SMOLLM2.name).symlink_to(SMOLLM2)  # the default reference and judge
    # chatglm_6b's environment is the project's own (weights-independent): built once, then reused.
    (ROOT / "models" / "chatglm_6b").mkdir(parents=True, exist_ok=True)
    (project / "models" / "chatglm_6b").symlink_to(ROOT / "models" / "chatglm_6b")
    questions = tmp / "questions.txt"
    questions.write_text("\n".join(QUESTIONS) + "\n", encoding="utf-8")
    return {"tmp": tmp, "cache": cache, "project": project, "toml": project / "models.toml",
            "out": tmp / "out", "questions": questions}


@pytest.fixture(scope="module")
def infer(guide):
    result = make(guide, "infer", "MODELS=chatglm_6b baichuan_7b")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return result


def test_guide_infer_answers_with_both_twins(guide, infer):
    assert (guide["toml"]).read_bytes() == (ROOT / "models.toml").read_bytes()  # the project's own registry
    for name in ("chatglm_6b", "baichuan_7b"):
        records = json.loads((guide["out"] / f"{name}.json").read_text(encoding="utf-8"))
        assert [r["instruction"] for r in records] == QUESTIONS, name
        for record in records:
            assert "error" not in record, (name, record)
            assert record["generator"] == name and isinstance(record["output"], str)
            assert record["output"].strip() and record["tokens"] > 0, (name, record)
    # chatglm_6b ran in its own environment; baichuan_7b was converted and quantized.
    assert (ROOT / "models" / "chatglm_6b" / ".venv" / "requirements.done").read_text(encoding="utf-8") == \
        (ROOT / "envs" / "chatglm-6b.txt").read_text(encoding="utf-8")
    gguf = guide["project"] / "models" / "baichuan_7b" / "baichuan_7b.Q4_K_M.gguf"
    assert gguf.is_file() and not (gguf.parent / "baichuan_7b.f16.gguf").exists()
    assert "Traceback" not in infer.stderr and "Logging error" not in infer.stderr


def test_guide_infer_again_does_nothing(guide, infer):
    """Also offline as an offline machine is: no network at all (when the kernel allows a network
    namespace) and HF_HUB_OFFLINE unset: the pinned files on disk are not looked up on the Hub."""
    no_network = bool(shutil.which("unshare")) and subprocess.run(["unshare", "-rn", "true"]).returncode == 0
    again = make(guide, "infer", "MODELS=chatglm_6b baichuan_7b", no_network=no_network,
                 env_extra={"HF_HUB_OFFLINE": None if no_network else "1"})
    assert again.returncode == 0, again.stderr
    assert "tools/infer.py" not in again.stdout  # answers, GGUF and environment all reused
    assert "installing its own environment" not in again.stderr and "convert" not in again.stderr.lower()



# --- The guide's board: gpt-3.5 reference and the GPT judges through an OpenAI-compatible URL ---
GUIDE_NAMES = {  # model name asked for -> llama_cpp.server chat format (None: the GGUF's template)
    "gpt-3.5-turbo": None,                       # the gpt35 reference
    "gpt-3.5-turbo-16k-0613": "chatml-function-calling",  # chatgpt_fn: a forced tool call
    "gpt-4": None,                               # alpaca_eval_gpt4
    "gpt-4-1106-preview": None,                  # weighted_alpaca_eval_gpt4_turbo: logprobs
}
DUMMY_KEY = "sk-dummy-guide-board-key-never-written"


@pytest.fixture(scope="module")
def openai_server(tmp_path_factory):
    """`python -m llama_cpp.server` on 127.0.0.1 with the embedded SmolLM2 under the guide's names."""
    from llama_server import llama_cpp_server, server_threads

    tmp = tmp_path_factory.mktemp("openai-server")

    def config(port: int) -> list[str]:
        models = [{"model": str(SMOLLM2), "model_alias": name, "n_ctx": 8192, "verbose": False,
                   **server_threads(), **({"chat_format": fmt} if fmt else {})} for name, fmt in GUIDE_NAMES.items()]
        (tmp / "config.json").write_text(json.dumps({"host": "127.0.0.1", "port": port, "models": models}),
                                         encoding="utf-8")
        return ["--config_file", str(tmp / "config.json")]

    with llama_cpp_server(config, tmp / "server.log", timeout=300) as url:
        yield url


def board(guide, url, judge, extra_env=None):
    env = {"OPENAI_BASE_URL": url, "OPENAI_API_KEY": DUMMY_KEY, **(extra_env or {})}
    return make(guide, "board", "MODELS=chatglm_6b baichuan_7b", "REFERENCE=gpt35", f"JUDGE={judge}",
                env_extra=env)


def board_rows(guide):
    import csv

    with (guide["out"] / "board.csv").open(encoding="utf-8") as f:
        return {row["model"]: row for row in csv.DictReader(f)}


def test_guide_board_with_chatgpt_fn(guide, infer, openai_server):
    """The tiny judge mostly fails to name an output: the board is still written, those pairs in
    n_failed with a warning saying why, never a crash."""
    result = board(guide, openai_server, "chatgpt_fn")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    reference = json.loads((guide["out"] / "reference.json").read_text(encoding="utf-8"))
    assert [r["generator"] for r in reference] == ["gpt35", "gpt35"] and all(r["output"] for r in reference)
    rows = board_rows(guide)
    assert set(rows) == {"chatglm_6b", "baichuan_7b"}
    for row in rows.values():
        assert int(float(row["n_total"])) + int(float(row["n_failed"])) == len(QUESTIONS)
    if any(int(float(row["n_failed"])) for row in rows.values()):
        assert "no verdict" in result.stdout.lower() or "failed" in result.stdout.lower(), result.stdout
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    for path in guide["out"].rglob("*"):
        if path.is_file():
            assert DUMMY_KEY.encode() not in path.read_bytes(), path


def test_guide_board_with_weighted_judge_has_every_verdict(guide, infer, openai_server):
    result = board(guide, openai_server, "weighted_alpaca_eval_gpt4_turbo")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for name, row in board_rows(guide).items():
        assert int(float(row["n_failed"])) == 0 and int(float(row["n_total"])) == len(QUESTIONS), (name, row)


def test_guide_board_with_claude_needs_its_key(guide, infer, openai_server):
    result = board(guide, openai_server, "claude", extra_env={"ANTHROPIC_API_KEY": None})
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("make: ***")]
    assert len(lines) == 1 and "ANTHROPIC_API_KEY" in lines[0], result.stderr
