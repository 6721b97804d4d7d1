"""Download models' weights from the Hugging Face Hub: `make download MODELS="a b"`.

    python tools/download.py qwen25_7b baichuan_7b [--models-toml models.toml]

What a model's table in models.toml asks for, at its pinned `revision`:
- `gguf_repo` + `gguf_file`: that one file (every shard, when it is a split GGUF's first one);
- `hf_repo`: the repo's top-level config, tokenizer, code and weights (safetensors, or .bin when
  the repo has no safetensors), for `make quantize` or the transformers backend;
- `requirements`: also the model's own virtual environment, models/NAME/.venv (pip, pinned).

Files go into the Hugging Face cache (HF_HOME / HF_HUB_CACHE respected) with huggingface_hub,
which shows progress and resumes an interrupted download; HF_TOKEN is used for gated repos and is
never printed. A model whose files are on disk is not looked up at all, so this is quick and
works offline. Offline (HF_HUB_OFFLINE=1, or no network) anything missing is one line that names
the model and the command to run online. Models that need no download (a local `path`, embedded
or API models) are skipped silently.

Not handled: other hubs (ModelScope), weights in subfolders of a repo, datasets.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from lib.records import exclusive_lock, sha256_of
from lib.stages import run_models
from lib.registry import ModelSpec, hub_cache_dir, load_registry

# Top-level files a model folder needs besides its weights (config, tokenizer, remote code).
FOLDER_FILES = re.compile(r"[^/]+\.(json|py|model|tiktoken|txt)|tokenizer[^/]*")
SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")


class DownloadError(Exception):
    """One model could not be made available; the message is one line for the user."""


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def gguf_files(spec: ModelSpec) -> list[str]:
    """The GGUF file, or all shards of a split one (llama.cpp opens the first and finds the rest)."""
    match = SHARD.search(spec.gguf_file)
    if not match:
        return [spec.gguf_file]
    total = int(match.group(2))
    return [SHARD.sub(f"-{i:05d}-of-{total:05d}.gguf", spec.gguf_file) for i in range(1, total + 1)]


def folder_complete(folder: Path) -> bool:
    """config.json and the weights are there (every shard an index names, when there is an index)."""
    if not (folder / "config.json").is_file():
        return False
    for index in list(folder.glob("*.safetensors.index.json")) + list(folder.glob("pytorch_model*.bin.index.json")):
        shards = set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values())
        return all((folder / shard).is_file() for shard in shards)
    return any(folder.glob("*.safetensors")) or any(folder.glob("pytorch_model*.bin"))


def local_gguf(spec: ModelSpec) -> Path | None:
    """The cached GGUF (first shard) when every file is on disk, through huggingface_hub's cache lookup."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        paths = [hf_hub_download(spec.gguf_repo, name, revision=spec.revision, cache_dir=hub_cache_dir(),
                                 local_files_only=True) for name in gguf_files(spec)]
    except (LocalEntryNotFoundError, FileNotFoundError):
        return None
    return Path(paths[0])


def local_folder(spec: ModelSpec) -> Path | None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(spec.hf_repo, revision=spec.revision, cache_dir=hub_cache_dir(),
                                        local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError):
        return None
    return folder if folder_complete(folder) else None


def wanted_files(repo_files: list[str]) -> list[str]:
    """From a repo's file list: top-level config/tokenizer/code files and one kind of weights."""
    top = [f for f in repo_files if "/" not in f]
    weights = [f for f in top if f.endswith(".safetensors")]
    if not weights:  # older repos (ChatGLM-6B, Baichuan-7B) have PyTorch .bin files only
        weights = [f for f in top if re.fullmatch(r"pytorch_model.*\.bin", f)]
    others = [f for f in top if FOLDER_FILES.fullmatch(f) and not f.startswith(("training_args", "README"))]
    return sorted(set(weights + others))


def fetch(spec: ModelSpec) -> str:
    """Make the model's files available; returns 'present', 'downloaded' or 'none needed'."""
    if spec.gguf_repo:
        state = "present" if local_gguf(spec) else _download(spec, lambda: _download_gguf(spec))
    elif spec.hf_repo:
        state = "present" if local_folder(spec) else _download(spec, lambda: _download_folder(spec))
    else:
        state = "none needed"
    if spec.requirements:
        env_state = ensure_env(spec)
        state = "downloaded" if env_state == "installed" else state
    return state


