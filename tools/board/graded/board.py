"""The graded board: every model's answers rated 1-10 by the judge (single-answer grading).

    python tools/board --protocol grade --answers out/a.json out/b.json --questions out/sets/mt_bench.jsonl \
        --judge smollm2_135m --out out [--grader mt_bench|alignbench|own] [--fast]

The grader comes from the question set's sidecar (benchsets.set_info: "grader"), else --grader,
else the project's own prompt (board/graded/own_grade.py) for a plain question file. Prompts:
board/graded/mt_bench.py (FastChat's, from the fetched judge_prompts.jsonl), board/graded/alignbench.py,
board/graded/own_grade.py; the calls go through judges/labels.py (cache, concurrency, local logits).
Writes under OUT: board.csv (last: make's target; dated 1970 when a rating failed, so the next
make board retries it), board_categories.csv, board_versus.csv, board_ratings.json (every
rating with its explanation), board.md, board.png (radar), board.html, manifest.json, and the
exports fastchat/model_judgment/JUDGE_single.jsonl (MT-Bench) or alignbench/model_judgment/
MODEL.jsonl (AlignBench); with --versus all also board_pairwise.csv, board_pairwise_games.json and
fastchat/model_judgment/JUDGE_pair.jsonl.
With --versus all (make board VERSUS=all) and MT-Bench, the judge also plays FastChat's pairwise
mode between every two models (board/graded/pairs.py), in the same run of calls.
Does not handle: several judges at once (grade with each, one OUT each).
"""
from __future__ import annotations

import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from lib.benchsets import set_info
from board.protocols import OWN_GRADER, PROTOCOLS
from lib.records import InputError, load_questions, question_key, read_json, write_json_atomic

GRADERS = (*PROTOCOLS["grade"].graders, OWN_GRADER)
LOCAL_MAX_TOKENS = 512  # a local judge's explanation, at most (its models.toml max_tokens when lower)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_graded_questions(path: Path) -> list[dict]:
    """records.load_questions, with each JSONL record's own fields kept (turns, reference,
    question_id, category, meta: interface 2's normalized record)."""
    from lib.records import jsonl_items, read_text

    questions = load_questions(path)
    if Path(path).suffix.lower() != ".jsonl":
        return questions
    raw = {}
    for _, item in jsonl_items(Path(path), read_text(Path(path), "questions file not found")):
        if isinstance(item, dict) and isinstance(item.get("instruction"), str):
            raw.setdefault(question_key({**item, "instruction": item["instruction"].strip()}), item)
    return [{**raw.get(question_key(q), {}), **q} for q in questions]


def question_id(question: dict, index: int):
    return question.get("question_id", index)


def load_answers(paths: list[Path]) -> dict[str, list[dict]]:
    answers = {}
    for path in paths:
        records = read_json(path)
        if not isinstance(records, list) or not records or not all(isinstance(r, dict) for r in records):
            raise InputError(f"{path}: expected a model's answers (OUT/NAME.json); make it again with make infer")
        answers[records[0].get("generator") or Path(path).stem] = records
    return answers


def turn_outputs(record: dict) -> list[str] | None:
    """The answer per turn, or None when the model gave no answer at all (not graded: n_missing;
    a turn that failed, "" in a record with an error, is not graded either)."""
    outputs = record.get("turn_outputs") or ([record["output"]] if record.get("output") is not None else [])
    if record.get("error") and not any(outputs):
        return None
    return [o or "" for o in outputs]


def judge_max_tokens(judge) -> int:
    if not hasattr(judge, "label"):
        from judges.cache import JudgeError
        raise JudgeError(f"judge '{judge.name}' cannot grade (an alpaca_eval annotator compares two answers): "
                         "use a models.toml judge (llama.cpp, transformers or openai)")
    if judge.kind == "openai":
        from board.graded.mt_bench import API_MAX_TOKENS
        return API_MAX_TOKENS
    return min(LOCAL_MAX_TOKENS, judge.spec.max_tokens or LOCAL_MAX_TOKENS)


def build_items(grader: str, questions: list[dict], answers: dict[str, list[dict]], info: dict | None,
                max_tokens: int, fast: bool):
    """(items, n_missing): one item per graded (model, question, turn) with its call."""
    from board.graded import alignbench, mt_bench, own_grade

    files = (info or {}).get("files") or {}
    if grader == "mt_bench":
        if not files.get("judge_prompts"):
            raise InputError("the MT-Bench set names no judge_prompts file; fetch it: make data QUESTIONS=mt_bench")
        prompts = mt_bench.load_judge_prompts(files["judge_prompts"])

        def calls_for(q, outs):
            return mt_bench.single_calls(prompts, q, outs, max_tokens, fast)
    elif grader == "alignbench":
        config = alignbench.load_config(files)

        def calls_for(q, outs):
            return [(1, alignbench.PROTOCOL, alignbench.grade_call(config, q, outs[0] if outs else "", max_tokens, fast))]
    else:
        def calls_for(q, outs):
            return own_grade.grade_calls(q, outs, max_tokens, fast)
    items, missing = [], {}
    for model, records in answers.items():
        by_id = {r["question_id"]: r for r in records if "question_id" in r}
        by_key = {question_key(r): r for r in records}
        missing[model] = 0
        for index, q in enumerate(questions):
            qid = question_id(q, index)
            record = by_id.get(qid) if "question_id" in q and by_id else by_key.get(question_key(q))
            outs = turn_outputs(record) if record else None
            if outs is None:
                missing[model] += 1
                continue
            for turn, prompt_name, call in calls_for(q, outs):
                if record.get("error") and not (outs[turn - 1] if turn <= len(outs) else ""):
                    missing[model] += 1  # this turn failed to answer: not graded as an empty answer
                    continue
                items.append({"model": model, "question_id": qid, "category": q.get("category") or q.get("dataset") or "",
                              "turn": turn, "prompt": prompt_name, "call": call, "question": q, "outputs": outs})
    return items, missing


