"""Judge every model against the reference, both orders, and write the board's views.

    python tools/board --outputs out/output.json --reference out/reference.json --judge smollm2_135m --out out
    python tools/board ... --judge judge_a judge_b judge_c --versus all   # several judges, model vs model
    python tools/board --show out/board.csv      # print an existing board (make board does)
    python tools/board --check-judge --judge chatgpt_fn   # stop early if the judge can't run

For each model and question the judge sees the model's answer and the reference's twice, once
in each order (tools/judges/: protocols, cache, resume); the numbers come from
tools/board/stats.py and the views from tools/board/views.py. It writes, under OUT:
board.csv (last: it is make's target), board.md, board.png, board.html, board_pairs.json (every
pair with both verdicts) and manifest.json (models and their file hashes, backends, versions,
settings, judge, question-set hash, timings; never an API key).

When a judge call fails the board is still written, the pair is left out and counted in
n_failed, and board.csv is dated 1970 so that the next `make board` runs again and retries only
the failed calls. With several judges each judges every pair (its own cache entries) and the
board uses their mean preference (tools/board/ensemble.py); with --versus all the models are also
judged against each other, both orders, for the Bradley-Terry fit. With --protocol arena_hard
(the default of the Arena-Hard sets) the judge plays Arena-Hard-Auto's two games per prompt and
the board gets its scores and files (board/arena_board.py); a set with a published leaderboard
gets it beside ours (board/published.py). Not handled: several reference models.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import arguments
from board.provenance import provenance
from records import InputError, json_bytes, question_key, read_json, write_json_atomic as write_json, write_together
from registry import load_registry
from benchsets import set_info

ROOT = Path(__file__).resolve().parent.parent.parent
def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_answers(path: Path) -> list[dict]:
    records = read_json(path)
    if not isinstance(records, list) or not all(
            isinstance(r, dict) and isinstance(r.get("instruction"), str) and isinstance(r.get("output"), str)
            and isinstance(r.get("generator"), str) for r in records):
        raise InputError(f"{path}: expected a list of alpaca_eval records (instruction, output, generator); "
                         "make it again with make merge / make reference")
    return records


def make_pairs(outputs: list[dict], reference: list[dict]):
    """Pair every model answer with the reference's answer to the same question."""
    from judges import Pair

    ref_by_question = {question_key(r): r for r in reference}
    question_ids = {key: i for i, key in enumerate(ref_by_question)}
    pairs, unpaired = [], Counter()  # model -> answers without a reference answer
    for record in outputs:
        key = question_key(record)
        ref = ref_by_question.get(key)
        if ref is None:  # the reference failed on this question, or was made from other questions
            unpaired[record["generator"]] += 1
            continue
        instruction = record["instruction"] + (f"\n\n{record['input']}" if record.get("input") else "")
        pairs.append(Pair(record["generator"], instruction, record["output"], ref["output"], question_ids[key]))
    return pairs, unpaired


def last_check(out_dir: Path, judge) -> dict | None:
    """The last `make judge-check` of this judge (by name), marked current if its identity matches."""
    from judge_check import check_path

    path = check_path(out_dir, judge.name)
    try:
        check = read_json(path) if path.exists() else None
    except InputError:
        return None
    if not isinstance(check, dict):
        return None
    summary = {k: check.get(k) for k in ("accuracy", "accuracy_right_first", "accuracy_right_second",
                                          "consistency", "n_pairs", "created", "judge_id")}
    summary["current"] = check.get("judge_id") == judge.judge_id
    return summary


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version(), "platform": platform.platform()}
    for package in ("alpaca-eval", "llama_cpp_python", "scipy", "scikit-learn", "pandas", "numpy",
                    "matplotlib", "openai", "transformers", "torch"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    # llama-cpp-python vendors one llama.cpp commit: its version names it.
    found["llama.cpp"] = f"as vendored by llama-cpp-python {found.get('llama_cpp_python', '?')}"
    try:
        found["llmeval_commit"] = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                                                 text=True, timeout=10).stdout.strip() or None
    except OSError:
        found["llmeval_commit"] = None
    return found


