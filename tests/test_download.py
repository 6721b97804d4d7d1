"""Hub sources in models.toml and tools/download.py, offline: files already in a Hugging Face cache
laid out as huggingface_hub lays it out (blobs, snapshots/<commit>, refs/main), read through
huggingface_hub's own lookups; and the one-line message for a model that is not there."""
import hashlib
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from lib.registry import RegistryError, load_registry

REV = "0123456789abcdef0123456789abcdef01234567"
OTHER_REV = "89abcdef0123456789abcdef0123456789abcdef"

TOML = f"""
[models.hub_gguf]
gguf_repo = "someorg/tiny-GGUF"
gguf_file = "tiny.Q4_K_M.gguf"
revision = "{REV}"

[models.hub_hf]
hf_repo = "someorg/tiny"
revision = "{REV}"
backend = "transformers"

[models.hub_convert]
hf_repo = "someorg/tiny"
revision = "{REV}"
quant = "Q8_0"

[models.missing]
gguf_repo = "someorg/absent-GGUF"
gguf_file = "absent.gguf"
revision = "{REV}"

[models.local]
path = "models/local.gguf"
"""


def cache_file(hub, repo, rev, name, content: bytes):
    """One file the way huggingface_hub stores it: a blob, a snapshot symlink to it, refs/main."""
    repo_dir = hub / ("models--" + repo.replace("/", "--"))
    blob = repo_dir / "blobs" / hashlib.sha256(content).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(content)
    link = repo_dir / "snapshots" / rev / name
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(blob, link.parent))
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(rev)
    return link


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A Hugging Face cache in tmp with a GGUF repo and a model-folder repo; offline mode on."""
    cache = tmp_path / "hf" / "hub"
    cache_file(cache, "someorg/tiny-GGUF", REV, "tiny.Q4_K_M.gguf", b"GGUF fake weights")
    cache_file(cache, "someorg/tiny", REV, "config.json", json.dumps({"architectures": ["LlamaForCausalLM"]}).encode())
    cache_file(cache, "someorg/tiny", REV, "model.safetensors", b"fake safetensors")
    cache_file(cache, "someorg/tiny", REV, "tokenizer.json", b"{}")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "models.toml").write_text(TOML, encoding="utf-8")
    return tmp_path


def download(hub, *names):
    env = {**os.environ, "HF_HUB_CACHE": str(hub / "hf" / "hub"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(ROOT / "tools" / "download.py"), *names,
                           "--models-toml", str(hub / "models.toml")],
                          capture_output=True, text=True, env=env, timeout=120)


def test_paths_point_into_the_cache_and_models_dir(hub):
    registry = load_registry(hub / "models.toml")
    snapshot = hub / "hf" / "hub" / "models--someorg--tiny" / "snapshots" / REV
    gguf = registry.get("hub_gguf")
    assert gguf.backend == "llama.cpp" and gguf.path.is_file()
    assert gguf.path == hub / "hf" / "hub" / "models--someorg--tiny-GGUF" / "snapshots" / REV / "tiny.Q4_K_M.gguf"
    hf = registry.get("hub_hf")
    assert (hf.backend, hf.path, hf.hf_dir) == ("transformers", snapshot, snapshot)
    conv = registry.get("hub_convert")  # hf_repo defaults to llama.cpp: converted and quantized by us
    assert (conv.backend, conv.hf_dir, conv.converted) == ("llama.cpp", snapshot, True)
    assert conv.path == hub / "models" / "hub_convert" / "hub_convert.Q8_0.gguf"


def test_files_on_disk_offline_are_found_quietly(hub):
    done = download(hub, "hub_gguf", "hub_hf", "hub_convert", "local")
    assert done.returncode == 0, done.stderr
    assert "error" not in done.stderr and "Traceback" not in done.stderr


def test_missing_model_offline_is_one_clear_line(hub):
    done = download(hub, "hub_gguf", "missing")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "model 'missing'" in lines[0] and "make download MODELS=missing" in lines[0]
    assert "Traceback" not in done.stderr


def test_incomplete_folder_counts_as_missing(hub):
    import download as dl

    registry = load_registry(hub / "models.toml")
    assert dl.local_folder(registry.get("hub_hf")) is not None
    # An index naming a shard that is not there: the folder is not complete.
    cache_file(hub / "hf" / "hub", "someorg/tiny", REV, "model.safetensors.index.json",
               json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors"}}).encode())
    assert dl.local_folder(registry.get("hub_hf")) is None
    assert "make download MODELS=hub_hf" in download(hub, "hub_hf").stderr


def test_unknown_names_fail_unless_optional(hub):
    assert download(hub, "nope").returncode == 2
    assert download(hub, "nope", "--optional").returncode == 0  # e.g. an API judge's name


def test_split_gguf_means_every_shard():
    import download as dl

    spec = type("S", (), {"gguf_file": "big-Q4_K_M-00001-of-00003.gguf"})()
    assert dl.gguf_files(spec) == [f"big-Q4_K_M-0000{i}-of-00003.gguf" for i in (1, 2, 3)]


def test_wanted_files_prefer_safetensors_and_skip_subfolders():
    import download as dl

    files = ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
             "pytorch_model.bin", "original/consolidated.00.pth", "tokenizer.model", "modeling_x.py",
             "README.md", "training_args.bin", "tokenizer_config.json", "onnx/model.onnx"]
    assert dl.wanted_files(files) == ["config.json", "model-00001-of-00002.safetensors",
                                      "model-00002-of-00002.safetensors", "modeling_x.py",
                                      "tokenizer.model", "tokenizer_config.json"]
    assert "pytorch_model-00001-of-00002.bin" in dl.wanted_files(["config.json", "pytorch_model-00001-of-00002.bin"])


@pytest.mark.parametrize("table, words", [
    ('gguf_repo = "o/r"\ngguf_file = "x.gguf"\nrevision = "main"', ["'revision'", "40 hex"]),
    ('hf_repo = "o/r"', ["'revision' is required"]),
    ('gguf_repo = "o/r"\nrevision = "' + REV + '"', ["'gguf_repo' and 'gguf_file' go together"]),
    ('path = "a.gguf"\nhf_repo = "o/r"\nrevision = "' + REV + '"', ["one of 'path'"]),
    ('hf_repo = "o/r"\nrevision = "' + REV + '"\nquant = "Q9_X"', ["'quant'"]),
    ('hf_repo = "o/r"\nrevision = "' + REV + '"\nquant = "nf4"', ["nf4"]),
    ('hf_repo = "o/r"\nrevision = "' + REV + '"\ntrust_remote_code = true', ["'trust_remote_code'", "transformers"]),
    ('max_tokens = 8', ["'path' is required", "'hf_repo'"]),
    ('backend = "openai"', ["'api_model'"]),
    ('backend = "openai"\napi_model = "m"\napi_key_env = "sk-abc123"', ["NAME of an environment variable"]),
    ('backend = "openai"\napi_model = "m"\nconcurrency = 0', ["'concurrency'"]),
    ('backend = "custom"\npath = "a.gguf"', ["takes no weights"]),
])
def test_bad_tables_name_the_model_and_the_key(tmp_path, table, words):
    toml = tmp_path / "models.toml"
    toml.write_text(f"[models.m1]\n{table}\n", encoding="utf-8")
    with pytest.raises(RegistryError) as err:
        load_registry(toml)
    assert "[models.m1]" in str(err.value)
    for word in words:
        assert word in str(err.value)


def test_settings_id_follows_revision_and_quant_and_keeps_old_ids(hub):
    registry = load_registry(hub / "models.toml")
    base = registry.get("hub_convert").settings_id()
    text = (hub / "models.toml").read_text()
    (hub / "models.toml").write_text(text.replace('quant = "Q8_0"', 'quant = "Q4_K_M"'))
    assert load_registry(hub / "models.toml").get("hub_convert").settings_id() != base
    (hub / "models.toml").write_text(text.replace(f'revision = "{REV}"\nquant', f'revision = "{OTHER_REV}"\nquant'))
    assert load_registry(hub / "models.toml").get("hub_convert").settings_id() != base
    # A model that uses none of the new keys keeps the settings id (and answer cache) it had.
    spec = load_registry(ROOT / "models.toml").get("smollm2_135m")
    old = {k: getattr(spec, k) for k in ("backend", "max_tokens", "temperature", "top_p", "seed", "stop",
                                         "n_ctx", "chat_template", "system_prompt")}
    old["weights"] = spec.sha256
    old_id = hashlib.sha256(json.dumps(old, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]
    assert spec.settings_id() == old_id


def test_declared_real_models_are_valid():
    registry = load_registry(ROOT / "models.toml")
    for name in ("chatglm_6b", "baichuan_7b", "gpt35", "qwen25_7b", "llama31_8b", "qwen3_14b", "parrot"):
        assert name in registry.models
    assert registry.get("chatglm_6b").backend == "transformers" and registry.get("chatglm_6b").trust_remote_code
    assert registry.get("baichuan_7b").converted and registry.get("baichuan_7b").quant == "Q4_K_M"
    assert registry.get("gpt35").api_key_env == "OPENAI_API_KEY"
    assert all(not s.trust_remote_code for n, s in registry.models.items() if n != "chatglm_6b")
