"""llama.cpp's own benchmarks, run by `make bench` beside ours as the native reference.

`batched_bench(bin_dir, ...)` runs llama-batched-bench (N sequences, each a prompt then tg
tokens; S_TG is its generation speed) and `llama_bench_pp(bin_dir, ...)` runs llama-bench's
prompt processing test (pp512) on the same model, threads and flash-attention setting as ours.
The binaries come from bench/build_native.sh (same llama.cpp as the installed
llama-cpp-python, built once into ~/.cache/llmeval-wheels/native-VERSION/bin). Rows are in
bench.json's shape. Does not build anything; a missing binary is one clear error.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path


class NativeError(RuntimeError):
    """A native benchmark could not run, worded for the user."""


def _run(cmd: list[str], timeout: float) -> str:
    if not Path(cmd[0]).is_file():
        raise NativeError(f"{cmd[0]} not found: build it with `make native-bench` (bench/build_native.sh)")
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise NativeError(f"{Path(cmd[0]).name} took over {timeout:.0f} s") from None
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise NativeError(f"{Path(cmd[0]).name} failed ({done.returncode}): {tail}")
    return done.stdout


def plain_layout() -> bool:
    """Ours keeps llama.cpp's plain weight layout on AMX CPUs (llama_backend.py): so does native."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    from backends.llama_backend import _cpu_has_amx

    return _cpu_has_amx()


def flash_attn(offload: bool) -> str:
    """Ours: off on the CPU (answers equal one at a time), llama.cpp's auto on a GPU."""
    return "auto" if offload else "off"


def batched_bench(bin_dir: Path, model: Path, parallels: list[int], n_prompt: int, n_gen: int,
                  threads: int, threads_batch: int, n_gpu_layers: int, offload: bool,
                  timeout: float = 3600) -> list[dict]:
    ctx = max(parallels) * (n_prompt + n_gen) + 256
    out = _run([str(bin_dir / "llama-batched-bench"), "-m", str(model), "-c", str(ctx), "-b", "2048",
                "-ub", "512", "-npp", str(n_prompt), "-ntg", str(n_gen),
                "-npl", ",".join(str(n) for n in parallels), "-t", str(threads), "-tb", str(threads_batch),
                "-ngl", str(99 if n_gpu_layers < 0 else n_gpu_layers), "-fa", flash_attn(offload), "--output-format", "jsonl"]
               + (["--no-repack"] if plain_layout() else []), timeout)
    rows = []
    for line in out.splitlines():
        if line.strip().startswith("{"):
            r = json.loads(line)
            rows.append({"engine": "llama-batched-bench (native)", "parallel": r["pl"], "pp": r["pp"],
                         "tg": r["tg"], "tokens_per_s": round(r["speed_tg"], 1),
                         "prompt_tokens_per_s": round(r["speed_pp"], 1),
                         "total_tokens_per_s": round(r["speed"], 1)})
    if not rows:
        raise NativeError("llama-batched-bench printed no results")
    return rows


def llama_bench_pp(bin_dir: Path, model: Path, threads_batch: int, n_gpu_layers: int, offload: bool,
                   n_prompt: int = 512, repetitions: int = 3, timeout: float = 1800) -> dict:
    out = _run([str(bin_dir / "llama-bench"), "-m", str(model), "-p", str(n_prompt), "-n", "0",
                "-t", str(threads_batch), "-ngl", str(99 if n_gpu_layers < 0 else n_gpu_layers), "-fa", flash_attn(offload),
                "-r", str(repetitions), "-o", "jsonl"] + (["--repack", "0"] if plain_layout() else []), timeout)
    for line in out.splitlines():
        if line.strip().startswith("{"):
            r = json.loads(line)
            return {"engine": f"llama-bench pp{n_prompt} (native)", "parallel": 1,
                    "prompt_tokens": r["n_prompt"], "prompt_tokens_per_s": round(r["avg_ts"], 1),
                    "stddev": round(r.get("stddev_ts", 0.0), 1)}
    raise NativeError("llama-bench printed no results")