def _download(spec: ModelSpec, run) -> str:
    from huggingface_hub import errors
    from huggingface_hub.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # its retry warnings would bury our one-line message

    repo = spec.gguf_repo or spec.hf_repo
    online = f"run online: make download MODELS={spec.name}"
    if offline():
        raise DownloadError(f"model '{spec.name}': {repo}@{spec.revision[:10]} is not in the Hugging Face cache "
                            f"({hub_cache_dir()}) and HF_HUB_OFFLINE is set; {online}")
    try:
        run()
    except DownloadError:
        raise
    except errors.GatedRepoError:
        raise DownloadError(f"model '{spec.name}': {repo} is gated: accept its terms on huggingface.co/{repo}, "
                            "then export HF_TOKEN=<a read token> and run make download again") from None
    except errors.RepositoryNotFoundError:
        raise DownloadError(f"model '{spec.name}': repo {repo} not found on the Hub (a private repo needs "
                            "HF_TOKEN); check 'hf_repo' / 'gguf_repo' in models.toml") from None
    except errors.RevisionNotFoundError:
        raise DownloadError(f"model '{spec.name}': revision {spec.revision} not found in {repo}; "
                            "check 'revision' in models.toml") from None
    except errors.RemoteEntryNotFoundError:
        raise DownloadError(f"model '{spec.name}': {spec.gguf_file} is not in {repo} at {spec.revision[:10]}; "
                            "check 'gguf_file' in models.toml") from None
    except errors.LocalEntryNotFoundError:  # what huggingface_hub raises when the Hub is unreachable
        raise DownloadError(f"model '{spec.name}': {repo} is not in the Hugging Face cache and the Hub "
                            f"cannot be reached; {online}") from None
    except Exception as err:  # a proxy, a full disk: one line, never a traceback
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        raise DownloadError(f"model '{spec.name}': could not download {repo} ({reason}); {online}") from None
    return "downloaded"


def _download_gguf(spec: ModelSpec) -> None:
    from huggingface_hub import hf_hub_download

    for name in gguf_files(spec):
        print(f"{spec.name}: downloading {spec.gguf_repo}/{name}", file=sys.stderr)
        path = hf_hub_download(spec.gguf_repo, name, revision=spec.revision, cache_dir=hub_cache_dir())
    if spec.sha256 and len(gguf_files(spec)) == 1 and sha256_of(Path(path)) != spec.sha256.lower():
        raise DownloadError(f"model '{spec.name}': the sha256 of {spec.gguf_file} does not match models.toml; "
                            f"delete {path} and check 'sha256' and 'revision'")


def _download_folder(spec: ModelSpec) -> None:
    from huggingface_hub import HfApi, snapshot_download

    files = wanted_files(HfApi().list_repo_files(spec.hf_repo, revision=spec.revision))
    if not any(f.endswith((".safetensors", ".bin")) for f in files):
        raise DownloadError(f"model '{spec.name}': {spec.hf_repo} has no top-level .safetensors or "
                            "pytorch_model*.bin weights; use gguf_repo or another repo")
    print(f"{spec.name}: downloading {spec.hf_repo}@{spec.revision[:10]} ({len(files)} files)", file=sys.stderr)
    snapshot_download(spec.hf_repo, revision=spec.revision, cache_dir=hub_cache_dir(), allow_patterns=files)


def ensure_env(spec: ModelSpec) -> str:
    """models/NAME/.venv with the pinned `requirements`, (re)made when that file changes."""
    if not spec.requirements.is_file():
        raise DownloadError(f"model '{spec.name}': requirements file {spec.requirements} not found; "
                            "fix 'requirements' in models.toml")
    wanted = spec.requirements.read_text(encoding="utf-8")
    done = spec.venv / "requirements.done"
    if done.is_file() and done.read_text(encoding="utf-8") == wanted:
        return "present"
    # Two runs at once (two `make download`, two test workers) would pip into one folder together.
    with exclusive_lock(spec.venv.parent / f".{spec.venv.name}.lock",
                        f"{spec.name}: waiting for process {{pid}}, which is installing {spec.venv}"):
        if done.is_file() and done.read_text(encoding="utf-8") == wanted:
            return "present"  # made while we waited
        return _install_env(spec, wanted, done)


def _install_env(spec: ModelSpec, wanted: str, done: Path) -> str:
    python = spec.venv / "bin" / "python"
    print(f"{spec.name}: installing its own environment {spec.venv} from {spec.requirements}", file=sys.stderr)
    steps = [] if python.exists() else [[sys.executable, "-m", "venv", str(spec.venv)]]
    steps.append([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                  "-r", str(spec.requirements)])
    for step in steps:
        if subprocess.run(step).returncode != 0:
            raise DownloadError(f"model '{spec.name}': could not install {spec.requirements} into {spec.venv} "
                                f"(pip's message above); with network, run: make download MODELS={spec.name}")
    done.write_text(wanted, encoding="utf-8")
    return "installed"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="model names from models.toml")
    parser.add_argument("--models-toml", default="models.toml")
    parser.add_argument("--optional", action="store_true",
                        help="skip names that models.toml does not declare (e.g. an API judge)")
    args = parser.parse_args(argv)

    def prepare() -> list[ModelSpec]:
        registry = load_registry(args.models_toml)
        names = [n for n in dict.fromkeys(args.models) if n in registry.models or not args.optional]
        return [registry.get(name) for name in names]

    def each(spec: ModelSpec) -> None:
        if fetch(spec) == "downloaded":
            print(f"{spec.name}: ready", file=sys.stderr)

    return run_models("download", prepare, each, failures=(DownloadError,),
                      interrupted=lambda spec: f"run make download MODELS={spec.name} again to resume")


if __name__ == "__main__":
    sys.exit(main())
