"""Explained labelled judging speed, one decode per call against the two-pass path, beside
llama.cpp's own tools: the rows `make bench-judge` adds to OUT/bench_judge.json ("labelled_judge").

    python bench/bench_labels.py --mt-bench out/sets/mt_bench-limit8.jsonl \
        --arena-hard out/sets/arena_hard-limit8.jsonl --max-tokens 128 --out out

Rows, with real prompts from the fetched sets (make data):
- mt_bench: FastChat's single grading of turn 1 (single-v1, single-math-v1 with the GPT-4
  reference) for each answering model's answer (--answer-models, written here greedily, at most
  --answer-tokens): the calls on one question share the prompt up to the answer;
- arena_hard: Arena-Hard v0.1 games, the model's answer against gpt-4-0314's, both orders.
Each row: calls, calls/s, prompt tokens, generated tokens, tokens saved by sharing, for the
one-decode path (backends/llama_label.py) and the two-pass one (LLMEVAL_LABEL_PATH=two-pass),
the speed-up, whether both gave the same labels (largest probability difference), the same for
LLMEVAL_LABEL_PATH=reuse (the explanation's cells kept, not decoded again as a chunk), and the
native equivalent: prompt tokens at llama-bench's pp512 plus generated tokens at
llama-batched-bench's S_TG for the same number of sequences (bench/build_native.sh builds them;
run here, in the same call), as a ratio (native seconds / our seconds: 1.0 = llama.cpp's speed).
Model loading is outside the timings. Not a test: nothing asserts a speed.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "bench"))

from lib.records import read_json, write_json_atomic  # noqa: E402

MODELS = ROOT / "models"


def answers_for(models: list[str], questions: list[dict], max_tokens: int, models_toml: Path) -> dict[str, list[str]]:
    """{model: [turn-1 answer per question]}, greedy, on the batched llama.cpp backend, with the
    models' own models.toml settings (chat template) but `max_tokens` and temperature 0."""
    from dataclasses import replace

    from backends.llama_backend import LlamaBackend
    from lib.registry import load_registry

    registry = load_registry(models_toml)
    got = {}
    for name in models:
        spec = registry.get(name)
        backend = LlamaBackend(replace(spec, max_tokens=max_tokens, temperature=0.0))
        try:
            plain = [{"instruction": q["turns"][0] if q.get("turns") else q["instruction"]} for q in questions]
            out = dict(backend.answer(plain))
        finally:
            backend.close()
        got[name] = [out.get(k, {}).get("output", "") for k in range(len(questions))]
    return got


def mt_bench_calls(path: Path, answers: dict[str, list[str]], max_tokens: int):
    from board.graded.board import load_graded_questions
    from board.graded.mt_bench import load_judge_prompts, single_calls
    from lib.benchsets import set_info

    questions = load_graded_questions(path)
    prompts = load_judge_prompts(set_info(path)["files"]["judge_prompts"])
    return [single_calls(prompts, q, [outs[k]], max_tokens)[0][2] for k, q in enumerate(questions)
            for outs in answers.values()]


def arena_calls(path: Path, answer: list[str], max_tokens: int):
    from board.arena_hard.judge import labelled_call, load_judge_config
    from judges.cache import Call
    from lib.benchsets import set_info
    from lib.records import load_questions

    questions = load_questions(path)
    info = set_info(path)
    config = load_judge_config(info["files"]["judge_config"])
    baseline = {r["instruction"]: r["output"] for r in read_json(path.with_name(path.stem + ".reference.json"))}
    calls = []
    for k, q in enumerate(questions):
        base = baseline[q["instruction"]]
        calls += [labelled_call(config, Call(q["instruction"], base, answer[k]), False, max_tokens),
                  labelled_call(config, Call(q["instruction"], answer[k], base), False, max_tokens)]
    return calls


def run_path(judge, calls, path: str) -> dict:
    os.environ["LLMEVAL_LABEL_PATH"] = path
    started = time.perf_counter()
    got = dict(judge.label(calls))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "results": got, "stats": dict(judge.last_stats)}


