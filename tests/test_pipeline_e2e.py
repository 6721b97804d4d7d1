"""The whole pipeline through make, offline: the embedded model, the real llama.cpp, the real
judge server (llama_cpp.server on 127.0.0.1) and alpaca_eval, on two questions."""
import csv
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SMOLLM2 = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
pytestmark = pytest.mark.skipif(not SMOLLM2.is_file(), reason="run `make models` first")

MODELS_TOML = f"""
[defaults]
models = ["greedy", "sampled"]
reference = "greedy"
judge = "judge"

[models.greedy]
path = "{SMOLLM2}"
max_tokens = 16
n_ctx = 1024

[models.sampled]
path = "{SMOLLM2}"
max_tokens = 16
temperature = 1.0
seed = 7
n_ctx = 1024

[models.judge]
path = "{SMOLLM2}"
n_ctx = 2048
"""


def make(tmp_path, *args, env=None):
    cmd = ["make", "--no-print-directory", "-C", str(ROOT), *args, f"OUT={tmp_path / 'out'}",
           f"MODELS_TOML={tmp_path / 'models.toml'}", f"QUESTIONS={tmp_path / 'q.txt'}"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("e2e")
    (tmp_path / "models.toml").write_text(MODELS_TOML, encoding="utf-8")
    (tmp_path / "q.txt").write_text("为什么天空是蓝色的？\nWhat is the capital of France?\n", encoding="utf-8")
    first = make(tmp_path, "board")
    assert first.returncode == 0, first.stdout + first.stderr
    return tmp_path, first


def test_board_has_every_model_and_every_question(run):
    tmp_path, first = run
    with (tmp_path / "out" / "board.csv").open(encoding="utf-8") as f:
        rows = {row["model"]: row for row in csv.DictReader(f)}
    assert set(rows) == {"greedy", "sampled"}
    for row in rows.values():
        assert int(float(row["n_total"])) == 2
        assert int(float(row["n_wins"])) + int(float(row["n_wins_base"])) + int(float(row["n_draws"])) == 2
        assert 0 <= float(row["win_rate"]) <= 100
    # The reference against itself: identical answers are draws, with no judge call needed.
    assert float(rows["greedy"]["win_rate"]) == 50.0 and int(float(rows["greedy"]["n_draws"])) == 2
    assert "Leaderboard" in first.stdout and "sampled" in first.stdout
    for name in ("greedy.json", "sampled.json", "output.json", "reference.json", "annotations_cache.json"):
        assert (tmp_path / "out" / name).is_file()


def test_second_run_does_no_inference_and_no_judging(run):
    tmp_path, _ = run
    again = make(tmp_path, "board")
    assert again.returncode == 0, again.stderr
    assert "tools/infer.py" not in again.stdout and "tools/board.py --models-toml" not in again.stdout
    assert "sampled" in again.stdout  # the board is printed again


def test_api_judge_without_key_stops_at_once(run):
    tmp_path, _ = run
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")}
    result = make(tmp_path, "board", "JUDGE=chatgpt_fn", env=env)
    assert result.returncode != 0
    assert "judge 'chatgpt_fn' needs OPENAI_API_KEY" in result.stderr
    assert "Traceback" not in result.stderr
