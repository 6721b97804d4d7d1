"""Run one or more models over a questions file: writes OUT/NAME.json per model.

    python tools/infer.py --questions data/llm_benchmark_tiny.txt smollm2_135m gemma3_270m

Every answer is appended to OUT/cache/NAME.jsonl the moment it is done, so a crash or Ctrl-C
loses nothing, and a rerun answers only what is missing for the same model, question and
settings (the model is not even loaded when nothing is missing). What is kept of an answer is
bounded by max_tokens, and a lone surrogate in it becomes U+FFFD (records.clean_result; the
record's `notes` say so). Questions of several turns
(conversations.py) are answered turn by turn: turn 1 of every question, then turn 2 with the
model's own turn-1 answer in the conversation, and so on, each turn cached as it is made; a failed
turn leaves the later ones unasked until the next run. Such questions also get FastChat's
model-answer file, OUT/fastchat/model_answer/NAME.jsonl. A question that fails gets an
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

from lib import arguments
from lib.conversations import start_conversation, write_fastchat
from lib.hashes import hash_cache
from lib.records import AnswerCache, clean_result, exclusive_lock, load_questions, write_atomic
from lib.stages import run_models
from lib.registry import ModelSpec, RegistryError, load_registry
from lib.settings_log import record_settings


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
    hashes = hash_cache(out_dir)  # the weights by content: new weights, new answers
    record_settings(out_dir, spec, spec.settings_id(hashes), spec.weights_id(hashes))  # for manifest.json
    cache = AnswerCache(out_dir / "cache" / f"{spec.name}.jsonl")
    conversations = [start_conversation(spec, q, lambda s: s.settings_id(hashes)) for q in questions]
    reuse(conversations, cache)
    reused = sum(1 for c in conversations if not c.waiting)
    turns_reused = sum(len(c.answers) for c in conversations)
    out_path = out_dir / f"{spec.name}.json"

    def content() -> bytes:
        done = [c.record(spec.name) for c in conversations]
        return (json.dumps(done, ensure_ascii=False, indent=2) + "\n").encode("utf-8")

    def save() -> None:  # progress on a long run, dated 1970 so that make never takes it for done
        write_atomic(out_path, content())
        os.utime(out_path, (0, 0))

    def save_if_changed() -> None:  # an unchanged NAME.json keeps its date: make redoes nothing after it
        data = content()
        if not out_path.is_file() or out_path.stat().st_mtime < 1 or out_path.read_bytes() != data:
            write_atomic(out_path, data)

    if reused < len(conversations):
        _answer(spec, conversations, cache, quiet, save)
    save_if_changed()
    write_fastchat(out_dir, spec.name, conversations)
    failed = sum(1 for c in conversations if c.error or c.waiting)
    counts = {"model": spec.name, "answered": len(conversations) - reused - failed, "reused": reused,
              "failed": failed}
    if any("turns" in q for q in questions):
        counts["turns_answered"] = sum(len(c.answers) for c in conversations) - turns_reused
        counts["turns_reused"] = turns_reused
    return counts


def kept_tokens(spec, turn: dict) -> int:
    """The max_tokens that bounds what is kept of an answer: the question's own when it has one."""
    return max(spec.max_tokens, int((turn.get("generation") or {}).get("max_tokens") or 0))


def reuse(conversations: list, cache: AnswerCache) -> None:
    """Take each conversation's turns from the cache, in order, while they are there."""
    for c in conversations:
        while c.waiting and (hit := cache.get(c.settings_id, c.next_turn())) is not None:
            c.answers.append(hit)


def _answer(spec, conversations, cache, quiet, save) -> None:
    """Ask turn 1 of every conversation, then turn 2 with the answers to turn 1, and so on; each
    answer is cached the moment it is made. A failed turn ends its conversation for this run."""
    from tqdm import tqdm

    from backends.load import load_backend

    backend = load_backend(spec)
    todo = sum(c.n_turns - len(c.answers) for c in conversations if c.waiting)
    bar = tqdm(total=todo, desc=spec.name, unit="turn" if todo > len(conversations) else "q",
               disable=quiet, file=sys.stderr)
    started, tokens, last_save = time.perf_counter(), 0, time.perf_counter()
    try:
        while True:
            reuse(conversations, cache)  # a new answer may lead to a next turn answered before
            asked = [c for c in conversations if c.waiting]
            if not asked:
                break
            turns = [c.next_turn() for c in asked]
            for local_index, result in backend.answer(turns):
                c, turn = asked[local_index], turns[local_index]
                record = c.answer_record(turn, spec.name, clean_result(result, kept_tokens(spec, turn)))
                if "error" in result:
                    why = result["error"]
                    c.error = why if c.n_turns == 1 else f"turn {len(c.answers) + 1}: {why}"
                    bar.update(c.n_turns - len(c.answers))  # the later turns are not asked this run
                else:
                    cache.add(record)
                    c.answers.append(record)
                    bar.update(1)
                tokens += record["tokens"]
                bar.set_postfix(tok_s=f"{tokens / max(time.perf_counter() - started, 1e-9):.1f}")
                if time.perf_counter() - last_save > 10:  # NAME.json shows progress on long runs
                    save()
                    last_save = time.perf_counter()
            for c, turn in zip(asked, turns):  # a backend that skipped a question must not loop forever
                if c.waiting and c.next_turn() == turn:
                    c.error = f"turn {len(c.answers) + 1}: the backend gave no answer"
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
    questions: list[dict] = []

    def prepare() -> list[ModelSpec]:
        registry = load_registry(args.models_toml)
        names = args.models or registry.default_models
        if not names:
            raise RegistryError("no models given: pass MODELS=\"a b\" or set [defaults] models")
        specs = [registry.get(name) for name in names]
        if args.parallel is not None:  # how fast, not what is answered: the settings id is unchanged
            specs = [dataclasses.replace(spec, parallel=args.parallel) for spec in specs]
        questions.extend(load_questions(args.questions))
        return specs

    def each(spec: ModelSpec) -> bool:
        counts = run_model(spec, questions, Path(args.out), args.quiet)
        turns = (f" ({counts['turns_answered']} turns answered, {counts['turns_reused']} reused)"
                 if "turns_answered" in counts else "")
        print(f"{counts['model']}: {counts['answered']} answered, {counts['reused']} reused, "
              f"{counts['failed']} failed{turns} -> {args.out}/{spec.name}.json", file=sys.stderr)
        if counts["failed"]:
            forget_stamp(Path(args.out), spec.name)
        return not (counts["failed"] > 0 and counts["answered"] + counts["reused"] == 0)

    def describe(spec: ModelSpec, err: BaseException) -> str:
        if isinstance(err, OSError):  # a full disk, a read-only OUT: answers already written are kept
            where = f"cannot use {err.filename}: {err.strerror}" if err.filename else str(err)
            return (f"model '{spec.name}': {where}; free some space or choose a writable OUT=..., "
                    "then run again (answers already written are kept)")
        return f"model '{spec.name}': {err}"  # a model that cannot load must not stop the others

    return run_models("infer", prepare, each, failures=(Exception,), describe=describe,
                      after_failure=lambda spec: forget_stamp(Path(args.out), spec.name),
                      interrupted=lambda spec: f"answers so far are kept in {args.out}/cache/{spec.name}.jsonl; "
                                               "run again to continue")


def forget_stamp(out_dir: Path, name: str) -> None:
    """Remove make's stamp of a model with failed questions, so the next `make` retries them."""
    with contextlib.suppress(OSError):
        (out_dir / "stamps" / f"{name}.json").unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
