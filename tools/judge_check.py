"""Check a judge on pairs with a known winner: `make judge-check`.

    python tools/judge_check.py --judge smollm2_135m --out out [--pairs my_pairs.jsonl]
    python tools/judge_check.py --judge judge_a judge_b --pairs my_pairs.jsonl   # side by side

Each line of the pairs file is {"instruction", "right", "wrong"} (plus optional "lang" and
"wrong_is"): a question and two answers a person has labelled, the better one as "right". The
default, data/judge_check.jsonl, holds 12 pairs whose wrong answer is plainly wrong, empty,
degenerate, off-topic or a refusal (English and Chinese). The judge sees every pair in both orders, through the same code,
protocol and verdict cache as the board (tools/judges/). It reports:

- accuracy: % of pairs whose combined verdict favours the right answer (a tie counts half),
  with a 95% percentile bootstrap interval over the pairs;
- accuracy with the right answer shown first, and shown second: a judge that always picks one
  position scores ~100% on one and ~0% on the other;
- consistency: % of pairs whose two verdicts pick the same answer.

The result goes to OUT/judge/checks/NAME.json, which the board's manifest and header quote.
With several judges each is checked in turn and a table puts their figures side by side.
Not handled: judging style or length; this only shows whether a judge can tell right from wrong.
"""
from __future__ import annotations

import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from lib import arguments
from board.protocols import CHECKED, DEFAULT
from judges.identity import check_path  # noqa: F401  (also judge_check's API: tests, the board's reader)
from lib.records import InputError, jsonl_items, read_text, write_json_atomic
from lib.registry import load_registry

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PAIRS = ROOT / "data" / "judge_check.jsonl"
GOOD_ACCURACY, GOOD_CONSISTENCY = 80.0, 60.0


def load_check_pairs(path: Path) -> list[dict]:
    pairs = []
    for lineno, item in jsonl_items(path, read_text(path, "pairs file not found")):
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("instruction", "right", "wrong")):
            raise InputError(f"{path}:{lineno}: needs text fields 'instruction', 'right' and 'wrong'")
        if item["right"].strip() == item["wrong"].strip():
            raise InputError(f"{path}:{lineno}: 'right' and 'wrong' are the same answer")
        pairs.append(item)
    if not pairs:
        raise InputError(f"{path}: no pairs found")
    return pairs


def run_check(judge, items: list[dict], out_dir: Path) -> dict:
    """Judge each item both orders; the right answer plays the 'model', the wrong one the reference."""
    from judges.pairs import Pair, judge_pairs

    pairs = [Pair("right", item["instruction"], item["right"], item["wrong"], i) for i, item in enumerate(items)]
    results, stats = judge_pairs(judge, pairs, out_dir, progress=lambda m: print(m, file=sys.stderr, flush=True))
    rows = []
    for item, result in zip(items, results):
        row = {"instruction": item["instruction"], "lang": item.get("lang", ""), "wrong_is": item.get("wrong_is", ""),
               "p_right_when_first": None if result["pref_model_first"] is None else 2 - result["pref_model_first"],
               "p_right_when_second": None if result["pref_reference_first"] is None else result["pref_reference_first"] - 1,
               "p_right": None if result["preference"] is None else result["preference"] - 1,
               "consistent": result["consistent"]}
        rows.append(row)
    done = [r for r in rows if r["p_right"] is not None]

    def score(values) -> float | None:
        values = [v for v in values if v is not None]
        if not values:
            return None
        return sum(1.0 if v > 0.5 + 1e-9 else 0.5 if abs(v - 0.5) <= 1e-9 else 0.0 for v in values) / len(values) * 100

    low, high = accuracy_interval([r["p_right"] for r in done])
    return {
        "judge": judge.name, "judge_id": judge.judge_id, "kind": judge.kind, "protocol": judge.protocol,
        "identity": judge.identity, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "n_pairs": len(done), "n_failed": len(rows) - len(done),
        "accuracy": score(r["p_right"] for r in done), "accuracy_ci_low": low, "accuracy_ci_high": high,
        "pairs_file": None,
        "accuracy_right_first": score(r["p_right_when_first"] for r in done),
        "accuracy_right_second": score(r["p_right_when_second"] for r in done),
        "consistency": sum(bool(r["consistent"]) for r in done) / len(done) * 100 if done else None,
        "calls": {"made": stats.made, "reused_from_cache": stats.reused, "failed": stats.failed},
        "pairs": rows,
    }


def accuracy_interval(p_right: list[float]) -> tuple[float | None, float | None]:
    """95% percentile bootstrap interval of the accuracy (a tie counts half), over the pairs."""
    import math

    import pandas as pd

    from board.pairwise.stats import bootstrap_ci

    scores = [1.0 if p > 0.5 + 1e-9 else 0.5 if abs(p - 0.5) <= 1e-9 else 0.0 for p in p_right]
    low, high = bootstrap_ci(pd.Series(scores) + 1)  # as preferences: 2 = right, 1 = wrong
    return (None, None) if math.isnan(low) else (low, high)