def question_set(reference: list[dict], outputs: list[dict], questions: Path | None) -> dict:
    keys = sorted({question_key(r) for r in [*reference, *outputs]})
    info = {"n": len({question_key(r) for r in reference}),
            "set_sha256": hashlib.sha256(json.dumps(keys, ensure_ascii=False).encode("utf-8")).hexdigest()}
    if questions is not None and questions.is_file():
        info["file"] = str(questions)
        info["file_sha256"] = hashlib.sha256(questions.read_bytes()).hexdigest()
    return info


def show(board_path: Path) -> int:
    """Print a board.csv as a table, with the judge, the reference and the warnings."""
    import pandas as pd

    from board.views import table_text

    try:
        manifest = read_json(board_path.with_name("manifest.json"))
        if isinstance(manifest, dict) and manifest.get("protocol") == "grade":  # the graded board
            from board.graded import show as show_graded
            return show_graded(board_path)
        board = pd.read_csv(board_path, index_col="model")
        about, warnings = manifest["about"], manifest["warnings"]
    except (FileNotFoundError, ValueError, KeyError, TypeError, InputError) as err:
        print(f"error: cannot read {board_path} ({err}); run make board", file=sys.stderr)
        return 2
    print(f"\nLeaderboard -> {board_path} (also board.md, board.html, board.png)")
    print(table_text(board, about, warnings))
    return 0


def comparisons(results: list[dict], reference: str, battles: list[dict]) -> dict:
    """Model against model (paired bootstrap) and Bradley-Terry over every battle, for the views."""
    from board.compare import bradley_terry, reference_battles, versus_table

    models = [m for m in dict.fromkeys(r["model"] for r in results) if m != reference]
    return {"versus": versus_table(results, models),
            "bt": bradley_terry(reference_battles(results, reference) + battles, reference)}


def judge_about(judge, results: list[dict], check) -> dict:
    from board.stats import judge_consistency

    consistency, n_swapped = judge_consistency(results)
    return {"name": judge.name, "kind": judge.kind, "protocol": judge.protocol, "judge_id": judge.judge_id,
            "identity": judge.identity, "position_consistency": None if consistency != consistency else
            round(consistency, 2), "n_pairs_judged": n_swapped, "last_check": check}


