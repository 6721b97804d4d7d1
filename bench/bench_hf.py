"""The transformers backend's batches against the original guide's loop, on the same questions.

    python bench/bench_hf.py [--model X.gguf | FOLDER] [--questions 16] [--max-tokens 32] [--parallel 4,8,16]
    python bench/bench_hf.py --chatglm-shape 6b --quant fp16,int4 ...   (a GPU: bench/gpu_check.sh)

(a) the guide's loop: transformers `generate`, one question at a time (no padding);
(b) ours: tools/backends/hf_backend.py's LocalModel, N questions per generate call, each --parallel N.
Both load the same weights (a GGUF is dequantized by transformers: fp32 on the CPU, fp16 on a
GPU) and make exactly --max-tokens tokens per question, greedy (min_new_tokens). Reported: tokens/s
over the whole set (prompts included; loading and one short warm-up outside the timing), the ratio
of each N to (a), and how many of (b)'s answers are identical to (a)'s. --repeat K keeps each
run's fastest of K (a busy machine only slows).
--chatglm-shape 6b (or "twin"): THUDM/chatglm-6b's own code (the twin's copy, tests/twins.py) with
the real 6B config and random fp16 weights (the same speed as real ones; needs its transformers
4.27 and, for int4, cpm_kernels and a GPU), the twin's tokenizer; --quant fp16,int4 runs each.
bench/bench.py (make bench) calls `transformers_rows` for its transformers rows. Not a test:
nothing here asserts a speed.
"""
from __future__ import annotations

import argparse
import logging
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_questions import bench_questions  # noqa: E402

FALLBACK_TEMPLATE = ("{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n"
                     "{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}")


def make_spec(path: Path, max_tokens: int, extra: str = ""):
    """A ModelSpec through the real registry (as models.toml would give it)."""
    from lib.registry import load_registry

    folder = Path(tempfile.mkdtemp(prefix="bench-hf-"))
    lines = ["[models.bench_hf]", f"path = {json.dumps(str(path.resolve()))}", 'backend = "transformers"',
             f"max_tokens = {max_tokens}", "temperature = 0.0", "n_ctx = 2048", extra]
    (folder / "models.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_registry(folder / "models.toml").get("bench_hf")


def best_of(repeat: int, timed_run):
    return min((timed_run() for _ in range(repeat)), key=lambda r: r[0])


def load(spec):
    """Our LocalModel (every answer max_tokens long), with a fallback template for bare models."""
    import dataclasses

    from backends.hf_backend import LocalModel
    try:
        return LocalModel(spec, ignore_eos=True)
    except ValueError as err:
        if "chat template" not in str(err):
            raise
        return LocalModel(dataclasses.replace(spec, chat_template=FALLBACK_TEMPLATE), ignore_eos=True)


def guide_loop(local, questions) -> list[str]:
    """(a): one generate per question, as the guide does, on our loaded model and tokenizer."""
    import torch

    from lib.messages import chat_messages
    tok, model, spec = local.tokenizer, local.model, local.spec
    outputs = []
    for question in questions:
        if local.chatglm:  # its own tokenizer: its mask and 2D position ids
            inputs = tok([local._prompt(question)[0]], return_tensors="pt").to(model.device)
            extra = {"logits_processor": _glm_processors(local), "max_length": spec.n_ctx}
        else:
            ids = tok.apply_chat_template(chat_messages(question, None), add_generation_prompt=True,
                                          return_tensors="pt", return_dict=True)
            inputs, extra = ids.to(model.device), {}
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=spec.max_tokens, min_new_tokens=spec.max_tokens,
                                 do_sample=False, pad_token_id=local.pad, **extra)
        new = out[0][inputs["input_ids"].shape[1]:].tolist()
        outputs.append(local.model.process_response(tok.decode(new)) if local.chatglm
                       else tok.decode(new, skip_special_tokens=True))
    return [o.strip() for o in outputs]


def _glm_processors(local):
    from transformers import LogitsProcessorList
    return LogitsProcessorList([sys.modules[type(local.model).__module__].InvalidScoreLogitsProcessor()])


