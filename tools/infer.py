"""Run one or more models over a questions file: writes OUT/NAME.json per model.

    python tools/infer.py --questions data/llm_benchmark_tiny.txt smollm2_135m gemma3_270m

Every answer is appended to OUT/cache/NAME.jsonl the moment it is done, so a crash or Ctrl-C
loses nothing, and a rerun answers only what is missing for the same model, question and
settings (the model is not even loaded when nothing is missing). A question that fails gets an
`error` in NAME.json and is retried on the next run; a model that fails to load is reported and
the other models still run.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from records import AnswerCache, InputError, answer_record, load_questions, write_json_atomic
from registry import ModelSpec, RegistryError, load_registry


def run_model(spec: ModelSpec, questions: list[dict], out_dir: Path, quiet: bool = False) -> dict:
    """Answer what is missing, write OUT/NAME.json; return counts."""
    settings_id = spec.settings_id()
    cache = AnswerCache(out_dir / "cache" / f"{spec.name}.jsonl")
    records: list[dict | None] = [cache.get(settings_id, q) for q in questions]
    for record in records:
        if record is not None:
            record["generator"] = spec.name
    todo = [i for i, record in enumerate(records) if record is None]
    out_path = out_dir / f"{spec.name}.json"

    def save() -> None:
        done = [r if r is not None else answer_record(q, spec.name, settings_id, error="not answered yet")
                for q, r in zip(questions, records)]
        write_json_atomic(out_path, done)

    if todo:
        _answer(spec, questions, todo, records, cache, settings_id, quiet, save)
    save()
    failed = sum(1 for r in records if r is None or r.get("error"))
    return {"model": spec.name, "answered": len(todo) - failed, "reused": len(questions) - len(todo),
            "failed": failed}


def _answer(spec, questions, todo, records, cache, settings_id, quiet, save) -> None:
    from tqdm import tqdm

    from backends import load_backend

    backend = load_backend(spec)
    bar = tqdm(total=len(todo), desc=spec.name, unit="q", disable=quiet, file=sys.stderr)
    started, tokens, last_save = time.perf_counter(), 0, time.perf_counter()
    try:
        for local_index, result in backend.answer([questions[i] for i in todo]):
            index = todo[local_index]
            record = answer_record(questions[index], spec.name, settings_id, **result)
            records[index] = record
            if "error" not in result:
                cache.add(record)
            tokens += record["tokens"]
            bar.update(1)
            bar.set_postfix(tok_s=f"{tokens / max(time.perf_counter() - started, 1e-9):.1f}")
            if time.perf_counter() - last_save > 10:  # NAME.json shows progress on long runs
                save()
                last_save = time.perf_counter()
    finally:
        bar.close()
        backend.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="model names from models.toml (default: [defaults] models)")
    parser.add_argument("--questions", required=True, help="questions file (.txt, .json or .jsonl)")
    parser.add_argument("--models-toml", default="models.toml")
    parser.add_argument("--out", default="out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--parallel", type=int, metavar="N",
                        help="llama.cpp: questions decoded together, overriding models.toml's "
                             "parallel (0 = automatic)")
    args = parser.parse_args(argv)
    if args.parallel is not None and args.parallel < 0:
        parser.error(f"--parallel must be >= 0 (0 = automatic), got {args.parallel}")
    try:
        registry = load_registry(args.models_toml)
        names = args.models or registry.default_models
        if not names:
            raise RegistryError("no models given: pass MODELS=\"a b\" or set [defaults] models")
        specs = [registry.get(name) for name in names]
        if args.parallel is not None:  # how fast, not what is answered: the settings id is unchanged
            specs = [dataclasses.replace(spec, parallel=args.parallel) for spec in specs]
        questions = load_questions(args.questions)
    except (RegistryError, InputError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    failures = 0
    for spec in specs:
        try:
            counts = run_model(spec, questions, Path(args.out), args.quiet)
        except KeyboardInterrupt:
            print(f"\ninterrupted: answers so far are kept in {args.out}/cache/{spec.name}.jsonl; "
                  "run again to continue", file=sys.stderr)
            return 130
        except Exception as err:  # a model that cannot load must not stop the others
            print(f"error: model '{spec.name}': {err}", file=sys.stderr)
            failures += 1
            continue
        print(f"{counts['model']}: {counts['answered']} answered, {counts['reused']} reused, "
              f"{counts['failed']} failed -> {args.out}/{spec.name}.json", file=sys.stderr)
        failures += counts["failed"] > 0 and counts["answered"] + counts["reused"] == 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