def side_by_side(checks: list[dict]) -> str:
    """Several judges' checks on the same pairs, one line each."""
    def pct(value) -> str:
        return "n/a" if value is None else f"{value:.0f}%"

    lines = [f"{'judge':24} {'accuracy':>8} {'95% CI':>13} {'right 1st':>9} {'right 2nd':>9} {'consistency':>11} {'pairs':>5}"]
    for c in checks:
        ci = "n/a" if c.get("accuracy_ci_low") is None else f"[{c['accuracy_ci_low']:.0f}, {c['accuracy_ci_high']:.0f}]"
        lines.append(f"{c['judge'][:24]:24} {pct(c['accuracy']):>8} {ci:>13} {pct(c['accuracy_right_first']):>9} "
                     f"{pct(c['accuracy_right_second']):>9} {pct(c['consistency']):>11} {c['n_pairs']:>5}")
    return "\n".join(lines)


def report(check: dict) -> str:
    def pct(value) -> str:
        return "n/a" if value is None else f"{value:.0f}%"

    def p(value) -> str:
        return "  -- " if value is None else f"{value:.2f}"

    lines = [f"judge-check of '{check['judge']}' ({check['kind']}, {check['protocol']}): {check['n_pairs']} pairs, "
             f"each judged in both orders; P = the judge's probability that the right answer is better",
             f"{'lang':4} {'wrong is':10} {'right 1st':>9} {'right 2nd':>9} {'both':>5}  agree  question"]
    for r in check["pairs"]:
        agree = "-" if r["consistent"] is None else ("yes" if r["consistent"] else "no")
        lines.append(f"{r['lang']:4} {r['wrong_is']:10} {p(r['p_right_when_first']):>9} {p(r['p_right_when_second']):>9} "
                     f"{p(r['p_right']):>5}  {agree:5}  {r['instruction'][:50]}")
    lines += ["",
              f"accuracy:    {pct(check['accuracy'])} (combined verdict favours the right answer; a tie counts half)"
              + ("" if check.get("accuracy_ci_low") is None else
                 f", 95% percentile bootstrap interval over the pairs [{check['accuracy_ci_low']:.0f}, "
                 f"{check['accuracy_ci_high']:.0f}]"),
              f"by order:    {pct(check['accuracy_right_first'])} with the right answer shown first, "
              f"{pct(check['accuracy_right_second'])} shown second",
              f"consistency: {pct(check['consistency'])} (both orders pick the same answer)"]
    if check["n_failed"]:
        lines.append(f"WARNING: {check['n_failed']} pairs got no verdict (judge calls failed); run again to retry them")
    acc, cons = check["accuracy"], check["consistency"]
    if acc is not None and (acc < GOOD_ACCURACY or (cons is not None and cons < GOOD_CONSISTENCY)):
        lines.append(f"WARNING: '{check['judge']}' cannot be trusted as a judge (wanted accuracy >= {GOOD_ACCURACY:.0f}% "
                     f"and consistency >= {GOOD_CONSISTENCY:.0f}%): its board would rank nothing.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = arguments.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judge", required=True, nargs="+",
                        help="a model from models.toml or an alpaca_eval annotator config; several: side by side")
    parser.add_argument("--models-toml", default="models.toml")
    parser.add_argument("--out", default="out", type=Path)
    parser.add_argument("--pairs", default=DEFAULT_PAIRS, type=Path,
                        help="JSONL of labelled pairs {instruction, right, wrong} (default: the 12 built-in)")
    parser.add_argument("--limit", type=int, help="only the first N pairs")
    parser.add_argument("--protocol", choices=CHECKED, default=DEFAULT,
                        help="grade: rate each answer alone 1-10 (tools/board/graded/check.py)")
    args = parser.parse_args(argv)
    # matplotlib (the chart; alpaca_eval imports it too) would create ~/.config/matplotlib: its
    # config and font cache go under OUT instead, unless the user chose a folder.
    os.environ.setdefault("MPLCONFIGDIR", str(Path(args.out).resolve() / "judge" / "matplotlib"))
    from judges.resolve import resolve_judge, run_reporting_errors

    def work() -> int:
        registry, items = load_registry(args.models_toml), load_check_pairs(args.pairs)[:args.limit]
        checks = []
        for name in dict.fromkeys(args.judge):
            judge = resolve_judge(name, registry, args.out)
            if args.protocol == "grade":
                from board.graded.check import grade_report, run_grade_check
                check = {**run_grade_check(judge, items, args.out, min(512, judge.spec.max_tokens or 512)
                                           if hasattr(judge, "spec") and judge.kind != "openai" else 2048),
                         "pairs_file": str(args.pairs)}
                path = check_path(args.out, judge.name).with_suffix(".grade.json")
                write_json_atomic(path, check)
                print(grade_report(check))
                print(f"-> {path}")
                continue
            check = {**run_check(judge, items, args.out), "pairs_file": str(args.pairs)}
            path = check_path(args.out, judge.name)
            write_json_atomic(path, check)
            print(report(check))
            print(f"-> {path}")
            checks.append(check)
        if len(checks) > 1:
            print(f"\nthe judges side by side, on the {len(items)} pairs of {args.pairs}:")
            print(side_by_side(checks))
        return 0

    return run_reporting_errors("checking the judge", work)


if __name__ == "__main__":
    sys.exit(main())
