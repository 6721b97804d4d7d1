"""Tokens/s of three ways to answer the same questions with one GGUF model, side by side.

    python bench/bench.py [--model X.gguf] [--skip-transformers] [--out out]   (make bench)

(a) the original guide's loop: transformers `generate`, one question at a time, the GGUF loaded
    through transformers (`gguf_file=`, dequantized to fp32 on the CPU, fp16 on a GPU); slow,
    so it answers --transformers-questions (16) of --transformers-max-tokens (32) tokens, and
    beside it our transformers backend on the same questions, N per generate call for each
    --transformers-parallel N (4,8,16), with the ratio to (a) and the count of identical answers
    (bench/bench_hf.py);
(b) llama-cpp-python `create_chat_completion`, one question at a time, its default settings;
(c) ours: tools/backends/llama_backend.py, N questions decoded together, for each --parallel N.
Every engine makes exactly --max-tokens tokens per question (greedy): (a) with min_new_tokens,
(b) with a logit bias against end-of-generation tokens, (c) by not stopping at them.
tokens/s = generated tokens / wall time of the whole set, prompts included; for (c) the time
also holds tokenizing and creating the llama.cpp context (for (b) that is done before timing, so
the comparison leans against ours). For (c) also `gen_tokens_per_s`: the steps that only
generate, what llama-batched-bench's S_TG measures. Model loading and one short warm-up per
engine are outside the timing. --repeat K keeps each engine's fastest of K runs (a busy CPU).
Writes OUT/bench.json. With --native-bin DIR (make bench passes bench/build_native.sh's folder)
llama.cpp's own llama-batched-bench (same N, prompt length and max tokens, same threads and
flash-attention setting) and llama-bench pp512 run in the same call, and ours is reported as a
share of each: generation-only steps / S_TG, and our prompt speed on one 512-token prompt /
pp512 (--llama-batched-bench FILE reads saved jsonl lines instead). Not a test: nothing here
asserts a speed.
Imports for (b) and (c) are llama_cpp, numpy and the project's tools only (the GPU image has
no tqdm); torch and transformers only for (a).
"""
from __future__ import annotations

import argparse
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

import native  # noqa: E402
from lib.messages import chat_messages  # noqa: E402
from bench_questions import bench_questions  # noqa: E402
from lib.registry import load_registry  # noqa: E402

DEFAULT_MODEL = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
# For a GGUF without a chat template (e.g. a synthetic model of a real shape).
FALLBACK_TEMPLATE = ("{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n"
                     "{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}")


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = None
    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    import llama_cpp
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "gpu": gpu, "python": platform.python_version(),
            "llama_cpp_python": llama_cpp.__version__,
            "llama_cpp_gpu_offload": bool(llama_cpp.llama_supports_gpu_offload())}


