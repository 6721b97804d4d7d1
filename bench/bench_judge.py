"""Judging speed, side by side in one run: `make bench-judge` -> OUT/bench_judge.json.

    python bench/bench_judge.py --answers out/bench-judge --models smollm2_135m gemma3_270m --out out

(1) A local judge (the embedded SmolLM2 by default) on the same judge prompts: real pairs of two
    models' answers to the same questions (both orders; --calls of them, 64 by default):
    (a) the path before tools/judges/: `python -m llama_cpp.server` on 127.0.0.1, one request at
        a time, one token under a grammar with the top-20 logprobs (the server reuses the prompt
        start it shares with the previous request);
    (b) tools/judges/llama_judge.py: in-process, batched, shared starts decoded once.
    calls/s, prompt tokens/s (the prompts' tokens, whatever was shared), the verdicts' largest
    difference, and (b) as a share of llama-bench's pp512 on this machine when a native
    llama-bench is found (the one `make bench` builds under ~/.cache/llmeval-wheels).
(2) An API judge (tools/judges/api_judge.py) against bench/judge_api_server.py: real logprobs of
    the same model, a fixed added latency per request (--latency, 250 ms) and 429 + Retry-After
    for a share of the requests (--share-429): concurrency 16 vs 1; every call must end with a
    verdict.
Model loading and server start-up are outside the timings. Not a test: nothing asserts a speed.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "bench"))

from judges.cache import Call  # noqa: E402
from judges.resolve import resolve_judge  # noqa: E402
from judges.prompt import make_messages, parse_logprob_reply, prompt_template  # noqa: E402
from lib.records import read_json, write_json_atomic  # noqa: E402
from lib.registry import load_registry  # noqa: E402

DEFAULT_JUDGE = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def judge_calls_from_answers(folder: Path, models: list[str], n: int) -> list[Call]:
    """Both orders of each (model A, model B) pair of answers to one question, in question order."""
    answers = [{(r["instruction"], r.get("input", "")): r["output"] for r in read_json(folder / f"{m}.json")
                if not r.get("error")} for m in models]
    calls = []
    for key in answers[0]:
        outs = [a.get(key) for a in answers]
        if all(outs) and outs[0].strip() != outs[1].strip():
            instruction = key[0] + (f"\n\n{key[1]}" if key[1] else "")
            calls += [Call(instruction, outs[0], outs[1]), Call(instruction, outs[1], outs[0])]
    if len(calls) < n:
        print(f"note: only {len(calls)} judge calls from {folder} (asked for {n})", file=sys.stderr)
    return calls[:n]


def judge_calls_from_check_pairs(path: Path, n: int) -> list[Call]:
    """Both orders of data/judge_check.jsonl's pairs (real right and wrong answers, shorter prompts)."""
    from judge_check import load_check_pairs

    calls = [c for p in load_check_pairs(path) for c in (Call(p["instruction"], p["right"], p["wrong"]),
                                                         Call(p["instruction"], p["wrong"], p["right"]))]
    return calls[:n]


def bench_server(spec, calls: list[Call], log: Path) -> dict:
    from llama_server import judge_server

    template = prompt_template()
    with judge_server(spec, log) as base_url:
        def ask(call):
            body = {"model": spec.name, "messages": make_messages(call, template), "max_tokens": 1, "temperature": 0,
                    "logprobs": True, "top_logprobs": 20, "grammar": 'root ::= "m" | "M"'}
            request = urllib.request.Request(f"{base_url}/chat/completions", data=json.dumps(body).encode("utf-8"),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=600) as reply:
                return parse_logprob_reply(json.load(reply))
        ask(Call("warm-up", "a", "b"))
        started = time.perf_counter()
        verdicts = [ask(c) for c in calls]
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "verdicts": [v.get("preference") for v in verdicts]}


def bench_in_process(judge, calls: list[Call]) -> dict:
    judge._load()
    list(judge.judge([Call("warm-up", "a", "b")]))
    started = time.perf_counter()
    got = dict(judge.judge(calls))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "verdicts": [got[c].get("preference") for c in calls], "stats": judge.last_stats,
            "logits": {c: (got[c]["logits"]["m"], got[c]["logits"]["M"]) for c in calls if "logits" in got[c]}}


def llama_bench_pp512(model: Path) -> dict:
    """llama.cpp's own prompt-processing rate (pp512) from a native llama-bench, if one was built."""
    found = sorted((Path.home() / ".cache" / "llmeval-wheels").rglob("llama-bench"))
    found = [p for p in found if p.is_file()]
    if not found:
        return {"missing": "no native llama-bench under ~/.cache/llmeval-wheels (make bench builds it)"}
    try:
        run = subprocess.run([str(found[0]), "-m", str(model), "-p", "512", "-n", "0", "-o", "json"],
                             capture_output=True, text=True, timeout=600)
        rows = json.loads(run.stdout)
        return {"binary": str(found[0]), "pp512_tokens_per_s": float(rows[0]["avg_ts"])}
    except (OSError, ValueError, KeyError, IndexError, subprocess.TimeoutExpired) as err:
        return {"missing": f"llama-bench at {found[0]} failed: {err}"}