def agreement(calls, got: dict, two_pass: dict) -> tuple[int, list[float]]:
    """(calls with the same explanation and label as the two-pass path, largest probability differences)."""
    same, diffs = 0, []
    for c in calls:
        a, b = got["results"].get(c, {}), two_pass["results"].get(c, {})
        if "probs" in a and "probs" in b:
            diffs.append(max(abs(a["probs"][o] - b["probs"][o]) for o in c.options))
            same += a["label"] == b["label"] and a["judgment"] == b["judgment"]
    return same, diffs


def native_rates(bin_dir: Path, model: Path, parallel: int, n_prompt: int, n_gen: int) -> dict:
    from native import NativeError, batched_bench, llama_bench_pp

    threads = max((os.cpu_count() or 1) // 2, 1)
    try:
        pp = llama_bench_pp(bin_dir, model, os.cpu_count() or 1, 0, False, repetitions=2)
        rows = batched_bench(bin_dir, model, [parallel], n_prompt, n_gen, threads, os.cpu_count() or 1, 0, False)
        return {"pp512_tokens_per_s": pp["prompt_tokens_per_s"], "s_tg_tokens_per_s": rows[0]["tokens_per_s"],
                "parallel": parallel, "npp": n_prompt, "ntg": n_gen}
    except NativeError as err:
        return {"missing": str(err)}


def bench_row(name: str, judge, calls, max_tokens: int, bin_dir: Path | None, model: Path) -> dict:
    prompt_tokens = sum(len(judge.tokens(c.messages())) for c in calls)
    new = run_path(judge, calls, "")
    old = run_path(judge, calls, "two-pass")
    reuse = run_path(judge, calls, "reuse")  # the explanation's own cells kept: faster, not exact
    os.environ.pop("LLMEVAL_LABEL_PATH", None)
    (same, diffs), (reuse_same, reuse_diffs) = agreement(calls, new, old), agreement(calls, reuse, old)
    stats = new["stats"]
    generated = stats.get("generated", 0)
    row = {"set": name, "calls": len(calls), "max_tokens": max_tokens, "prompt_tokens": prompt_tokens,
           "generated_tokens": generated, "parallel": stats.get("parallel"),
           "tokens_saved": stats.get("prompt_tokens_saved", 0),
           "context_tokens_not_decoded_again": stats.get("context_tokens_saved", 0),
           "one_decode": {"seconds": round(new["seconds"], 2), "calls_per_s": round(len(calls) / new["seconds"], 4),
                          "prompt_decoded": stats.get("prompt_decoded"), "context_decoded": stats.get("context_decoded"),
                          "path_tokens": stats.get("path_tokens")},
           "two_pass": {"seconds": round(old["seconds"], 2), "calls_per_s": round(len(calls) / old["seconds"], 4)},
           "speed_up": round(old["seconds"] / new["seconds"], 2),
           "same_judgment_and_label": f"{same}/{len(calls)}", "probs_max_abs_diff": max(diffs) if diffs else None,
           "reuse": {"seconds": round(reuse["seconds"], 2), "calls_per_s": round(len(calls) / reuse["seconds"], 4),
                     "same_judgment_and_label": f"{reuse_same}/{len(calls)}",
                     "probs_max_abs_diff": max(reuse_diffs) if reuse_diffs else None}}
    if bin_dir is not None:
        native = native_rates(bin_dir, model, stats.get("parallel") or 1, max(prompt_tokens // len(calls), 1),
                              max(generated // len(calls), 1))
        if "pp512_tokens_per_s" in native:
            seconds = prompt_tokens / native["pp512_tokens_per_s"] + generated / native["s_tg_tokens_per_s"]
            native["seconds"] = round(seconds, 2)
            row["ratio_to_native"] = round(seconds / new["seconds"], 3)
            row["two_pass_ratio_to_native"] = round(seconds / old["seconds"], 3)
            row["reuse"]["ratio_to_native"] = round(seconds / reuse["seconds"], 3)
        row["native"] = native
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mt-bench", type=Path, help="a normalized MT-Bench set (make data QUESTIONS=mt_bench LIMIT=N)")
    parser.add_argument("--arena-hard", type=Path, help="a normalized Arena-Hard v0.1 set (QUESTIONS=arena_hard)")
    parser.add_argument("--judge-model", type=Path, default=MODELS / "SmolLM2-135M-Instruct.Q4_1.gguf")
    parser.add_argument("--answer-models", nargs="+", default=["smollm2_135m", "gemma3_270m"],
                        help="models.toml names of llama.cpp models that write the graded answers")
    parser.add_argument("--models-toml", type=Path, default=ROOT / "models.toml")
    parser.add_argument("--answer-tokens", type=int, default=96)
    parser.add_argument("--max-tokens", type=int, default=128, help="the explanation cap")
    parser.add_argument("--chat-template", help="the judge's chat template, when its GGUF has none (a synthetic model)")
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--parallel", type=int, default=0)
    parser.add_argument("--native-bin", type=Path, help="llama.cpp's tools (bench/build_native.sh prints the folder)")
    parser.add_argument("--machine", default=None, help="words for the machine (e.g. 'shared by 8 jobs')")
    parser.add_argument("--out", type=Path, default=Path("out"))
    args = parser.parse_args(argv)
    from board.graded.board import load_graded_questions
    from judges.resolve import resolve_judge
    from lib.records import load_questions
    from lib.registry import load_registry

    if not (args.mt_bench or args.arena_hard):
        parser.error("give --mt-bench and/or --arena-hard (make data QUESTIONS=... LIMIT=...)")
    sets = [(n, p) for n, p in (("mt_bench", args.mt_bench), ("arena_hard", args.arena_hard)) if p]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-labels-") as tmp:
        folder = Path(tmp)
        template = f"chat_template = {json.dumps(args.chat_template)}\n" if args.chat_template else ""
        (folder / "models.toml").write_text(f'[models.judge]\npath = "{args.judge_model.resolve()}"\n'
                                            f'n_ctx = {args.n_ctx}\nparallel = {args.parallel}\n{template}', encoding="utf-8")
        judge = resolve_judge("judge", load_registry(folder / "models.toml"), folder)
        for name, path in sets:
            questions = load_graded_questions(path) if name == "mt_bench" else load_questions(path)
            models = args.answer_models if name == "mt_bench" else args.answer_models[:1]
            print(f"{name}: answering {len(questions)} questions with {len(models)} model(s)...", file=sys.stderr, flush=True)
            kept = args.out / "bench-labels" / f"{path.stem}-answers{args.answer_tokens}.json"
            answers = read_json(kept) if kept.is_file() else {}  # written once, reused by later runs
            if sorted(answers) != sorted(models):
                answers = answers_for(models, questions, args.answer_tokens, args.models_toml)
                write_json_atomic(kept, answers)
            calls = (mt_bench_calls(path, answers, args.max_tokens) if name == "mt_bench"
                     else arena_calls(path, next(iter(answers.values())), args.max_tokens))
            judge._load()
            print(f"{name}: {len(calls)} labelled calls, three paths...", file=sys.stderr, flush=True)
            rows.append(bench_row(name, judge, calls, args.max_tokens, args.native_bin, args.judge_model))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        judge.close()
    cpu = platform.processor() or platform.machine()
    result = {"model": args.judge_model.name, "rows": rows,
              "machine": args.machine or f"{cpu}, {os.cpu_count()} cores",
              "date": datetime.date.today().isoformat()}
    path = args.out / "bench_judge.json"
    bench = read_json(path) if path.is_file() else {}
    bench["labelled_judge"] = result
    write_json_atomic(path, bench)
    print(json.dumps(result, indent=1))
    print(f"-> {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
