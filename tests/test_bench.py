"""bench/bench.py (make bench) end to end on the embedded model, small: it runs, compares the same
questions across engines, and writes bench.json with the figures docs/speed.md quotes. No speed is
asserted (benchmarks print figures; tests check they are made). The native llama.cpp tools are
not built here (make test never builds them), so --native-bin is left out."""
import json
import subprocess
import sys

import pytest

from conftest import ROOT, SMOLLM2, needs_smollm2, slow
pytestmark = [slow, needs_smollm2]


def bench(tmp_path, *args):
    return subprocess.run([sys.executable, str(ROOT / "bench" / "bench.py"), "--model", str(SMOLLM2),
                           "--out", str(tmp_path), *args], capture_output=True, text=True, timeout=600)


def test_bench_writes_every_engine_and_the_ratios(tmp_path):
    run = bench(tmp_path, "--questions", "3", "--max-tokens", "6", "--parallel", "1,3", "--skip-transformers")
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "bench.json").read_text(encoding="utf-8"))
    rows = {(r["engine"], r["parallel"]): r for r in report["results"]}
    cpp = rows[("llama-cpp-python create_chat_completion", 1)]
    assert cpp["questions"] == 3 and cpp["tokens"] >= 3 * 6
    for n in (1, 3):
        ours = rows[("ours (llama.cpp batched)", n)]
        # every question makes exactly max_tokens tokens, and N=3's greedy answers equal N=1's
        assert ours["tokens"] == 3 * 6 and ours["identical_to_N1"] == 3
        assert ours["tokens_per_s"] > 0 and ours["prompt_tokens_per_s"] > 0
    assert report["ratio_vs_sequential_llama_cpp_python"] > 0
    assert report["ratios_use_parallel"] == 3
    assert "ours N=3 / llama-cpp-python one at a time" in run.stderr + run.stdout


def test_bench_bad_arguments_are_one_line(tmp_path):
    for args in (["--parallel", "0"], ["--questions", "0"], ["--model", str(tmp_path / "none.gguf")]):
        run = bench(tmp_path, *args)
        assert run.returncode == 2 and "Traceback" not in run.stderr
        assert len(run.stderr.strip().splitlines()) == 1 and run.stderr.startswith("error:")


def test_transformers_rows_one_at_a_time_against_batches(tmp_path):
    """bench/bench_hf.py (make bench's transformers rows): the guide's loop and our batches on the
    same questions, every answer max-tokens long, the batched greedy answers identical."""
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_hf.py"), "--model", str(SMOLLM2),
                          "--questions", "3", "--max-tokens", "4", "--parallel", "3", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads((tmp_path / "bench_hf.json").read_text(encoding="utf-8"))["results"]
    alone, batched = rows
    assert alone["engine"].startswith("transformers generate, one at a time") and alone["tokens"] == 12
    assert batched["parallel"] == 3 and batched["tokens"] == 12 and batched["identical_to_one_at_a_time"] == 3
    assert batched["ratio_vs_one_at_a_time"] > 0
