"""models.toml loading: good files, defaults, and errors that name the model and the key."""
import pytest

from lib.registry import RegistryError, load_registry

GOOD = """
[defaults]
models = ["a", "b"]
reference = "a"
judge = "b"

[models.a]
path = "models/a.gguf"
max_tokens = 64
temperature = 0.7
stop = ["</s>"]

[models.b]
path = "/abs/hf-folder"
description = "a Hugging Face folder"
"""


def write(tmp_path, text):
    path = tmp_path / "models.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_good_file(tmp_path):
    registry = load_registry(write(tmp_path, GOOD))
    assert registry.default_models == ["a", "b"]
    assert (registry.reference, registry.judge) == ("a", "b")
    a, b = registry.get("a"), registry.get("b")
    assert a.path == tmp_path / "models" / "a.gguf"  # relative to models.toml
    assert a.backend == "llama.cpp" and b.backend == "transformers"  # inferred from the path
    assert (a.max_tokens, a.temperature, a.stop) == (64, 0.7, ["</s>"])
    assert (b.max_tokens, b.temperature, b.n_ctx, b.n_gpu_layers) == (256, 0.0, 4096, -1)


def test_settings_id_tracks_what_changes_answers(tmp_path):
    base = load_registry(write(tmp_path, GOOD)).get("a").settings_id()
    hotter = load_registry(write(tmp_path, GOOD.replace("0.7", "0.9"))).get("a").settings_id()
    described = load_registry(write(tmp_path, GOOD.replace('stop = ["</s>"]', 'stop = ["</s>"]\ndescription = "x"')))
    assert base != hotter
    assert described.get("a").settings_id() == base


@pytest.mark.parametrize("text, message", [
    ('[models.a]\npath = "x.gguf"\nmax_tokenz = 3\n', "[models.a]: unknown key 'max_tokenz'"),
    ('[models.a]\npath = "x.gguf"\nmax_tokens = "many"\n', "[models.a]: 'max_tokens' must be a positive integer"),
    ('[models.a]\npath = "x.gguf"\nmax_tokens = 0\n', "'max_tokens' must be a positive integer"),
    ('[models.a]\npath = "x.gguf"\ntemperature = -1\n', "'temperature' must be a number >= 0"),
    ('[models.a]\npath = "x.gguf"\nbackend = "vllm"\n', "'backend' must be one of"),
    ('[models.a]\npath = "x.gguf"\nstop = "END"\n', "'stop' must be a list of strings"),
    ('[models.a]\npath = "x.gguf"\nseed = true\n', "'seed' must be an integer"),
    ('[models.a]\nmax_tokens = 3\n', "[models.a]: 'path' is required"),
    ('[models.a]\npath = "x.gguf"\n[defaults]\njudge = "zz"\n', "[defaults] names 'zz'"),
    ('[models.a]\npath = "x.gguf"\n[defaults]\ncolor = "red"\n', "[defaults]: unknown key 'color'"),
    ('[model.a]\npath = "x.gguf"\n', "unknown top-level table 'model'"),
    ('[defaults]\nmodels = []\n', "declare at least one model"),
    ('[models.a\npath = "x.gguf"\n', "not valid TOML"),
])
def test_bad_files(tmp_path, text, message):
    with pytest.raises(RegistryError) as err:
        load_registry(write(tmp_path, text))
    assert message in str(err.value)


def test_missing_file_and_unknown_model(tmp_path):
    with pytest.raises(RegistryError, match="file not found"):
        load_registry(tmp_path / "nope.toml")
    registry = load_registry(write(tmp_path, GOOD))
    with pytest.raises(RegistryError, match="no model named 'c' \\(declared: a, b\\)"):
        registry.get("c")


def test_weights_id_is_the_content_hash_of_a_file_or_folder(tmp_path):
    """Issue 16, item 4: new weights of the same size are new weights (hashes remembered in a
    cache file by path, size and mtime, the same as the judge's identity uses)."""
    import hashlib
    import os

    from lib.hashes import hash_cache

    (tmp_path / "models").mkdir()
    weights, folder = tmp_path / "models" / "a.gguf", tmp_path / "hf"
    weights.write_bytes(b"GGUF" + b"\0" * 1000)
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\1" * 100)
    (folder / "config.json").write_text("{}")
    toml = write(tmp_path, GOOD.replace('"/abs/hf-folder"', f'"{folder}"'))
    a, b = load_registry(toml).get("a"), load_registry(toml).get("b")
    cache = hash_cache(tmp_path / "out")
    assert a.weights_id(cache) == f"a.gguf:sha256:{hashlib.sha256(weights.read_bytes()).hexdigest()}"
    assert cache.is_file()  # remembered
    before_a, before_b = a.settings_id(cache), b.settings_id(cache)
    weights.write_bytes(b"GGUF" + b"\1" * 1000)  # same size, new content
    (folder / "model.safetensors").write_bytes(b"\2" * 100)
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a later mtime, as a rewrite gives
    os.utime(folder / "model.safetensors", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert a.settings_id(cache) != before_a and b.settings_id(cache) != before_b
