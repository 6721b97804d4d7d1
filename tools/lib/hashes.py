"""Content hashes of weights, remembered by path, size and mtime so a big file is hashed once.

    file_sha256(path, cache_path)      # one file
    weights_sha256(path, cache_path)   # a GGUF file, or a Hugging Face folder's weight and config files

What identifies a model's weights for its answers (registry.ModelSpec.weights_id) and for a
judge's verdicts (judges/resolve.py): new weights of the same size are new weights. The cache
is a JSON file (OUT/judge/file_hashes.json); None hashes with only this process's memory. A
cache that cannot be read or written is only a cache: the hash is computed anyway.
Does not handle: a file rewritten within the same mtime tick at the same size (mtime_ns makes it
unlikely) or a file changed while it is hashed.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from lib.records import InputError, read_json, sha256_of, write_json_atomic

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json", ".model", ".py")  # the judge's identity has always used these
_memory: dict[str, str] = {}


def file_sha256(path: Path, cache_path: Path | None) -> str:
    """The file's sha256, remembered by path, size and mtime."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    if cache_path is None:
        if key not in _memory:
            _memory[key] = sha256_of(path)
        return _memory[key]
    try:
        cache = read_json(cache_path) if cache_path.exists() else {}
    except (InputError, OSError):
        cache = {}
    cache = cache if isinstance(cache, dict) else {}
    if key not in cache:
        cache[key] = _memory.get(key) or sha256_of(path)  # hashed once per process at most
        try:
            write_json_atomic(cache_path, cache)
        except OSError:  # a read-only OUT: the answer does not depend on the cache
            pass
    _memory[key] = cache[key]
    return cache[key]


def weights_sha256(path: Path, cache_path: Path | None) -> str:
    """A file's sha256, or for a folder the hash of its weight, tokenizer and config files' hashes."""
    if path.is_file():
        return file_sha256(path, cache_path)
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES
                   and ".venv" not in p.relative_to(path).parts)
    return hashlib.sha256(json.dumps([[p.name, file_sha256(p, cache_path)] for p in files]).encode("utf-8")).hexdigest()


def hash_cache(out_dir: str | Path) -> Path:
    """Where a run on OUT remembers file hashes (the judge's and the answers' alike)."""
    return Path(out_dir) / "judge" / "file_hashes.json"
