"""Make the reference answers every model is compared with: OUT/reference.json.

    python tools/reference.py out/smollm2_135m.json --out out/reference.json

The reference is one model's answer file (make answers it like any other model), with failed
answers left out. The original guide used gpt-3.5-turbo here; offline it is a local model.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from records import InputError, merge_outputs, write_json_atomic


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("answers", type=Path, help="the reference model's answer file (OUT/NAME.json)")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        reference = merge_outputs([args.answers])
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not reference:
        print(f"error: {args.answers} has no answers to use as the reference; run make infer", file=sys.stderr)
        return 1
    write_json_atomic(args.out, reference)
    print(f"reference: {len(reference)} answers of {reference[0]['generator']} -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
