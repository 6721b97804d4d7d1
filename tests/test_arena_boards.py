"""`make board QUESTIONS=alpaca_eval LIMIT=20` and `QUESTIONS=arena_hard FAST=1`, the README's lines
(tests/test_makefile.py leaves them to this file), end to end at LIMIT=3 with the embedded models
and judge, the sets fetched from a local server of ../shared/benchmarks: the set's own reference
(no reference model runs), AlpacaEval 2.0's published board beside ours (labelled not comparable
with a local judge), Arena-Hard's two games per prompt with labels read from the judge's logits
(none dropped), its score section and published table, its answer and judgment files, and
Arena-Hard's own way of scoring those files giving our scores."""
import csv
import json
import os
import subprocess
from pathlib import Path

import pytest

from board.arena_hard.score import LABELS

from conftest import ROOT, needs_smollm2, project_registry, slow
MODELS = "smollm2_135m gemma3_270m"
LIMIT = 3  # each judge call reads a published answer of a few thousand characters: seconds a call here
pytestmark = [slow, needs_smollm2]


def make_board(out: Path, *args: str) -> subprocess.CompletedProcess:
    # The project's registry, answers cut to 16 tokens: the suite's time goes to the boards' code.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    return subprocess.run(["make", "--no-print-directory", "board", f"OUT={out}", f"MODELS={MODELS}",
                           f"MODELS_TOML={project_registry(out.parent)}", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def rows(path: Path) -> dict[str, dict]:
    with path.open(encoding="utf-8") as f:
        return {row["model"]: row for row in csv.DictReader(f)}


def test_alpaca_eval_board_with_the_published_one(bench_data_url, tmp_path):
    out = tmp_path / "out"
    result = make_board(out, "QUESTIONS=alpaca_eval", f"LIMIT={LIMIT}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "reference.py --set" in result.stdout  # the set's own reference, copied
    assert "infer.py gpt4_1106_preview" not in result.stdout and not (out / "gpt4_1106_preview.json").exists()
    reference = json.loads((out / "reference.json").read_text(encoding="utf-8"))
    assert len(reference) == LIMIT and {r["generator"] for r in reference} == {"gpt4_1106_preview"}
    board = rows(out / "board.csv")
    assert set(board) == set(MODELS.split()) and all(int(float(r["n_total"])) == LIMIT for r in board.values())
    md = (out / "board.md").read_text(encoding="utf-8")
    assert "Published leaderboard (judge: weighted_alpaca_eval_gpt4_turbo (gpt-4-1106-preview))" in md
    assert "only when JUDGE=weighted_alpaca_eval_gpt4_turbo; this board's judge is smollm2_135m, so they are not" in md
    assert "smollm2_135m (ours)" in md and "gpt4_1106_preview" in md
    html = (out / "board.html").read_text(encoding="utf-8")
    assert '<table id="published">' in html and "Arena-Hard" not in html


def test_arena_hard_board_scores_as_arena_hard(bench_data_url, tmp_path):
    from test_arena_score import their_battles, their_scores

    out = tmp_path / "out"
    # FAST=1: the labels read without the judge's explanation, for the suite's time (24 explanations
    # of up to 256 tokens over Arena-Hard's long prompts take many minutes on 2 cores); the explained
    # read is tested in tests/test_arena_labels.py.
    result = make_board(out, "QUESTIONS=arena_hard", f"LIMIT={LIMIT}", "FAST=1")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "board: 2 models ->" in result.stdout + result.stderr  # the two models against the set's baseline
    assert not (out / "gpt-4-0314.json").exists()  # the baseline's answers come from the set
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["about"]["protocol"] == "arena_hard" and manifest["about"]["arena_hard"]["dropped"] == 0
    judged = out / "arena_hard" / "model_judgment" / "smollm2_135m"
    for model in MODELS.split():
        lines = [json.loads(line) for line in (judged / f"{model}.jsonl").open(encoding="utf-8")]
        assert len(lines) == LIMIT and all(g["score"] in LABELS for line in lines for g in line["games"])
        assert all("<|The Start of Assistant A's Answer|>" in line["games"][0]["user_prompt"] for line in lines)
    answers = sorted(p.name for p in (out / "arena_hard" / "model_answer").iterdir())
    assert answers == sorted(f"{m}.jsonl" for m in [*MODELS.split(), "gpt-4-0314"])
    ours = rows(out / "board_arena_hard.csv")
    for model, (score, low, high) in their_scores(their_battles(judged)).items():
        assert float(ours[model]["score"]) == pytest.approx(score, abs=0.01), model
        assert float(ours[model]["score_low"]) == pytest.approx(low, abs=0.01), model
        assert float(ours[model]["score_high"]) == pytest.approx(high, abs=0.01), model
    html = (out / "board.html").read_text(encoding="utf-8")
    assert '<table id="arena-hard">' in html and '<table id="published">' in html
    assert "Published leaderboard (judge: gpt-4-1106-preview)" in html and '<table id="by-dataset">' in html
    board = rows(out / "board.csv")  # the usual columns come with it: both orders, consistency
    assert set(board) == set(MODELS.split()) and all(r["position_consistency"] != "" for r in board.values())
