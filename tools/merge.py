"""Merge per-model answer files into one alpaca_eval file: OUT/output.json.

    python tools/merge.py out/a.json out/b.json --out out/output.json

Failed answers (records with an `error`) are left out, so the judge never sees them; a model
with no answers at all is reported.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lib.records import InputError, merge_outputs, write_json_atomic


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("answers", nargs="+", type=Path, help="per-model answer files (OUT/NAME.json)")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        merged = merge_outputs(args.answers)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    write_json_atomic(args.out, merged)
    generators = sorted({r["generator"] for r in merged})
    print(f"{len(merged)} answers from {len(generators)} models -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
