"""The transformers backend on a tiny random Llama made in the test: chat template and generate,
a model's own chat() through trust_remote_code, the worker in a separate virtual environment, and
the clear errors (no chat(), remote code that does not load, nf4 without a GPU)."""
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from backends.load import load_backend
from lib.registry import load_registry

QUESTIONS = [{"instruction": "What is the capital of France?"}, {"instruction": "Say hello.", "input": "to Bob"}]


def spec_for(tmp_path, folder, extra=""):
    toml = tmp_path / "models.toml"
    toml.write_text(f'[models.tiny]\npath = "{folder}"\nbackend = "transformers"\nmax_tokens = 6\n{extra}\n',
                    encoding="utf-8")
    return load_registry(toml).get("tiny")


def answers(spec, questions=QUESTIONS):
    backend = load_backend(spec)
    try:
        return dict(backend.answer(questions))
    finally:
        backend.close()


def test_chat_template_and_generate(tiny_llama, tmp_path):
    first = answers(spec_for(tmp_path, tiny_llama))
    assert sorted(first) == [0, 1]
    for result in first.values():
        assert "error" not in result, result
        assert isinstance(result["output"], str) and 0 < result["tokens"] <= 6
    again = answers(spec_for(tmp_path, tiny_llama))  # greedy: the same answers
    assert [again[i]["output"] for i in (0, 1)] == [first[i]["output"] for i in (0, 1)]


def test_a_too_long_prompt_fails_alone(tiny_llama, tmp_path):
    results = answers(spec_for(tmp_path, tiny_llama, "n_ctx = 24"),
                      [{"instruction": "Hi"}, {"instruction": "word " * 60}])
    assert "error" not in results[0]
    assert "n_ctx=24" in results[1]["error"]


def test_model_chat_with_remote_code(tiny_chat_llama, tmp_path):
    results = answers(spec_for(tmp_path, tiny_chat_llama, "trust_remote_code = true\nmodel_chat = true"))
    assert all("error" not in r and isinstance(r["output"], str) for r in results.values()), results


def test_model_chat_without_a_chat_method_is_a_clear_error(tiny_llama, tmp_path):
    with pytest.raises(ValueError, match="no chat\\(\\) method"):
        load_backend(spec_for(tmp_path, tiny_llama, "model_chat = true"))


def test_remote_code_that_breaks_says_which_transformers(tiny_chat_llama, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in tiny_chat_llama.iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    (broken / "modeling_tinychat.py").write_text("from transformers.modeling_gone import Thing\n")
    with pytest.raises(RuntimeError) as err:
        load_backend(spec_for(tmp_path, broken, "trust_remote_code = true\nmodel_chat = true"))
    assert "failed to load under transformers" in str(err.value) and "requirements" in str(err.value)


def test_nf4_needs_a_gpu_or_says_so(tiny_llama, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("has a GPU: nf4 would load")
    with pytest.raises(RuntimeError, match="needs an NVIDIA GPU"):
        load_backend(spec_for(tmp_path, tiny_llama, 'quant = "nf4"'))


def test_worker_in_the_models_own_environment(tiny_chat_llama, tmp_path):
    """`requirements`: the backend runs in models/NAME/.venv as a worker speaking JSON lines. The
    environment here is a real separate venv that sees this one's packages through a .pth file
    (a real one gets its own pinned packages from `make download`). The model's code prints to
    stdout, which must not break the protocol."""
    (tmp_path / "req.txt").write_text("# the packages of this venv\n")
    spec = spec_for(tmp_path, tiny_chat_llama,
                    'trust_remote_code = true\nmodel_chat = true\nrequirements = "req.txt"')
    assert spec.venv == tmp_path / "models" / "tiny" / ".venv"
    with pytest.raises(FileNotFoundError, match="make download MODELS=tiny"):
        load_backend(spec)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(spec.venv)], check=True)
    site = subprocess.run([str(spec.venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "parent.pth").write_text(sysconfig.get_paths()["purelib"])
    (spec.venv / "requirements.done").write_text((tmp_path / "req.txt").read_text())
    backend = load_backend(spec)
    try:
        assert type(backend.impl).__name__ == "WorkerClient"
        first = dict(backend.answer(QUESTIONS))
        second = dict(backend.answer(QUESTIONS[:1]))  # the worker serves batch after batch
    finally:
        backend.close()
    assert sorted(first) == [0, 1] and all("error" not in r for r in first.values()), first
    assert second[0]["output"] == first[0]["output"]
    assert backend.impl.proc.returncode == 0
