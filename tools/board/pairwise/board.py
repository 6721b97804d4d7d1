"""The pairwise board (PROTOCOL=pairwise): every model judged against the reference, both orders.

For each model and question the judge sees the model's answer and the reference's twice, once
in each order (tools/judges/: protocols, cache, resume); the numbers come from
tools/board/pairwise/stats.py and the views from tools/board/pairwise/views.py. It writes, under OUT:
board.csv (last: it is make's target), board.md, board.png, board.html, board_pairs.json (every
pair with both verdicts) and manifest.json (models and their file hashes, backends, versions,
settings, judge, question-set hash, timings; never an API key).

When a judge call fails the board is still written, the pair is left out and counted in
n_failed, and board.csv is dated 1970 so that the next `make board` runs again and retries only
the failed calls. With several judges each judges every pair (its own cache entries) and the
board uses their mean preference (tools/board/pairwise/ensemble.py); with --versus all the models are also
judged against each other, both orders, for the Bradley-Terry fit. A set with a published
leaderboard gets it beside ours (board/published.py). Arena-Hard (board/arena_hard/board.py)
judges its own way, then writes its board with write_board(). Not handled: several reference models.
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
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from lib.benchsets import set_info
from board.provenance import provenance
from lib.records import InputError, json_bytes, question_key, read_json, write_together

ROOT = Path(__file__).resolve().parents[3]


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
    from judges.pairs import Pair

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
    from judges.identity import check_path

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
    """Print a board.csv as a table, with the judge, the reference and the warnings (tools/board/cli.py
    says why it cannot be read)."""
    import pandas as pd

    from board.pairwise.views import table_text

    manifest = read_json(board_path.with_name("manifest.json"))
    board = pd.read_csv(board_path, index_col="model")
    about, warnings = manifest["about"], manifest["warnings"]
    print(f"\nLeaderboard -> {board_path} (also board.md, board.html, board.png)")
    print(table_text(board, about, warnings))
    return 0


def comparisons(results: list[dict], reference: str, battles: list[dict]) -> dict:
    """Model against model (paired bootstrap) and Bradley-Terry over every battle, for the views."""
    from board.pairwise.compare import bradley_terry, reference_battles, versus_table

    models = [m for m in dict.fromkeys(r["model"] for r in results) if m != reference]
    return {"versus": versus_table(results, models),
            "bt": bradley_terry(reference_battles(results, reference) + battles, reference)}


def judge_about(judge, results: list[dict], check) -> dict:
    from board.pairwise.stats import judge_consistency

    consistency, n_swapped = judge_consistency(results)
    return {"name": judge.name, "kind": judge.kind, "protocol": judge.protocol, "judge_id": judge.judge_id,
            "identity": judge.identity, "position_consistency": None if consistency != consistency else
            round(consistency, 2), "n_pairs_judged": n_swapped, "last_check": check}


@dataclass
class Answers:
    """What a board built on this one starts from: the answers, paired with the reference's."""
    outputs: list[dict]
    reference: list[dict]
    pairs: list
    unpaired: Counter  # model -> answers without a reference answer
    ref_name: str
    models: list[str]
    question_ids: dict  # question_key -> index
    info: dict | None  # the set's sidecar (benchsets.set_info), None for a plain questions file


def load(args) -> Answers:
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
    info = set_info(args.questions) if args.questions else None
    return Answers(outputs, reference, pairs, unpaired, ref_name, models, question_ids, info)


def build_board(args, registry, judges: list) -> int:
    """Every pair judged in both orders by each judge (several: their mean preference); with
    --versus all also every two models against each other."""
    from board.pairwise.ensemble import judge_everything, versus_pairs

    started = time.monotonic()
    answers = load(args)
    battles = versus_pairs(answers.outputs, answers.question_ids, answers.models) if args.versus == "all" else []
    judged = judge_everything(judges, answers.pairs, battles, args.out, progress=log)
    return write_board(args, registry, judges, answers, judged, "pairwise", started)


def write_board(args, registry, judges: list, answers: Answers, judged, protocol: str, started: float,
                judge_protocol: str | None = None, about_extra: dict | None = None,
                sections: Callable | None = None) -> int:
    """The board's files from the judged pairs (ensemble.Judged). A protocol built on this board
    gives the single judge's protocol line, its own manifest entries (about_extra) and its
    sections(board, judge_name) for the views (default: the set's published leaderboard)."""
    import pandas as pd

    from board.pairwise.ensemble import ensemble_summary
    from board.pairwise.stats import board_table, by_dataset, judge_consistency, warnings_for, MIN_CONSISTENCY
    from board.pairwise.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED
    from board.pairwise.compare import BT_RESAMPLES, CI_LABEL, RESAMPLES
    from board.pairwise.lc import LC_METHOD
    from board.pairwise.views import csv_bytes, view_files
    from board.published import published_sections

    outputs, reference, pairs, unpaired = answers.outputs, answers.reference, answers.pairs, answers.unpaired
    ref_name, question_ids, info = answers.ref_name, answers.question_ids, answers.info
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
        if judge_protocol:
            judge_info["protocol"] = judge_protocol
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
    compare["sections"] = (sections(board, judge_info["name"]) if sections else
                           published_sections(info, board, judge_info["name"]))
    about.update(about_extra or {})
    if len(judges) > 1:
        about["judges"] = [judge_about(j, [r for r in judged.by_judge[j.name] if "opponent" not in r],
                                       checks[j.name]) for j in judges]
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
