"""Run one or more models over a questions file: writes OUT/NAME.json per model.

    python tools/infer.py --questions data/llm_benchmark_tiny.txt smollm2_135m gemma3_270m

Every answer is appended to OUT/cache/NAME.jsonl the moment it is done, so a crash or Ctrl-C
loses nothing, and a rerun answers only what is missing for the same model, question and
settings (the model is not even loaded when nothing is missing). A question that fails gets an
`error` in NAME.json and is retried on the next run (its make stamp, OUT/stamps/NAME.json, is
removed so that `make` runs the model again); a model that fails to load is reported and the
other models still run.

Two runs on the same OUT never answer the same model at once: the second waits for the first
(a lock on OUT/cache/NAME.lock, released by the system even after kill -9), then reuses what it
answered. Not handled: OUT on a network file system without working flock.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import arguments
from records import AnswerCache, InputError, answer_record, exclusive_lock, load_questions, write_atomic
from registry import ModelSpec, RegistryError, load_registry


def model_lock(out_dir: Path, name: str):
    """Hold OUT/cache/NAME.lock; when another run holds it, say so and wait for it."""
    return exclusive_lock(out_dir / "cache" / f"{name}.lock",
                          f"waiting: another run (pid {{pid}}) is answering '{name}' into {out_dir}; "
                          "this one goes on when it is done")


def run_model(spec: ModelSpec, questions: list[dict], out_dir: Path, quiet: bool = False) -> dict:
    """Answer what is missing, write OUT/NAME.json; return counts."""
    with model_lock(out_dir, spec.name):
        return _run_model(spec, questions, out_dir, quiet)


def _run_model(spec: ModelSpec, questions: list[dict], out_dir: Path, quiet: bool) -> dict:
    settings_id = spec.settings_id()
    cache = AnswerCache(out_dir / "cache" / f"{spec.name}.jsonl")
    records: list[dict | None] = [cache.get(settings_id, q) for q in questions]
    for record in records:
        if record is not None:
            record["generator"] = spec.name
    todo = [i for i, record in enumerate(records) if record is None]
    out_path = out_dir / f"{spec.name}.json"

    def content() -> bytes:
        done = [r if r is not None else answer_record(q, spec.name, settings_id, error="not answered yet")
                for q, r in zip(questions, records)]
        return (json.dumps(done, ensure_ascii=False, indent=2) + "\n").encode("utf-8")

    def save() -> None:  # progress on a long run, dated 1970 so that make never takes it for done
        write_atomic(out_path, content())
        os.utime(out_path, (0, 0))

    def save_if_changed() -> None:  # an unchanged NAME.json keeps its date: make redoes nothing after it
        data = content()
        if not out_path.is_file() or out_path.stat().st_mtime < 1 or out_path.read_bytes() != data:
            write_atomic(out_path, data)

    if todo:
        _answer(spec, questions, todo, records, cache, settings_id, quiet, save)
    save_if_changed()
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
    parser = arguments.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="model names from models.toml (default: [defaults] models)")
    parser.add_argument("--questions", required=True, help="questions file (.txt, .json or .jsonl)")
    parser.add_argument("--models-toml", default="models.toml")
    parser.add_argument("--out", default="out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--parallel", type=arguments.count(">= 0 (0 = automatic)"), metavar="N",
                        help="llama.cpp: questions decoded together, overriding models.toml's "
                             "parallel (0 = automatic)")
    args = parser.parse_args(argv)
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
        except OSError as err:  # a full disk, a read-only OUT: answers already written are kept
            where = f"cannot use {err.filename}: {err.strerror}" if err.filename else str(err)
            print(f"error: model '{spec.name}': {where}; free some space or choose a writable OUT=..., "
                  "then run again (answers already written are kept)", file=sys.stderr)
            failures += 1
            forget_stamp(Path(args.out), spec.name)
            continue
        except Exception as err:  # a model that cannot load must not stop the others
            print(f"error: model '{spec.name}': {err}", file=sys.stderr)
            failures += 1
            forget_stamp(Path(args.out), spec.name)
            continue
        print(f"{counts['model']}: {counts['answered']} answered, {counts['reused']} reused, "
              f"{counts['failed']} failed -> {args.out}/{spec.name}.json", file=sys.stderr)
        if counts["failed"]:
            forget_stamp(Path(args.out), spec.name)
        failures += counts["failed"] > 0 and counts["answered"] + counts["reused"] == 0
    return 1 if failures else 0


def forget_stamp(out_dir: Path, name: str) -> None:
    """Remove make's stamp of a model with failed questions, so the next `make` retries them."""
    with contextlib.suppress(OSError):
        (out_dir / "stamps" / f"{name}.json").unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
