"""tools/quantize.py with the real llama.cpp converter and quantizer: a tiny random Llama made in
the test -> f16 GGUF -> Q4_K_M, answered through the llama.cpp backend; skip when up to date;
clear messages for an unknown architecture, missing weights and a broken folder."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from lib.registry import load_registry


@pytest.fixture(scope="module")
def quantized(tiny_llama, tmp_path_factory):
    """The tiny Llama declared as a local folder with a GGUF quant, converted once for the module."""
    import quantize

    root = tmp_path_factory.mktemp("quantize")
    (root / "models.toml").write_text(f'[models.tiny]\npath = "{tiny_llama}"\nquant = "Q4_K_M"\nmax_tokens = 6\n'
                                      f'[models.tiny_hub]\nhf_repo = "o/absent"\nrevision = "{"a" * 40}"\n',
                                      encoding="utf-8")
    registry = load_registry(root / "models.toml")
    spec = registry.get("tiny")
    assert quantize.build(spec) == "built"
    return registry, spec


def test_converted_to_q4_k_m_and_f16_removed(quantized):
    import gguf
    import llama_cpp

    _, spec = quantized
    assert spec.path == spec.path.parent / "tiny.Q4_K_M.gguf" and spec.path.is_file()
    assert not (spec.path.parent / "tiny.f16.gguf").exists()
    assert (spec.path.parent / "convert.log").is_file()
    reader = gguf.GGUFReader(spec.path)
    file_type = reader.fields["general.file_type"]
    assert int(file_type.parts[file_type.data[0]][0]) == llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    assert "tokenizer.chat_template" in reader.fields  # the tokenizer's template came along


def test_answered_through_llama_cpp(quantized):
    from backends.load import load_backend

    _, spec = quantized
    backend = load_backend(spec)
    try:
        results = dict(backend.answer([{"instruction": "What is the capital of France?"},
                                       {"instruction": "Say hello.", "input": "to a friend"}]))
    finally:
        backend.close()
    assert sorted(results) == [0, 1]
    for result in results.values():
        assert "error" not in result, result
        assert isinstance(result["output"], str) and 0 < result["tokens"] <= 6


def test_up_to_date_is_skipped_and_newer_inputs_rebuild(quantized, tiny_llama):
    import quantize

    _, spec = quantized
    before = spec.path.stat().st_mtime_ns
    assert quantize.build(spec) == "up to date"
    assert spec.path.stat().st_mtime_ns == before
    assert quantize.up_to_date(spec.path, tiny_llama)
    newer = spec.path.stat().st_mtime + 10
    (tiny_llama / "config.json").touch()
    os.utime(tiny_llama / "config.json", (newer, newer))
    assert not quantize.up_to_date(spec.path, tiny_llama)
    os.utime(spec.path, (newer + 1, newer + 1))  # leave it up to date for the other tests


def test_cli_skips_what_needs_nothing_and_names_missing_weights(quantized):
    registry, _ = quantized
    run = lambda *names: subprocess.run(  # noqa: E731
        [sys.executable, str(ROOT / "tools" / "quantize.py"), *names, "--models-toml", str(registry.source)],
        capture_output=True, text=True, timeout=120)
    done = run("tiny")
    assert (done.returncode, done.stderr) == (0, "")
    done = run("tiny_hub")
    assert done.returncode == 1
    assert done.stderr.strip() == ("error: model 'tiny_hub': no Hugging Face weights at "
                                   f"{registry.get('tiny_hub').hf_dir}; run: make download MODELS=tiny_hub")


def test_unknown_architecture_says_use_transformers(tiny_llama, tmp_path):
    import quantize

    folder = tmp_path / "odd"
    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "model.safetensors"):
        (folder / name).write_bytes((tiny_llama / name).read_bytes())
    config = json.loads((tiny_llama / "config.json").read_text())
    config["architectures"] = ["NoSuchModelForCausalLM"]
    (folder / "config.json").write_text(json.dumps(config))
    (tmp_path / "models.toml").write_text(f'[models.odd]\npath = "{folder}"\nbackend = "llama.cpp"\n')
    spec = load_registry(tmp_path / "models.toml").get("odd")
    with pytest.raises(quantize.QuantizeError) as err:
        quantize.build(spec)
    message = str(err.value)
    assert "model 'odd'" in message and "NoSuchModelForCausalLM" in message
    assert 'backend = "transformers"' in message
    assert not spec.path.exists()


def broken_copy(tiny_llama, folder, damage: str):
    """The tiny Llama's folder with one thing wrong, as an interrupted download leaves it."""
    import shutil

    shutil.copytree(tiny_llama, folder)
    weights = folder / "model.safetensors"
    if damage == "truncated":
        data = weights.read_bytes()
        weights.write_bytes(data[:len(data) // 2])
    elif damage == "no weights":
        weights.unlink()
    elif damage == "missing shard":
        weights.rename(folder / "model-00001-of-00002.safetensors")
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
            "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    elif damage == "bad config":
        (folder / "config.json").write_text('{"architectures": ["LlamaForCausalLM"], ')


@pytest.mark.parametrize("damage, said", [
    ("truncated", "model.safetensors is truncated or not a safetensors file"),
    ("no weights", "it has no weight files"),
    ("missing shard", "names 1 shard(s) that are missing, e.g. model-00002-of-00002.safetensors"),
    ("bad config", "its config.json is not valid JSON"),
])
def test_broken_folder_is_one_line_before_converting(tiny_llama, tmp_path, damage, said):
    folder = tmp_path / "broken"
    broken_copy(tiny_llama, folder, damage)
    (tmp_path / "models.toml").write_text(f'[models.broken]\npath = "{folder}"\nquant = "Q4_K_M"\n')
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "quantize.py"), "broken",
                          "--models-toml", str(tmp_path / "models.toml")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert run.stderr.count("\n") == 1 and run.stderr.startswith(f"error: model 'broken': cannot convert {folder}: ")
    assert said in run.stderr and "fix the folder, or 'path' in models.toml" in run.stderr
    made = load_registry(tmp_path / "models.toml").get("broken").path  # models/broken/broken.Q4_K_M.gguf
    assert not made.parent.exists()  # the converter never ran: no log, no partial file