def build_board(args, registry, judges: list) -> int:
    import pandas as pd

    from judge_human import human_summary

    from board.ensemble import ensemble_summary, judge_everything, versus_pairs
    from board.stats import board_table, by_dataset, judge_consistency, warnings_for, MIN_CONSISTENCY
    from board.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED
    from board.compare import BT_RESAMPLES, CI_LABEL, RESAMPLES
    from board.lc import LC_METHOD
    from board.views import csv_bytes, view_files
    started = time.monotonic()
    outputs, reference = load_answers(args.outputs), load_answers(args.reference)
    if not outputs:
        raise InputError(f"{args.outputs} holds no answers; run make infer")
    if not reference:
        raise InputError(f"{args.reference} holds no answers; run make reference")
    pairs, unpaired = make_pairs(outputs, reference)
    if not pairs:
        raise InputError(f"no model answer shares a question with {args.reference}; were they made "
                         "from the same QUESTIONS?")
    ref_name = reference[0]["generator"]
    models = [m for m in dict.fromkeys(r["generator"] for r in outputs) if m != ref_name]
    question_ids = {key: i for i, key in enumerate(dict.fromkeys(question_key(r) for r in reference))}
    battles = versus_pairs(outputs, question_ids, models) if args.versus == "all" else []
    info = set_info(args.questions) if args.questions else None
    protocol = args.protocol or (info or {}).get("protocol") or "pairwise"
    arena = None
    if protocol == "arena_hard":  # Arena-Hard-Auto's two games and five labels (board/arena_board.py)
        from board.arena_board import judge_arena
        judged, arena = judge_arena(judges, pairs, reference, args.out, info, args.fast, log, args.questions)
    else:
        judged = judge_everything(judges, pairs, battles, args.out, progress=log)
    results, stats = judged.results, judged.stats
    for error in stats["errors"][:3]:
        log(f"judge call failed: {error}")

    board = board_table(results)
    compare = comparisons(results, ref_name, judged.battles)
    compare["by_dataset"] = by_dataset(results, {question_ids[question_key(r)]: str(r.get("dataset") or "")
                                                 for r in reference})
    consistency, n_swapped = judge_consistency(results)
    checks = {j.name: last_check(args.out, j) for j in judges}
    current = {name: c if c and c["current"] else None for name, c in checks.items()}
    n_questions = len({question_key(r) for r in reference})
    if len(judges) == 1:
        judge_info = judge_about(judges[0], results, checks[judges[0].name])
        judge_info["human_agreement"] = human_summary(args.out, judges[0].name)  # make judge-check PAIRS=set
        if arena:
            judge_info["protocol"] = f"Arena-Hard-Auto v0.1, labels read from {arena['about']['labels_from']}" + \
                (", fast: no explanation" if args.fast else "")
    else:
        judge_info = {"name": " + ".join(j.name for j in judges), "kind": "ensemble",
                      "protocol": "mean preference of the judges", "last_check": None,
                      "position_consistency": None if pd.isna(consistency) else round(consistency, 2),
                      "n_pairs_judged": n_swapped}
    by_judge, agreement, ensemble_warnings = ensemble_summary(judged, judges, current)
    about = {"judge": judge_info, "reference": ref_name, "n_questions": n_questions, "protocol": protocol,
             "versus": args.versus, "n_battles_between_models": len(judged.battles)}
    if info:
        about["set"] = {k: info.get(k) for k in ("name", "protocol", "reference_name", "published", "limit", "notes")}
    from board.arena_board import extra_sections
    compare["sections"] = extra_sections(info, board, judge_info["name"], arena and arena["table"],
                                         arena and arena["about"])
    if arena:
        about["arena_hard"] = {k: v for k, v in arena["about"].items()}
    if len(judges) > 1:
        about["judges"] = [{**judge_about(j, [r for r in judged.by_judge[j.name] if "opponent" not in r], checks[j.name]),
                            "human_agreement": human_summary(args.out, j.name)} for j in judges]
        about["judge_agreement"] = agreement.to_dict("records")
        compare.update(by_judge=by_judge, agreement=agreement)
    warnings = warnings_for(board, consistency, n_swapped, judge_info["name"], n_questions,
                            current[judges[0].name] if len(judges) == 1 else None) + ensemble_warnings
    low_consistency = bool(n_swapped) and consistency < MIN_CONSISTENCY
    entries, provenance_warnings = provenance(registry, outputs, reference, unpaired, args.out)
    warnings += provenance_warnings
    if stats["failed"] and stats["errors"]:  # why those pairs have none (a weak judge's replies, a server)
        warnings.append(f"{stats['failed']} judge calls gave no verdict ({stats['errors'][0]}); "
                        "make board asks them again")

    out = args.out
    manifest = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "about": about,
        "warnings": warnings,
        "models": entries,
        "questions": {**question_set(reference, outputs, args.questions), "n_pairs": len(pairs),
                      "n_model_answers_without_reference": sum(unpaired.values())},
        "judge_calls": {**stats, "errors": stats["errors"][:10], "seconds": round(stats["seconds"], 2)},
        "settings": {"both_orders": True, "combine": "mean of P(model better) over the two orders",
                     "ci": f"percentile bootstrap 95%, {BOOTSTRAP_RESAMPLES} resamples, seed {BOOTSTRAP_SEED}",
                     "lc": LC_METHOD,
                     "min_consistency": MIN_CONSISTENCY,
                     "versus": f"win-rate difference of every two models, {CI_LABEL} (paired, {RESAMPLES} "
                               "resamples); p_a_ahead: % of resamples where A is ahead",
                     "bradley_terry": f"strength (logit, reference 0) over every battle, {CI_LABEL} "
                                      f"({BT_RESAMPLES} resamples)"},
        "versions": versions(),
        "timings": {"board_seconds": round(time.monotonic() - started, 2),
                    "judging_seconds": round(stats["seconds"], 2)},
    }
    # Every file of the board changes together: written whole first, then renamed (board.csv last,
    # make's target, so a crash before it re-runs the stage). A full disk leaves the last board whole.
    views, stale = view_files(board, about, warnings, results, out, low_consistency, compare)
    board_path = out / "board.csv"
    write_together({out / "board_pairs.json": json_bytes(results), out / "manifest.json": json_bytes(manifest),
                    **views, board_path: csv_bytes(board)})
    for path in stale:
        path.unlink(missing_ok=True)
    failed = int(board["n_failed"].sum())
    if failed:
        os.utime(board_path, (0, 0))  # out of date for make: the next make board retries the failed calls
    log(f"board: {len(board)} models -> {board_path} (+ board.md, board.png, board.html, manifest.json); "
        f"judge calls: {stats['made']} made, {stats['reused_from_cache']} from cache, {stats['failed']} failed")
    if failed:
        log(f"WARNING: {failed} pairs have no verdict; run make board again to retry them")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = arguments.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show", type=Path, metavar="BOARD_CSV", help="only print an existing board")
    parser.add_argument("--outputs", type=Path, help="merged answers (OUT/output.json)")
    parser.add_argument("--reference", type=Path, help="reference answers (OUT/reference.json)")
    parser.add_argument("--questions", type=Path, help="the questions file (recorded in the manifest)")
    parser.add_argument("--judge", nargs="+", help="a model from models.toml, an alpaca_eval annotator config, "
                                                   "or a path to an annotator configs.yaml; several: their mean")
    parser.add_argument("--versus", choices=["all", "none", ""], default="",
                        help="all: also judge every two models against each other (both orders)")
    parser.add_argument("--models-toml", default="models.toml")
    parser.add_argument("--out", default="out", type=Path)
    parser.add_argument("--check-judge", action="store_true", help="only check that the judge can run")
    parser.add_argument("--protocol", choices=["pairwise", "arena_hard", "grade", ""], default="",
                        help="how the judge compares (default: the question set's own, else pairwise); grade: rate "
                             "each answer 1-10 (board/graded.py) instead of comparing with the reference")
    parser.add_argument("--answers", type=Path, nargs="+", help="grade: each model's answers (OUT/NAME.json)")
    parser.add_argument("--grader", choices=["mt_bench", "alignbench", "own"],
                        help="grade: the prompt (default: the question set's, else the project's own)")
    parser.add_argument("--fast", action="store_true",
                        help="arena_hard and grade, local judges: the label without an explanation")
    args = parser.parse_args(argv)
    # matplotlib (the chart; alpaca_eval imports it too) would create ~/.config/matplotlib: its
    # config and font cache go under OUT instead, unless the user chose a folder.
    os.environ.setdefault("MPLCONFIGDIR", str(Path(args.out).resolve() / "judge" / "matplotlib"))
    if args.show:
        return show(args.show)
    graded = args.protocol == "grade"
    if not args.judge or not args.check_judge and not (graded and args.answers and args.questions) and \
            not (not graded and args.outputs and args.reference):
        parser.error("--outputs, --reference and --judge are required (--protocol grade: --answers, --questions "
                     "and --judge), or --show BOARD_CSV")
    from judges import resolve_judge, run_reporting_errors

    def work() -> int:
        registry = load_registry(args.models_toml)
        judges = [resolve_judge(name, registry, args.out, check_only=args.check_judge)
                  for name in dict.fromkeys(args.judge)]
        if args.check_judge:
            return 0
        if graded:
            from board.graded import build_graded
            return build_graded(args, registry, judges[0])
        return build_board(args, registry, judges)

    return run_reporting_errors("making the board", work)
