"""What make needs before a stage, from models.toml: stamps, and API keys checked up front.

    python tools/stamps.py stamp NAME... --questions Q --out OUT       (make infer)
    python tools/stamps.py stamp-value NAME VALUE... --out OUT         (make board, judge-check)
    python tools/stamps.py preflight NAME...                           (before any work)

Make cannot see one table of models.toml, so each model's answers depend on OUT/stamps/NAME.json
instead: what the answers are made from (the model's entry with any base_url password masked, its
settings id, which holds the weights' content hash, the questions' path and hash), rewritten only when that changed, so make re-runs a
model only when its entry, its weights or the questions change. `stamp-value` does the same for
a variable's value (MODELS, REFERENCE, JUDGE), with the entries of the models it names.
Does not handle: reading or validating models.toml (registry.py does, and fails here the same way).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from lib import arguments
from lib.hashes import hash_cache
from lib.registry import Registry, RegistryError, load_registry, redact_url


def write_stamp(registry: Registry, name: str, questions: Path, stamp: Path) -> bool:
    """Write what OUT/NAME.json is made from to `stamp`, touching it only when that changed.

    Make cannot see one table of models.toml, so it depends on this file instead: it is rewritten
    (and the model re-run) only when the model's entry, its weights or the questions change.
    """
    spec = registry.get(name)
    model = {k: redact_url(v) if k == "base_url" else v for k, v in spec.raw.items()}
    content = json.dumps({"model": model, "settings_id": spec.settings_id(hash_cache(stamp.parent.parent)),
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


def check_api_keys(registry: Registry, names: list[str]) -> None:
    """Before any work: every API model among `names` (not declared ones are skipped) has its key."""
    for name in dict.fromkeys(names):
        spec = registry.models.get(name)
        if spec and spec.backend == "openai" and spec.api_key_env and not os.environ.get(spec.api_key_env):
            raise RegistryError(f"model '{name}' calls {redact_url(spec.base_url)} and needs an API key: "
                                f"export {spec.api_key_env}=... (or leave '{name}' out of MODELS / REFERENCE)")


def main(argv: list[str] | None = None) -> int:
    parser = arguments.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["stamp", "stamp-value", "preflight"])
    parser.add_argument("models", nargs="*")
    parser.add_argument("--models-toml", default="models.toml")
    parser.add_argument("--questions", help="questions file (stamp)")
    parser.add_argument("--out", default="out", help="output folder (stamp, stamp-value)")
    args = parser.parse_args(argv)
    try:
        registry = load_registry(args.models_toml)
        if args.command == "preflight":
            check_api_keys(registry, args.models)
        elif args.command == "stamp":
            if not args.questions or not Path(args.questions).exists():
                raise RegistryError(f"questions file not found: {args.questions} (set QUESTIONS)")
            if not Path(args.questions).is_file():
                raise RegistryError(f"QUESTIONS={args.questions} is not a file; name a .txt, .json or .jsonl file")
            for name in args.models:
                write_stamp(registry, name, Path(args.questions), Path(args.out) / "stamps" / f"{name}.json")
        elif args.command == "stamp-value":
            stamp_name, *values = args.models
            entries = [json.dumps({k: redact_url(x) if k == "base_url" else x for k, x in registry.models[v].raw.items()},
                                  sort_keys=True) for v in values if v in registry.models]
            write_if_changed(Path(args.out) / "stamps" / f"{stamp_name}.txt", "\n".join([*values, *entries]) + "\n")
    except RegistryError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a read-only or full OUT, a file we may not read
        print(f"error: cannot write or read {err.filename or args.out}: {err.strerror}; "
              "choose a writable OUT=... or fix the permissions", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