def make_spec(model: Path, max_tokens: int, n_gpu_layers: int, template: str | None):
    """A ModelSpec through the real registry, so the backend sees what models.toml would give."""
    folder = Path(tempfile.mkdtemp(prefix="bench-"))
    lines = ["[models.bench_model]", f"path = {json.dumps(str(model.resolve()))}", f"max_tokens = {max_tokens}",
             "temperature = 0.0", "n_ctx = 2048", f"n_gpu_layers = {n_gpu_layers}"]
    if template:
        lines.append(f"chat_template = {json.dumps(template)}")
    (folder / "models.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_registry(folder / "models.toml").get("bench_model")


def load_ours(args, threads):
    from backends.llama_backend import LlamaBackend
    spec = make_spec(args.model, args.max_tokens, args.n_gpu_layers, None)
    try:
        return LlamaBackend(spec, ignore_eog=True, n_threads=threads), None
    except ValueError as err:
        if "chat template" not in str(err):
            raise
        spec = make_spec(args.model, args.max_tokens, args.n_gpu_layers, FALLBACK_TEMPLATE)
        return LlamaBackend(spec, ignore_eog=True, n_threads=threads), FALLBACK_TEMPLATE


def best_of(repeat: int, timed_run):
    """The fastest of `repeat` runs of timed_run() -> (seconds, payload): a busy machine only slows."""
    return min((timed_run() for _ in range(repeat)), key=lambda r: r[0])


def bench_ours(backend, questions, parallels, max_tokens, repeat) -> list[dict]:
    import dataclasses
    spec = backend.spec
    backend.spec = dataclasses.replace(spec, max_tokens=4)  # warm-up: kernels, allocations
    list(backend.answer(questions[:2], parallel=2))
    backend.spec = spec
    rows, first = [], None
    for n in parallels:
        def timed_run():
            started = time.perf_counter()
            results = dict(backend.answer(questions, parallel=n))
            return time.perf_counter() - started, (results, backend.engine.last_stats)
        wall, (results, st) = best_of(repeat, timed_run)
        errors = [r["error"] for r in results.values() if "error" in r]
        if errors:
            raise RuntimeError(f"ours, N={n}: {errors[0]}")
        tokens = sum(r["tokens"] for r in results.values())
        if tokens != len(questions) * max_tokens:
            print(f"warning: ours N={n} made {tokens} tokens, not {len(questions) * max_tokens}",
                  file=sys.stderr)
        rows.append({"engine": "ours (llama.cpp batched)", "parallel": n, "questions": len(questions),
                     "tokens": tokens, "seconds": round(wall, 3), "tokens_per_s": round(tokens / wall, 1),
                     "gen_tokens_per_s": round(st["gen_steps_tokens"] / max(st["gen_steps_seconds"], 1e-9), 1),
                     "prompt_tokens_per_s": round(st["prompt_tokens"] / max(st["prompt_seconds"], 1e-9), 1),
                     "steps": st["steps"]})
        # Greedy: the same answers whatever N, up to float rounding in llama.cpp's kernels.
        outputs = [results[i]["output"] for i in range(len(questions))]
        first = first or (n, outputs)
        rows[-1][f"identical_to_N{first[0]}"] = sum(a == b for a, b in zip(outputs, first[1]))
        print(f"  ours N={n}: {rows[-1]['tokens_per_s']} tok/s", file=sys.stderr, flush=True)
    return rows


def bench_ours_pp(backend, n_prompt: int, repeat: int) -> dict:
    """Our prompt speed on one prompt of about n_prompt tokens (llama-bench's ppN, like for like)."""
    import dataclasses
    words, question = "the quick brown fox jumps over the lazy dog".split(), {"instruction": ""}
    while len(backend.prompt_tokens(question)) < n_prompt:
        question["instruction"] += " " + words[len(question["instruction"]) % len(words)]
    spec = backend.spec
    backend.spec = dataclasses.replace(spec, max_tokens=1)
    try:
        def timed_run():
            list(backend.answer([question], parallel=1))
            st = backend.engine.last_stats
            return st["prompt_seconds"], st["prompt_tokens"]
        seconds, tokens = best_of(repeat, timed_run)
    finally:
        backend.spec = spec
    return {"engine": f"ours, one prompt of {tokens} tokens", "parallel": 1, "prompt_tokens": tokens,
            "prompt_tokens_per_s": round(tokens / max(seconds, 1e-9), 1)}


def bench_llama_cpp_python(args, questions, eog: set[int], template: str | None, threads) -> dict:
    import llama_cpp
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    extra = {}
    if threads:
        extra.update(n_threads=threads, n_threads_batch=threads)
    llm = llama_cpp.Llama(model_path=str(args.model), n_ctx=2048, n_gpu_layers=args.n_gpu_layers,
                          verbose=False, **extra)
    if template:  # the same prompt as ours; otherwise llama-cpp-python uses the GGUF's template
        model = llm._model
        llm.chat_handler = Jinja2ChatFormatter(
            template=template, eos_token=model.token_get_text(llm.token_eos()),
            bos_token=model.token_get_text(llm.token_bos())).to_chat_handler()
    bias = {t: -1e9 for t in eog}  # never end early: every question makes max_tokens

    def ask(question, max_tokens):
        return llm.create_chat_completion(messages=chat_messages(question, None), max_tokens=max_tokens,
                                          temperature=0.0, logit_bias=bias)

    ask(questions[0], 4)  # warm-up

    def timed_run():
        started = time.perf_counter()
        tokens = sum(ask(q, args.max_tokens)["usage"]["completion_tokens"] for q in questions)
        return time.perf_counter() - started, tokens
    wall, tokens = best_of(args.repeat, timed_run)
    llm.close()
    print(f"  llama-cpp-python: {tokens / wall:.1f} tok/s", file=sys.stderr, flush=True)
    return {"engine": "llama-cpp-python create_chat_completion", "parallel": 1, "questions": len(questions),
            "tokens": tokens, "seconds": round(wall, 3), "tokens_per_s": round(tokens / wall, 1),
            "n_threads": llm.n_threads, "n_threads_batch": llm.n_threads_batch}


def bench_transformers(args) -> list[dict]:
    """(a) and the transformers backend's batches, on their own (shorter) set: bench/bench_hf.py."""
    import bench_hf
    spec = bench_hf.make_spec(args.model, args.transformers_max_tokens)
    return bench_hf.transformers_rows(spec, bench_questions(args.transformers_questions),
                                      _ints(args.transformers_parallel), args.repeat)


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        return []


def eog_tokens(model: Path) -> set[int]:
    import llama_cpp
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    m = llama_cpp.llama_model_load_from_file(str(model).encode(), params)
    vocab = llama_cpp.llama_model_get_vocab(m)
    eog = {t for t in range(llama_cpp.llama_vocab_n_tokens(vocab)) if llama_cpp.llama_vocab_is_eog(vocab, t)}
    llama_cpp.llama_model_free(m)
    return eog


def batched_bench_rows(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("{"):
            r = json.loads(line)
            rows.append({"engine": "llama-batched-bench (native)", "parallel": r["pl"], "pp": r["pp"],
                         "tg": r["tg"], "tokens_per_s": round(r["speed_tg"], 1),
                         "total_tokens_per_s": round(r["speed"], 1)})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path(os.environ.get("BENCH_MODEL") or DEFAULT_MODEL))
    parser.add_argument("--questions", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--parallel", default="1,8,32", help="comma-separated N for ours")
    parser.add_argument("--skip-transformers", action="store_true", help="leave out (a), e.g. on a GPU run")
    parser.add_argument("--transformers-questions", type=int, default=16)
    parser.add_argument("--transformers-max-tokens", type=int, default=32)
    parser.add_argument("--transformers-parallel", default="4,8,16", help="N for the transformers backend's batches")
    parser.add_argument("--n-gpu-layers", type=int, default=-1)
    parser.add_argument("--repeat", type=int, default=1,
                        help="time each engine this many times and keep the fastest (a shared CPU)")
    parser.add_argument("--threads", type=int, help="CPU threads for (b) and (c) (default: llama-cpp-python's)")
    parser.add_argument("--llama-batched-bench", type=Path, help="llama-batched-bench --output-format jsonl output")
    parser.add_argument("--native-bin", type=Path,
                        help="folder with llama-batched-bench and llama-bench to run beside ours (make bench)")
    parser.add_argument("--out", type=Path, default=ROOT / "out")
    args = parser.parse_args(argv)
    if not args.model.is_file():
        print(f"error: model not found: {args.model} (run `make models`, or set BENCH_MODEL=path.gguf)",
              file=sys.stderr)
        return 2
    try:
        parallels = [int(x) for x in args.parallel.split(",") if x.strip()]
    except ValueError:
        parallels = []
    if args.repeat < 1 or args.questions < 1 or args.max_tokens < 1:
        print("error: --repeat, --questions and --max-tokens must be >= 1", file=sys.stderr)
        return 2
    if not parallels or min(parallels) < 1:
        print(f"error: --parallel wants positive integers like 1,8,32, got {args.parallel!r}", file=sys.stderr)
        return 2
    hf_parallels = _ints(args.transformers_parallel)
    if not hf_parallels or min(hf_parallels) < 1 or args.transformers_questions < 1 or args.transformers_max_tokens < 1:
        print("error: --transformers-parallel wants positive integers like 4,8,16; --transformers-questions and "
              "--transformers-max-tokens must be >= 1", file=sys.stderr)
        return 2
    questions = bench_questions(args.questions)

    print(f"benchmark: {args.model.name}, {len(questions)} questions x {args.max_tokens} tokens",
          file=sys.stderr, flush=True)
    ours, template = load_ours(args, args.threads)
    prompt_lens = [len(ours.prompt_tokens(q)) for q in questions]
    results = bench_ours(ours, questions, parallels, args.max_tokens, args.repeat)
    native_rows = []
    if args.native_bin:
        results.append(bench_ours_pp(ours, 512, args.repeat))
        print("  llama.cpp's llama-batched-bench and llama-bench pp512 ...", file=sys.stderr, flush=True)
        eng = ours.engine
        try:
            native_rows = native.batched_bench(
                args.native_bin, args.model, parallels, round(sum(prompt_lens) / len(prompt_lens)),
                args.max_tokens, eng.n_threads, eng.n_threads_batch, args.n_gpu_layers, eng.offload)
            native_rows.append(native.llama_bench_pp(args.native_bin, args.model, eng.n_threads_batch,
                                                     args.n_gpu_layers, eng.offload, repetitions=args.repeat))
        except native.NativeError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    threads = {"n_threads": ours.engine.n_threads, "n_threads_batch": ours.engine.n_threads_batch}
    ours.close()
    results.insert(0, bench_llama_cpp_python(args, questions, eog_tokens(args.model), template, args.threads))
    if not args.skip_transformers:
        results[:0] = bench_transformers(args)
    native_rows += batched_bench_rows(args.llama_batched_bench) if args.llama_batched_bench else []

    def rate(engine_prefix, n=None, key="tokens_per_s"):
        for r in results + native_rows:
            if r["engine"].startswith(engine_prefix) and (n is None or r["parallel"] == n):
                return r.get(key)
        return None

    top = max(parallels)
    ours_top = rate("ours (", top)
    report = {
        "machine": machine(), "model": str(args.model), "model_bytes": args.model.stat().st_size,
        "questions": len(questions), "max_tokens": args.max_tokens, "repeat": args.repeat,
        "prompt_tokens_mean": round(sum(prompt_lens) / len(prompt_lens), 1),
        "ours_threads": threads, "results": results + native_rows,
        "ratio_vs_sequential_llama_cpp_python": _ratio(ours_top, rate("llama-cpp-python")),
        "ratio_vs_seed_transformers": _ratio(ours_top, rate("transformers")),
        "ratio_gen_vs_llama_batched_bench": _ratio(rate("ours (", top, "gen_tokens_per_s"),
                                                   rate("llama-batched-bench", top)),
        "ratio_prompt_vs_llama_bench_pp512": _ratio(rate("ours, one prompt", None, "prompt_tokens_per_s"),
                                                    rate("llama-bench pp512", None, "prompt_tokens_per_s")),
        "ratios_use_parallel": top,
        "transformers_batched": {r["parallel"]: {"ratio_vs_one_at_a_time": r["ratio_vs_one_at_a_time"],
                                                 "identical": f"{r['identical_to_one_at_a_time']}/{r['questions']}"}
                                 for r in results if r["engine"].startswith("ours (transformers")},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print_table(report)
    print(f"-> {args.out / 'bench.json'}")
    return 0


def _ratio(a, b):
    return round(a / b, 2) if a and b else None


def print_table(report: dict) -> None:
    m = report["machine"]
    print(f"\nmodel {Path(report['model']).name} ({report['model_bytes'] / 2**20:.0f} MiB); "
          f"{report['questions']} questions x {report['max_tokens']} new tokens "
          f"(prompts {report['prompt_tokens_mean']} tokens on average)")
    print(f"machine: {m['gpu'] or m['cpu']}, {m['cpu_count']} CPUs, llama-cpp-python {m['llama_cpp_python']}")
    print(f"| {'engine':44} | {'N':>3} | {'questions':>9} | {'tok/s':>8} | {'gen-only tok/s':>14} "
          f"| {'prompt tok/s':>12} |")
    print(f"|{'-' * 46}|{'-' * 5}|{'-' * 11}|{'-' * 10}|{'-' * 16}|{'-' * 14}|")
    for r in report["results"]:
        gen, tps = r.get("gen_tokens_per_s", ""), r.get("tokens_per_s", "")
        if r["engine"].startswith("llama-batched-bench"):
            gen, tps = r["tokens_per_s"], ""  # S_TG: generation only
        print(f"| {r['engine']:44} | {r['parallel']:>3} | {r.get('questions', ''):>9} | {tps:>8} | {gen:>14} "
              f"| {r.get('prompt_tokens_per_s', ''):>12} |")
    n = report["ratios_use_parallel"]
    for key, what in (("ratio_vs_sequential_llama_cpp_python", "llama-cpp-python one at a time"),
                      ("ratio_vs_seed_transformers", "transformers one at a time"),
                      ("ratio_gen_vs_llama_batched_bench", "llama-batched-bench S_TG (generation only)")):
        if report[key] is not None:
            print(f"ours N={n} / {what}: {report[key]}x")
    for n, row in report["transformers_batched"].items():
        print(f"transformers batched N={n} / one at a time: {row['ratio_vs_one_at_a_time']}x, "
              f"{row['identical']} answers identical")
    if report.get("ratio_prompt_vs_llama_bench_pp512") is not None:
        print(f"ours, one 512-token prompt / llama-bench pp512: {report['ratio_prompt_vs_llama_bench_pp512']}x")


if __name__ == "__main__":
    sys.exit(main())
