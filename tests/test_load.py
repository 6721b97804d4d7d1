"""Load: 1,000 questions through `make infer` with the embedded SmolLM2 (2 new tokens each), next
to 100 questions: every answer written, and the peak memory of the run (the largest RSS of make
and everything it ran) the same within 64 MiB, so memory does not grow with the question count.
1,100 questions answered: 1 min 33 s on one AMD EPYC core (2026-12-03; peak RSS 362 MiB for 100
questions, 366 MiB for 1,000), so it runs under `make test` like every other test.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SMOLLM2, needs_smollm2, slow
pytestmark = [slow, needs_smollm2]

# Runs make and prints the peak RSS (KiB) of its whole process tree: RUSAGE_CHILDREN counts every
# descendant that was waited for, so infer.py under make is included.
MEASURE = """
import resource, subprocess, sys
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def run_infer(folder: Path, n: int) -> tuple[int, list[dict]]:
    folder.mkdir()
    (folder / "models.toml").write_text(f'[models.tiny]\npath = "{SMOLLM2}"\nmax_tokens = 2\nn_ctx = 512\n',
                                        encoding="utf-8")
    # The shortest distinct questions: the test is about how memory grows with their count, and the
    # suite's time goes to the prompt tokens.
    (folder / "q.txt").write_text("".join(f"{i}?\n" for i in range(n)), encoding="utf-8")
    cmd = ["make", "--no-print-directory", "-C", str(ROOT), "infer", "MODELS=tiny", f"OUT={folder / 'out'}",
           f"MODELS_TOML={folder / 'models.toml'}", f"QUESTIONS={folder / 'q.txt'}"]
    result = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True, timeout=900)
    rc, rss_kib = map(int, result.stdout.split())
    assert rc == 0, result.stderr
    return rss_kib, json.loads((folder / "out" / "tiny.json").read_text(encoding="utf-8"))


def test_a_thousand_questions_in_flat_memory(tmp_path):
    small_rss, small = run_infer(tmp_path / "100", 100)
    big_rss, big = run_infer(tmp_path / "1000", 1000)
    assert len(big) == 1000 and not any(r.get("error") for r in big)
    assert len({r["instruction"] for r in big}) == 1000 and all(r["tokens"] > 0 for r in big)
    cached = (tmp_path / "1000" / "out" / "cache" / "tiny.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(cached) == 1000
    print(f"peak RSS: 100 questions {small_rss / 1024:.0f} MiB, 1000 questions {big_rss / 1024:.0f} MiB")
    assert big_rss - small_rss < 64 * 1024, (small_rss, big_rss)
