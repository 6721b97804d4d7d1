"""tools/board with several judges and VERSUS=all (tools/board/pairwise/ensemble.py), with real judges:
the embedded SmolLM2 under two names with different weights files (two judge identities, so two
caches, that must agree with each other). No inference: the answers are written here, the
judging is real. (Disagreeing judges: tests/test_board_compare.py.)"""
import csv
import json
import shutil
from pathlib import Path

import pytest

from board.cli import main

ROOT = Path(__file__).resolve().parent.parent
SMOLLM2 = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
pytestmark = pytest.mark.skipif(not SMOLLM2.is_file(), reason="run `make models` first")

QUESTIONS = ["What is the capital of France?", "How many legs does a spider have?"]
ANSWERS = {"ref": ["Paris.", "Eight."], "alpha": ["The capital of France is Paris.", "A spider has eight legs."],
           "beta": ["Berlin.", "Six."]}
DATASETS = ["geography", "biology"]


def rows(path):
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ensemble")
    smol2 = tmp / "smol2.gguf"
    shutil.copyfile(SMOLLM2, smol2)
    with smol2.open("ab") as f:
        f.write(b"other judge")  # other bytes: another judge identity, the same verdicts
    (tmp / "models.toml").write_text(
        f'[models.smol]\npath = "{SMOLLM2}"\nn_ctx = 2048\n\n[models.smol2]\npath = "{smol2}"\nn_ctx = 2048\n',
        encoding="utf-8")
    records = lambda model: [{"instruction": q, "output": a, "generator": model, "dataset": d}
                             for q, a, d in zip(QUESTIONS, ANSWERS[model], DATASETS)]
    (tmp / "output.json").write_text(json.dumps(records("alpha") + records("beta") + records("ref")), encoding="utf-8")
    (tmp / "reference.json").write_text(json.dumps(records("ref")), encoding="utf-8")
    args = ["--models-toml", str(tmp / "models.toml"), "--outputs", str(tmp / "output.json"),
            "--reference", str(tmp / "reference.json"), "--out", str(tmp / "out"), "--versus", "all"]
    assert main([*args, "--judge", "smol", "smol2"]) == 0
    return tmp / "out", args


def test_every_judge_judges_every_pair_and_battle(board):
    out, _ = board
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    # Per judge: alpha and beta against the reference (2 questions, 2 orders) = 8 calls, plus
    # alpha against beta = 4; the reference against itself needs none.
    assert manifest["judge_calls"]["made"] == 2 * 12 and manifest["judge_calls"]["failed"] == 0
    assert [j["name"] for j in manifest["about"]["judges"]] == ["smol", "smol2"]
    assert manifest["about"]["versus"] == "all" and manifest["about"]["n_battles_between_models"] == 2
    agreement = {(a["judge_a"], a["judge_b"]): a for a in manifest["about"]["judge_agreement"]}
    assert set(agreement) == {("smol", "smol2")}
    assert agreement[("smol", "smol2")]["same_side"] == 100 and agreement[("smol", "smol2")]["n_pairs"] == 6
    verdicts = (out / "judge" / "verdicts.jsonl").read_text(encoding="utf-8").splitlines()
    assert len({json.loads(v)["judge_id"] for v in verdicts}) == 2  # each judge cached on its own


def test_views_show_each_judge_agreement_and_battles(board):
    out, _ = board
    by_judge = rows(out / "board_by_judge.csv")
    assert {r["model"] for r in by_judge} == {"alpha", "beta", "ref"}
    assert {"smol win rate", "smol2 win rate", "smol LC", "smol2 LC"} <= set(by_judge[0])
    assert all(r["smol win rate"] == r["smol2 win rate"] for r in by_judge)
    bt = {r["model"]: r for r in rows(out / "board_bradley_terry.csv")}
    assert float(bt["ref"]["strength"]) == 0 and int(bt["alpha"]["n_battles"]) == 4  # 2 vs ref + 2 vs beta
    versus = rows(out / "board_versus.csv")
    assert {(r["model_a"], r["model_b"]) for r in versus} == {("alpha", "beta"), ("beta", "alpha")}
    md = (out / "board.md").read_text(encoding="utf-8")
    assert "judges smol / smol2: same side on 100%" in md and "## By judge" in md and "## Bradley-Terry" in md
    html = (out / "board.html").read_text(encoding="utf-8")
    assert '<table id="agreement">' in html and '<table id="by-judge">' in html
    assert "judge: smol + smol2 (ensemble" in md


def test_win_rates_by_dataset(board):
    """The questions come from two datasets: each model's win rate on each, from the same combined
    verdicts as the board (one question each here, so its pair's preference)."""
    out, _ = board
    pairs = json.loads((out / "board_pairs.json").read_text(encoding="utf-8"))
    by_dataset = rows(out / "board_by_dataset.csv")
    assert [(r["dataset"], r["model"]) for r in by_dataset] == [
        (d, m) for d in DATASETS for m in ("alpha", "beta", "ref")]
    for row in by_dataset:
        pair = next(p for p in pairs if p["model"] == row["model"] and p["instruction"] == QUESTIONS[DATASETS.index(row["dataset"])])
        assert float(row["win_rate"]) == pytest.approx((pair["preference"] - 1) * 100)
        assert int(row["n_questions"]) == 1 and int(row["n_total"]) == 1
    md = (out / "board.md").read_text(encoding="utf-8")
    assert "## By dataset" in md and "geography (1 question)" in md
    assert '<table id="by-dataset">' in (out / "board.html").read_text(encoding="utf-8")


def test_second_run_reuses_every_verdict(board, capsys):
    out, args = board
    assert main([*args, "--judge", "smol", "smol2"]) == 0
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["judge_calls"]["made"] == 0 and manifest["judge_calls"]["reused_from_cache"] == 24
    # One judge of the two, no battles: from the cache too, and no ensemble or battle view is left behind.
    assert main([*args[:-2], "--judge", "smol2"]) == 0
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["judge_calls"]["made"] == 0 and manifest["judge_calls"]["reused_from_cache"] == 8
    assert "judges" not in manifest["about"] and manifest["about"]["n_battles_between_models"] == 0
    assert not (out / "board_by_judge.csv").exists()
    assert int(next(r for r in rows(out / "board_bradley_terry.csv") if r["model"] == "alpha")["n_battles"]) == 2


def test_make_passes_versus_judges_and_pairs(tmp_path):
    import subprocess

    (tmp_path / "models.toml").write_text('[models.a]\npath = "a.gguf"\n[models.b]\npath = "b.gguf"\n'
                                          '[models.r]\npath = "r.gguf"\n', encoding="utf-8")

    def dry_run(*args):  # make -n: the commands, none run
        cmd = ["make", "-n", "--no-print-directory", "-C", str(ROOT), *args, f"OUT={tmp_path / 'out'}",
               f"MODELS_TOML={tmp_path / 'models.toml'}"]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout.replace("\\\n", " ")

    board = dry_run("board", "MODELS=a b", "REFERENCE=r", "JUDGE=a b", "VERSUS=all")
    line = next(line for line in board.splitlines() if "tools/board --models-toml" in line)
    assert "--judge a b " in line and line.split()[-2:] == ["--versus", "all"]
    assert "stamp-value judge a b versus=all" in board  # VERSUS changes the board's stamp: it is remade
    check = dry_run("judge-check", "JUDGE=a b", "PAIRS=my_pairs.jsonl")
    assert "tools/judge_check.py --judge a b " in check and "--pairs my_pairs.jsonl" in check
