"""`make judge-check` for a grader (tools/board/graded/check.py via judge_check.py --protocol grade): the
embedded SmolLM2 rates the right and the wrong answer of labelled pairs one at a time, through
the labelled-call code; accuracy (right rated above wrong) and the mean gap are reported and
written to OUT/judge/checks/NAME.grade.json, every answer rated (none lost)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SMOLLM2 = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
pytestmark = pytest.mark.skipif(not SMOLLM2.is_file(), reason="run `make models` first")


def test_a_grader_check_reports_accuracy_and_mean_gap(tmp_path):
    (tmp_path / "models.toml").write_text(f'[models.judge]\npath = "{SMOLLM2}"\nmax_tokens = 8\nn_ctx = 2048\n')
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "judge_check.py"), "--judge", "judge", "--protocol",
                           "grade", "--limit", "3", "--models-toml", str(tmp_path / "models.toml"), "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-2000:]
    check = json.loads((tmp_path / "judge" / "checks" / "judge.grade.json").read_text())
    assert check["n_pairs"] == 3 and check["n_rated"] == 3 and check["n_failed"] == 0
    assert 0 <= check["accuracy"] <= 100 and -9 <= check["mean_gap"] <= 9 and check["rating_sd"] >= 0
    assert "accuracy (right rated above wrong)" in done.stdout and "mean gap" in done.stdout
