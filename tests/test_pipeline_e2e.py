"""The whole pipeline through make, offline: the embedded model, the real llama.cpp, the real
judge server (llama_cpp.server on 127.0.0.1) judging both orders, and alpaca_eval's metrics,
on two questions."""
import csv
import json
import os
import shutil
import subprocess

import pytest

from conftest import ROOT, SMOLLM2, needs_smollm2, slow
pytestmark = [slow, needs_smollm2]
SECRET = "sk-e2e-this-must-never-be-written-anywhere"

MODELS_TOML = """
[defaults]
models = ["greedy", "sampled"]
reference = "greedy"
judge = "judge"

[models.greedy]
path = "{smollm2}"
max_tokens = 16
n_ctx = 1024

[models.sampled]
path = "{smollm2}"
max_tokens = 16
temperature = 1.0
seed = 7
n_ctx = 1024

[models.judge]
path = "{smollm2}"
n_ctx = 2048

# Other weights (the same file with bytes appended): another judge, whatever its name.
[models.judge2]
path = "{judge2}"
n_ctx = 2048
"""


def make(tmp_path, *args, env=None):
    cmd = ["make", "--no-print-directory", "-C", str(ROOT), *args, f"OUT={tmp_path / 'out'}",
           f"MODELS_TOML={tmp_path / 'models.toml'}", f"QUESTIONS={tmp_path / 'q.txt'}"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


def read_board(tmp_path):
    with (tmp_path / "out" / "board.csv").open(encoding="utf-8") as f:
        return {row["model"]: row for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("e2e")
    judge2 = tmp_path / "judge2.gguf"
    shutil.copyfile(SMOLLM2, judge2)
    with judge2.open("ab") as f:
        f.write(b"other judge")  # llama.cpp ignores trailing bytes; the hash does not
    (tmp_path / "models.toml").write_text(MODELS_TOML.format(smollm2=SMOLLM2, judge2=judge2), encoding="utf-8")
    (tmp_path / "q.txt").write_text("为什么天空是蓝色的？\nWhat is the capital of France?\n", encoding="utf-8")
    first = make(tmp_path, "board", env={**os.environ, "OPENAI_API_KEY": SECRET})
    assert first.returncode == 0, first.stdout + first.stderr
    return tmp_path, first


def test_board_has_every_model_and_every_question(run):
    tmp_path, first = run
    rows = read_board(tmp_path)
    assert set(rows) == {"greedy", "sampled"}
    for row in rows.values():
        assert int(float(row["n_total"])) == 2 and int(float(row["n_failed"])) == 0
        assert int(float(row["n_wins"])) + int(float(row["n_wins_base"])) + int(float(row["n_draws"])) == 2
        assert 0 <= float(row["win_rate_ci_low"]) <= float(row["win_rate"]) <= float(row["win_rate_ci_high"]) <= 100
        assert 0 <= float(row["lc_win_rate"]) <= 100
    # The reference against itself: identical answers are draws, with no judge call needed.
    greedy = rows["greedy"]
    assert float(greedy["win_rate"]) == 50.0 and int(float(greedy["n_draws"])) == 2
    assert int(float(greedy["n_judge_calls"])) == 0 and greedy["position_consistency"] == ""
    # Every other pair is judged in both orders.
    assert int(float(rows["sampled"]["n_judge_calls"])) == 4
    assert 0 <= float(rows["sampled"]["position_consistency"]) <= 100
    assert "Leaderboard" in first.stdout and "sampled" in first.stdout
    assert "4 made, 0 from cache, 0 failed" in first.stderr
    assert not (tmp_path / "out" / "board_by_dataset.csv").exists()  # one question file: one dataset
    out = tmp_path / "out"
    for name in ("greedy.json", "sampled.json", "output.json", "reference.json", "board.md", "board.png",
                 "board.html", "board_pairs.json", "manifest.json", "judge/verdicts.jsonl"):
        assert (out / name).is_file(), name


def test_the_tiny_judge_is_shown_for_what_it_is(run):
    tmp_path, first = run
    # SmolLM2-135M picks the answer shown second whatever it says: both orders disagree.
    if float(read_board(tmp_path)["sampled"]["position_consistency"]) < 60:
        assert "WARNING: JUDGE WITHOUT SIGNAL" in first.stdout
        assert "JUDGE WITHOUT SIGNAL" in (tmp_path / "out" / "board.html").read_text(encoding="utf-8")
        assert "JUDGE WITHOUT SIGNAL" in (tmp_path / "out" / "board.md").read_text(encoding="utf-8")
    assert "only 2 questions" in first.stdout


def test_manifest_records_what_made_the_board_and_no_secret(run):
    tmp_path, _ = run
    out = tmp_path / "out"
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    weights = manifest["models"]["sampled"]["weights_sha256"]
    assert len(weights) == 64 and manifest["models"]["greedy"]["weights_sha256"] == weights
    assert manifest["about"]["judge"]["identity"]["weights_sha256"] == weights
    assert manifest["questions"]["n"] == 2 and len(manifest["questions"]["file_sha256"]) == 64
    assert manifest["versions"]["llama_cpp_python"] and manifest["versions"]["alpaca-eval"]
    assert manifest["judge_calls"]["made"] == 4
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_second_run_does_no_inference_and_no_judging(run):
    tmp_path, _ = run
    again = make(tmp_path, "board")
    assert again.returncode == 0, again.stderr
    assert "tools/infer.py" not in again.stdout and "tools/board --models-toml" not in again.stdout
    assert "sampled" in again.stdout  # the board is printed again


def test_changing_the_judge_rejudges_and_changing_back_reuses(run):
    tmp_path, _ = run
    other = make(tmp_path, "board", "JUDGE=judge2")
    assert other.returncode == 0, other.stderr
    assert "4 made, 0 from cache, 0 failed" in other.stderr  # new weights: no old verdict reused
    assert "judge: judge2" in other.stdout
    back = make(tmp_path, "board")
    assert back.returncode == 0, back.stderr
    assert "0 made, 4 from cache, 0 failed" in back.stderr


def test_api_judge_without_key_stops_at_once(run):
    tmp_path, _ = run
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")}
    result = make(tmp_path, "board", "JUDGE=chatgpt_fn", env=env)
    assert result.returncode != 0
    assert "judge 'chatgpt_fn' needs OPENAI_API_KEY" in result.stderr
    assert "Traceback" not in result.stderr
