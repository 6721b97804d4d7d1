"""Make the reference answers every model is compared with: OUT/reference.json.

    python tools/reference.py out/smollm2_135m.json --out out/reference.json
    python tools/reference.py --set out/sets/alpaca_eval.jsonl --out out/reference.json

The reference is one model's answer file (make answers it like any other model), with failed
answers left out; or the answers a benchmark set brings (AlpacaEval's gpt4_1106_preview,
Arena-Hard's gpt-4-0314), named by the set's sidecar, with no model run. The original guide used
gpt-3.5-turbo here; offline it is a local model.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lib.benchsets import set_info
from lib.records import InputError, load_questions, merge_outputs, question_key, read_json, write_json_atomic


def set_reference(questions_path: Path) -> list[dict]:
    """The set's own reference answers, one per question of this (possibly LIMITed) file."""
    info = set_info(questions_path)
    if not info or not info.get("reference_outputs"):
        raise InputError(f"{questions_path}: this question set brings no reference of its own; "
                         f"set REFERENCE=<a model in models.toml>")
    reference = read_json(info["reference_outputs"])
    by_key = {question_key(r): r for r in reference}
    questions = load_questions(questions_path)
    missing = [q for q in questions if question_key(q) not in by_key]
    if missing:
        raise InputError(f"{info['reference_outputs']}: no reference answer for {len(missing)} question(s) of "
                         f"{questions_path}; run make data again")
    return [by_key[question_key(q)] for q in questions]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("answers", nargs="?", type=Path, help="the reference model's answer file (OUT/NAME.json)")
    parser.add_argument("--set", type=Path, metavar="QUESTIONS", help="a set's questions file: use its own reference")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        if args.set:
            reference = set_reference(args.set)
        elif args.answers:
            reference = merge_outputs([args.answers])
        else:
            raise InputError("name the reference model's answer file, or --set QUESTIONS")
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    source = args.set or args.answers
    if not reference:
        print(f"error: {source} has no answers to use as the reference; run make infer", file=sys.stderr)
        return 1
    write_json_atomic(args.out, reference)
    print(f"reference: {len(reference)} answers of {reference[0]['generator']} -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