def transformers_rows(spec, questions, parallels: list[int], repeat: int = 1, label: str = "") -> list[dict]:
    """(a) and (b) for each N on the same questions: rows for bench.json."""
    import dataclasses

    import torch
    local = load(spec)
    device, dtype = local.device, str(local.model.dtype).replace("torch.", "")
    name = f"{dtype}{', ' + label if label else ''}, {device}"
    max_tokens = spec.max_tokens
    local.spec = dataclasses.replace(local.spec, max_tokens=4)  # warm-up: kernels, allocations
    guide_loop(local, questions[:1])
    list(local.answer(questions[:2]))
    local.spec = dataclasses.replace(local.spec, max_tokens=max_tokens)

    def timed_guide():
        started = time.perf_counter()
        out = guide_loop(local, questions)
        return time.perf_counter() - started, out
    wall, reference = best_of(repeat, timed_guide)
    tokens = len(questions) * max_tokens
    rows = [{"engine": f"transformers generate, one at a time ({name})", "parallel": 1,
             "questions": len(questions), "tokens": tokens, "seconds": round(wall, 3),
             "tokens_per_s": round(tokens / wall, 2), "torch_threads": torch.get_num_threads()}]
    print(f"  transformers one at a time: {rows[0]['tokens_per_s']} tok/s", file=sys.stderr, flush=True)
    for n in parallels:
        local.spec = dataclasses.replace(local.spec, parallel=n)

        def timed_run():
            started = time.perf_counter()
            results = dict(local.answer(questions))
            return time.perf_counter() - started, results
        wall, results = best_of(repeat, timed_run)
        errors = [r["error"] for r in results.values() if "error" in r]
        if errors:
            raise RuntimeError(f"transformers batched, N={n}: {errors[0]}")
        outputs = [results[i]["output"] for i in range(len(questions))]
        made = sum(results[i]["tokens"] for i in range(len(questions)))
        rows.append({"engine": f"ours (transformers batched, {name})", "parallel": n, "questions": len(questions),
                     "tokens": made, "seconds": round(wall, 3), "tokens_per_s": round(made / wall, 2),
                     "ratio_vs_one_at_a_time": round(made / wall / rows[0]["tokens_per_s"], 2),
                     "identical_to_one_at_a_time": sum(a == b for a, b in zip(outputs, reference))})
        print(f"  transformers batched N={n}: {rows[-1]['tokens_per_s']} tok/s "
              f"({rows[-1]['ratio_vs_one_at_a_time']}x, {rows[-1]['identical_to_one_at_a_time']}/{len(questions)} "
              "identical)", file=sys.stderr, flush=True)
    local.close()
    return rows


def chatglm_shaped(shape: str, work: Path) -> Path:
    """A folder with ChatGLM-6B's own code and tokenizer (the twin) and, for "6b", the real 6B
    config with random fp16 weights written as the twin's shards would be (no weights download)."""
    sys.path.insert(0, str(ROOT / "tests"))
    import twins
    from backends import hf_fit
    folder = twins.build_chatglm(work / "chatglm-twin")
    if shape == "6b":
        real = dict(hf_fit.PUBLISHED["THUDM/chatglm-6b"])
        twins.reshape_chatglm(folder, {k: real[k] for k in ("hidden_size", "inner_hidden_size", "num_layers",
                                                             "num_attention_heads", "vocab_size")})
    return folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf",
                        help="a GGUF (dequantized by transformers) or a Hugging Face folder")
    parser.add_argument("--chatglm-shape", choices=["twin", "6b"], help="ChatGLM-6B's code, the twin or the real shape")
    parser.add_argument("--quant", default="fp16", help="with --chatglm-shape on a GPU: fp16,int4,int8")
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--parallel", default="4,8,16")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "out")
    args = parser.parse_args(argv)
    try:
        parallels = [int(x) for x in args.parallel.split(",") if x.strip()]
    except ValueError:
        parallels = []
    if not parallels or min(parallels) < 1 or args.questions < 1 or args.max_tokens < 1 or args.repeat < 1:
        print("error: --parallel wants positive integers like 4,8,16; --questions, --max-tokens and "
              "--repeat must be >= 1", file=sys.stderr)
        return 2
    logging.raiseExceptions = False  # transformers 4.27 logs a warning with a stray argument (see hf_backend)
    questions = bench_questions(args.questions)
    rows = []
    if args.chatglm_shape:
        folder = chatglm_shaped(args.chatglm_shape, Path(tempfile.mkdtemp(prefix="bench-glm-")))
        for quant in args.quant.split(","):
            extra = ("trust_remote_code = true\nmodel_chat = true\n"
                     + (f'quant = "{quant}"' if quant != "fp16" else ""))
            rows += transformers_rows(make_spec(folder, args.max_tokens, extra), questions, parallels,
                                      args.repeat, label=f"chatglm {args.chatglm_shape} {quant}")
    else:
        if not args.model.exists():
            print(f"error: model not found: {args.model} (run `make models`)", file=sys.stderr)
            return 2
        rows = transformers_rows(make_spec(args.model, args.max_tokens), questions, parallels, args.repeat)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"questions": len(questions), "max_tokens": args.max_tokens, "results": rows}
    (args.out / "bench_hf.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    for r in rows:
        print(f"| {r['engine']:60} | {r['parallel']:>3} | {r['tokens_per_s']:>8} | "
              f"{r.get('ratio_vs_one_at_a_time', '')!s:>6} | {r.get('identical_to_one_at_a_time', '')!s:>4} |")
    print(f"-> {args.out / 'bench_hf.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