def bench_api(model: Path, calls: list[Call], logits: dict, latency: float, share_429: float, folder: Path) -> dict:
    """`logits`: call -> (logit m, logit M) from the in-process run, so the endpoint answers at
    once (its model is not what is timed here: the client's concurrency is)."""
    import math

    from judge_api_server import judge_api_server

    results = {}
    memo = {}
    for call, (lm, lM) in logits.items():
        top = max(lm, lM)
        norm = top + math.log(math.exp(lm - top) + math.exp(lM - top))
        memo[json.dumps(make_messages(call, prompt_template()), ensure_ascii=False)] = (lm - norm, lM - norm)
    with judge_api_server(model, latency=latency, share_429=share_429) as server:
        server.scorer.memo.update(memo)
        for concurrency in (1, 16):
            toml = folder / f"api{concurrency}.toml"
            toml.write_text(f'[models.api]\nbackend = "openai"\nbase_url = "{server.base_url}"\napi_model = "judge"\n'
                            f'concurrency = {concurrency}\n', encoding="utf-8")
            judge = resolve_judge("api", load_registry(toml), folder)
            before = dict(server.stats)
            started = time.perf_counter()
            got = list(judge.judge(calls))
            seconds = time.perf_counter() - started
            ok = [r for _, r in got if "error" not in r]
            results[concurrency] = {"concurrency": concurrency, "calls": len(calls), "verdicts": len(ok),
                                    "lost": len(calls) - len(ok), "seconds": round(seconds, 3),
                                    "calls_per_s": round(len(ok) / seconds, 2),
                                    "requests": server.stats["requests"] - before["requests"],
                                    "answered_429": server.stats["429"] - before["429"]}
            judge.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=Path, help="a folder of NAME.json answers (make infer)")
    parser.add_argument("--pairs", type=Path, help="instead of --answers: a judge-check pairs file (data/judge_check.jsonl)")
    parser.add_argument("--models", nargs=2, default=["smollm2_135m", "gemma3_270m"])
    parser.add_argument("--judge-model", type=Path, default=DEFAULT_JUDGE)
    parser.add_argument("--calls", type=int, default=64)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--latency", type=float, default=0.25)
    parser.add_argument("--share-429", type=float, default=0.1)
    parser.add_argument("--out", type=Path, default=Path("out"))
    args = parser.parse_args(argv)
    if args.pairs:
        calls, source = judge_calls_from_check_pairs(args.pairs, args.calls), str(args.pairs)
    elif args.answers:
        calls, source = judge_calls_from_answers(args.answers, args.models, args.calls), f"{args.answers}: {' vs '.join(args.models)}"
    else:
        parser.error("give --answers FOLDER or --pairs FILE")
    if not calls:
        print(f"error: no judge calls from {source}; run make infer first", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-judge-") as tmp:
        folder = Path(tmp)
        (folder / "models.toml").write_text(f'[models.judge]\npath = "{args.judge_model.resolve()}"\nn_ctx = {args.n_ctx}\n',
                                            encoding="utf-8")
        judge = resolve_judge("judge", load_registry(folder / "models.toml"), folder)
        n_tokens = sum(len(judge.tokens(make_messages(c, prompt_template()))) for c in calls)
        print(f"local judge: {len(calls)} calls, {n_tokens} prompt tokens; server path...", file=sys.stderr, flush=True)
        server = bench_server(judge.spec, calls, folder / "server.log")
        print("in-process path...", file=sys.stderr, flush=True)
        ours = bench_in_process(judge, calls)
        judge.close()
        diffs = [abs(a - b) for a, b in zip(server["verdicts"], ours["verdicts"]) if a is not None and b is not None]
        pp512 = llama_bench_pp512(args.judge_model)
        local = {}
        for name, run in (("server", server), ("in_process", ours)):
            local[name] = {"seconds": round(run["seconds"], 3), "calls_per_s": round(len(calls) / run["seconds"], 3),
                           "prompt_tokens_per_s": round(n_tokens / run["seconds"], 1)}
        local["in_process"]["decoded_tokens"] = ours["stats"].get("decoded_tokens")
        local["in_process"]["parallel"] = ours["stats"].get("parallel")
        if "pp512_tokens_per_s" in pp512:
            local["in_process"]["share_of_pp512"] = round(local["in_process"]["prompt_tokens_per_s"] / pp512["pp512_tokens_per_s"], 3)
        print("API judge: concurrency 1 vs 16...", file=sys.stderr, flush=True)
        api = bench_api(args.judge_model, calls, ours["logits"], args.latency, args.share_429, folder)
    result = {
        "ratio_local_in_process_vs_server": round(server["seconds"] / ours["seconds"], 3),
        "ratio_api_concurrent_vs_serial": round(api[1]["seconds"] / api[16]["seconds"], 2),
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
        "local_judge": {"model": str(args.judge_model.name), "calls": len(calls), "calls_from": source, "prompt_tokens": n_tokens,
                        "mean_prompt_tokens": round(n_tokens / len(calls)), **local,
                        "verdicts_max_abs_diff": max(diffs) if diffs else None,
                        "verdicts_within_1e-3": sum(d <= 1e-3 for d in diffs), "verdicts_compared": len(diffs),
                        "llama_bench": pp512},
        "api_judge": {"latency_s": args.latency, "share_429": args.share_429, "serial": api[1], "concurrent": api[16]},
    }
    path = args.out / "bench_judge.json"
    write_json_atomic(path, result)
    print(json.dumps(result, indent=1))
    print(f"-> {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
