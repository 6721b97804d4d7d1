"""Convert Hugging Face weights to GGUF and quantize them: `make quantize MODELS="a b"`.

    python tools/quantize.py baichuan_7b [--models-toml models.toml] [--keep-f16]

For each model whose GGUF we make ourselves (`hf_repo`, or a folder `path`, with the llama.cpp
backend): the folder -> models/NAME/NAME.f16.gguf with llama.cpp's own convert_hf_to_gguf.py (run
through convert_fixes.py, which fixes its known bugs in memory: Baichuan's), then
-> models/NAME/NAME.QUANT.gguf (`quant`, default Q4_K_M) with llama_cpp.llama_model_quantize.

The converter comes from the sdist of the installed llama-cpp-python (same llama.cpp version as the
one that will load the file), fetched from PyPI once with pip and kept, with its gguf-py, in
~/.cache/llmeval-wheels/src (LLMEVAL_WHEELS moves it). A model is skipped when its GGUF is newer
than every file of its folder; the f16 file is removed afterwards unless --keep-f16. The
converter's log goes to models/NAME/convert.log.

A folder that cannot be converted (config.json unreadable, no weights, a shard missing or
truncated) is refused in one line before the converter runs.
Not handled: architectures llama.cpp's converter does not know (the message says to declare
backend = "transformers"), LoRA adapters, multimodal projectors, importance matrices.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from lib.stages import run_models
from lib.registry import ModelSpec, load_registry

# The parts of the sdist the converter needs: the script, its model classes and its gguf library.
CONVERTER_PARTS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", "LICENSE")


class QuantizeError(Exception):
    """One model could not be converted; the message is one line for the user."""


def wheels_dir() -> Path:
    return Path(os.environ.get("LLMEVAL_WHEELS") or Path.home() / ".cache" / "llmeval-wheels").expanduser()


def converter_dir() -> Path:
    """llama.cpp's converter for the installed llama-cpp-python, fetched from PyPI the first time."""
    version = importlib.metadata.version("llama_cpp_python")
    target = wheels_dir() / "src" / f"llama_cpp_python-{version}" / "vendor" / "llama.cpp"
    if (target / "convert_hf_to_gguf.py").is_file():
        return target
    print(f"fetching llama.cpp's converter (llama-cpp-python {version} sdist) from PyPI, once", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
               "--no-binary", ":all:", "--no-deps", f"llama-cpp-python=={version}", "-d", tmp]
        if subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode != 0:
            raise QuantizeError(f"could not fetch the llama-cpp-python {version} sdist from PyPI (pip's message "
                                "above); run `make quantize` again with network")
        sdist = next(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        staging = target.with_name("llama.cpp.partial")
        shutil.rmtree(staging, ignore_errors=True)
        with tarfile.open(sdist) as tar:
            prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
            for member in tar.getmembers():
                rel = member.name[len(prefix):] if member.name.startswith(prefix) else None
                if rel and (member.isfile() or member.isdir()) and any(
                        rel == part or rel.startswith(part) for part in CONVERTER_PARTS):
                    member.name = rel
                    tar.extract(member, staging, filter="data")
        if not (staging / "convert_hf_to_gguf.py").is_file():
            raise QuantizeError(f"the llama-cpp-python {version} sdist has no vendor/llama.cpp/convert_hf_to_gguf.py")
        os.replace(staging, target)
    return target


def up_to_date(output: Path, folder: Path) -> bool:
    """The GGUF exists and is newer than every file of the folder (cache symlinks followed)."""
    if not output.is_file():
        return False
    newest = max((f.stat().st_mtime for f in folder.iterdir() if f.is_file()), default=0.0)
    return output.stat().st_mtime > newest


def architecture(folder: Path) -> str:
    import json

    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "unknown"
    return (config.get("architectures") or [config.get("model_type", "unknown")])[0]


def folder_problem(folder: Path) -> str | None:
    """What makes a Hugging Face folder unusable before the converter runs, in words, or None:
    config.json unreadable, no weight files, or a shard its index names missing or truncated
    (an interrupted download). The converter's own messages for these name no file."""
    import json

    try:
        json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return f"its config.json is not valid JSON ({type(err).__name__})"
    weights = [f for f in folder.iterdir() if f.suffix in (".safetensors", ".bin", ".pt", ".pth")]
    if not weights:
        return "it has no weight files (*.safetensors or *.bin)"
    for index in [*folder.glob("*.safetensors.index.json"), *folder.glob("*.bin.index.json")]:
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (OSError, ValueError, KeyError, AttributeError):
            return f"its {index.name} is not a valid shard index"
        missing = sorted(s for s in shards if not (folder / s).is_file())
        if missing:
            return f"{index.name} names {len(missing)} shard(s) that are missing, e.g. {missing[0]}"
    for f in weights:
        if f.suffix == ".safetensors" and not _whole_safetensors(f):
            return f"{f.name} is truncated or not a safetensors file"
    return None


def _whole_safetensors(path: Path) -> bool:
    """A safetensors file's header is readable and its tensors end within the file."""
    import json
    import struct

    try:
        with path.open("rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n)) if n < 100 << 20 else None
        if not isinstance(header, dict):
            return False
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
        return path.stat().st_size >= 8 + n + end
    except (OSError, ValueError, struct.error, KeyError, TypeError, IndexError):
        return False


def convert(spec: ModelSpec, f16: Path) -> None:
    """Hugging Face folder -> f16 GGUF with llama.cpp's convert_hf_to_gguf.py (log in convert.log)."""
    script = converter_dir() / "convert_hf_to_gguf.py"
    log_path = spec.path.parent / "convert.log"
    outtype = "bf16" if spec.quant == "BF16" else "f16"
    # Through convert_fixes.py: the converter with its known bugs (Baichuan) fixed in memory.
    fixes = Path(__file__).resolve().parent / "convert_fixes.py"
    cmd = [sys.executable, str(fixes), str(script), str(spec.hf_dir), "--outfile", str(f16), "--outtype", outtype]
    print(f"{spec.name}: converting {spec.hf_dir} ({architecture(spec.hf_dir)}) -> {f16.name}", file=sys.stderr)
    with log_path.open("w", encoding="utf-8") as log:
        code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode
    if code != 0:
        f16.unlink(missing_ok=True)
        text = log_path.read_text(encoding="utf-8", errors="replace")
        last = (text.strip().splitlines() or ["(no output)"])[-1][:200]
        arch = architecture(spec.hf_dir)
        if "is not supported" in text or "not supported!" in text:
            raise QuantizeError(f"model '{spec.name}': llama.cpp's converter does not know the architecture {arch}; "
                                "declare backend = \"transformers\" for it in models.toml "
                                "(with trust_remote_code = true if the repo brings its own code)")
        raise QuantizeError(f"model '{spec.name}': llama.cpp's converter failed on {arch}: {last} "
                            f"(full log: {log_path}); if llama.cpp cannot run this model, "
                            "declare backend = \"transformers\" for it")


def quantize_file(source: Path, output: Path, quant: str) -> None:
    """f16 GGUF -> `quant` with llama.cpp's own quantizer, written beside and renamed when whole."""
    import llama_cpp

    from backends.llama_engine import usable_cpus

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant}")
    params.nthread = usable_cpus()
    partial = output.with_name(output.name + ".partial")
    code = llama_cpp.llama_model_quantize(str(source).encode(), str(partial).encode(), params)
    if code != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        raise QuantizeError(f"llama.cpp could not quantize {source.name} to {quant} (code {code})")
    os.replace(partial, output)


def build(spec: ModelSpec, keep_f16: bool = False) -> str:
    """Make the model's GGUF; returns 'built', 'up to date' or 'none needed'."""
    if not spec.converted:
        return "none needed"
    if not (spec.hf_dir / "config.json").is_file():
        source = "make download MODELS=" + spec.name if spec.hf_repo else f"fix 'path' ({spec.hf_dir})"
        raise QuantizeError(f"model '{spec.name}': no Hugging Face weights at {spec.hf_dir}; run: {source}")
    if up_to_date(spec.path, spec.hf_dir):
        return "up to date"
    problem = folder_problem(spec.hf_dir)
    if problem:
        again = f"run make download MODELS={spec.name} again" if spec.hf_repo else "fix the folder, or 'path' in models.toml"
        raise QuantizeError(f"model '{spec.name}': cannot convert {spec.hf_dir}: {problem}; {again}")
    spec.path.parent.mkdir(parents=True, exist_ok=True)
    weights = sum(f.stat().st_size for f in spec.hf_dir.iterdir() if f.suffix in (".safetensors", ".bin"))
    free = shutil.disk_usage(spec.path.parent).free
    if free < 1.5 * weights:  # an f16 copy plus the quantized file
        raise QuantizeError(f"model '{spec.name}': {free / 1e9:.1f} GB free in {spec.path.parent}, about "
                            f"{1.5 * weights / 1e9:.0f} GB needed to convert; free some disk space")
    if spec.quant in ("F16", "BF16"):  # the converter writes these directly
        convert(spec, spec.path)
        return "built"
    f16 = spec.path.with_name(f"{spec.name}.f16.gguf")
    if not (f16.is_file() and up_to_date(f16, spec.hf_dir)):
        convert(spec, f16)
    print(f"{spec.name}: quantizing to {spec.quant} -> {spec.path}", file=sys.stderr)
    quantize_file(f16, spec.path, spec.quant)
    if not keep_f16:
        f16.unlink()
    return "built"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="model names from models.toml")
    parser.add_argument("--models-toml", default="models.toml")
    parser.add_argument("--keep-f16", action="store_true", help="keep models/NAME/NAME.f16.gguf")
    parser.add_argument("--optional", action="store_true", help="skip names models.toml does not declare")
    parser.add_argument("--fetch-converter", action="store_true", help="only fetch llama.cpp's converter")
    args = parser.parse_args(argv)

    def prepare() -> list[ModelSpec] | int:
        if args.fetch_converter:
            print(converter_dir())
            return 0
        registry = load_registry(args.models_toml)
        names = [n for n in dict.fromkeys(args.models) if n in registry.models or not args.optional]
        return [registry.get(name) for name in names]

    def each(spec: ModelSpec) -> None:
        if build(spec, args.keep_f16) == "built":
            print(f"{spec.name}: {spec.path}", file=sys.stderr)

    return run_models("quantize", prepare, each, failures=(QuantizeError, OSError), setup_errors=(QuantizeError,),
                      describe=lambda spec, err: str(err) if isinstance(err, QuantizeError) else
                      f"model '{spec.name}': {err}",
                      interrupted=lambda spec: f"run make quantize MODELS={spec.name} again")


if __name__ == "__main__":
    sys.exit(main())