def pair_items(args, grader: str, items: list[dict], questions: list[dict], info: dict | None, judge) -> list[dict]:
    """FastChat's pairwise-all matches over the answers being graded (board/graded/pairs.py)."""
    from board.graded.pairs import match_items
    from board.graded.mt_bench import load_judge_prompts

    if grader != "mt_bench":
        raise InputError(f"VERSUS=all with a graded board needs MT-Bench's pairwise prompts; the {grader} grader "
                         "has none: leave VERSUS out, or use QUESTIONS=mt_bench")
    outputs: dict[str, dict] = {}
    for item in items:
        outputs.setdefault(item["model"], {})[item["question_id"]] = item["outputs"]
    if len(outputs) < 2:
        raise InputError("VERSUS=all compares models with each other: name two or more in MODELS")
    prompts = load_judge_prompts(info["files"]["judge_prompts"])
    return match_items(prompts, questions, outputs, judge_max_tokens(judge), args.fast)


def build_graded(args, registry, judges: list) -> int:
    """The builder of PROTOCOL=grade (tools/board/protocols.py); one judge grades (the first named)."""
    from board.graded import export as grade_export, stats as grade_stats, views as grade_views
    from judges.labels import label_calls

    judge = judges[0]
    started = time.monotonic()
    questions = load_graded_questions(args.questions)
    info = set_info(Path(args.questions))  # the set's sidecar (benchsets), None for a plain file
    grader = args.grader or (info or {}).get("grader") or OWN_GRADER
    if grader not in GRADERS:
        raise InputError(f"grader '{grader}' is not one of {', '.join(GRADERS)}")
    answers = load_answers(args.answers)
    items, missing = build_items(grader, questions, answers, info, judge_max_tokens(judge), args.fast)
    if not items:
        raise InputError("nothing to grade: no model has answers to these questions; run make infer")
    matches = pair_items(args, grader, items, questions, info, judge) if args.versus == "all" else []
    log(f"grade: {len(items)} ratings to give ({grader}, judge {judge.name}{', fast' if args.fast else ''})"
        + (f" and {len(matches)} pairwise matches, two games each" if matches else ""))
    calls = [item["call"] for item in items] + [m[g] for m in matches for g in ("g1", "g2")]
    records, stats = label_calls(judge, calls, args.out, progress=log)
    rows = []
    for item in items:
        record = records.get(item["call"])
        rows.append({k: item[k] for k in ("model", "question_id", "category", "turn", "prompt")} | {
            "score": record.get("score", float("nan")) if record else float("nan"),
            "label": record.get("label") if record else None,
            "source": record.get("source") if record else "failed",
            "written": record.get("written") if record else None,
            "judgment": record.get("judgment", "") if record else "",
            "probs": record.get("probs") if record else None,
            "truncated": bool(record.get("truncated")) if record else False})
    frame = pd.DataFrame(rows)
    board = grade_stats.board_table(frame, grader)
    board["n_missing"] = board["model"].map(missing).fillna(0).astype(int)
    categories = grade_stats.category_table(frame, grader)
    versus = grade_stats.versus_table(frame, grader)
    warnings = grade_stats.warnings_for(frame, board, grader, info, args.fast)
    pairwise, pair_failed = None, 0
    if matches:
        from board.graded import pairs as grade_pairs
        games = grade_pairs.games(matches, records)
        pairwise = grade_pairs.pair_table(games, list(answers))
        pair_failed = grade_pairs.failed_matches(pairwise)
        warnings += grade_pairs.warnings_for(pairwise)
    about = {"judge": judge.name, "judge_kind": judge.kind, "grader": grader, "set": (info or {}).get("name"),
             "questions": str(args.questions), "fast": bool(args.fast), "notes": (info or {}).get("notes") or [],
             "published": grade_views.published(info), "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    out = Path(args.out)
    exported = grade_export.write_exports(grader, items, records, judge.name, out)
    if matches:
        exported.append(grade_pairs.write(matches, games, pairwise, judge.name, out))
    grade_views.write_all(board, categories, versus, frame, items, about, warnings, out, pairwise)
    write_json_atomic(out / "manifest.json", {
        "protocol": "grade", "grader": grader, "judge": {"name": judge.name, "kind": judge.kind,
                                                          "identity": judge.identity},
        "set": info, "models": list(answers), "calls": {"made": stats.made, "reused_from_cache": stats.reused,
                                                        "failed": stats.failed, "errors": stats.errors[:5]},
        "exports": [str(p) for p in exported], "warnings": warnings,
        "pairwise": {"mode": "FastChat pairwise-all", "n_matches": len(matches), "n_failed": pair_failed} if matches else None,
        "seconds": round(time.monotonic() - started, 1), "created": about["created"]})
    board_path = out / "board.csv"
    grade_views.write_csv(board, categories, board_path)  # last: make's target
    failed = int(board["n_failed"].sum()) + pair_failed
    if failed:
        os.utime(board_path, (0, 0))  # out of date for make: the next make board retries the failed calls
    log(f"board: {len(board)} models graded -> {board_path} (+ board.md, board.png, board.html, manifest.json); "
        f"judge calls: {stats.made} made, {stats.reused} from cache, {stats.failed} failed")
    if failed:
        log(f"WARNING: {failed} ratings or pairwise games failed; run make board again to retry them")
    return 0


def show(path: Path) -> int:
    md = Path(path).with_suffix(".md")
    print(md.read_text(encoding="utf-8") if md.exists() else Path(path).read_text(encoding="utf-8"))
    return 0

