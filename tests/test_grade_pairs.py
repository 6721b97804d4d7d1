"""MT-Bench's pairwise mode (tools/board/graded/pairs.py) against FastChat's own code (fschat 0.2.36):
- the prompts: our pair calls give, byte for byte, the user prompt FastChat's run_judge_pair builds
  for every pair prompt (pair-v2, pair-math-v1 and their multi-turn forms, the GPT-4 reference in
  the math ones, the models swapped in the second game), and our label equals its parse on
  constructed replies ([[A]], [[B]], [[C]], none, several);
- the aggregation: on constructed games (wins, ties, games that disagree, a failed game),
  FastChat's show_result.py --mode pairwise-all and pairwise-baseline read our export and print our
  table; the failed match is left out there and counted here;
- a grader without pairwise prompts refuses VERSUS=all in one line; make board passes VERSUS=all
  to the graded stage (make -n: nothing runs).
The run with a real judge is in test_grade_board.py (the graded board's fixture plays VERSUS=all)."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from benchdata import fastchat_common, mt_bench_data
from board import grade_pairs
from board.graded import mt_bench
from judges.labels import LabelledCall

ROOT = Path(__file__).resolve().parent.parent
BENCH = mt_bench_data()
pytestmark = pytest.mark.skipif(not BENCH.is_dir(), reason="needs the MT-Bench files (../shared/benchmarks)")
REPLIES = ["Assistant A is better. [[A]]", "[[B]]", "A tie: [[C]]", "no verdict", "[[B]] or rather [[A]]",
           "[A]", "[[C]] then [[B]]"]


def mt_questions():
    questions = [json.loads(line) for line in (BENCH / "mt_bench" / "question.jsonl").read_text().splitlines()]
    refs = {r["question_id"]: r for r in map(json.loads, (BENCH / "mt_bench/reference_answer/gpt-4.jsonl").read_text().splitlines())}
    return [next(q for q in questions if q["category"] == c) for c in ("writing", "math")], refs


def test_prompts_and_labels_equal_fastchats():
    common = fastchat_common()
    prompts = mt_bench.load_judge_prompts(BENCH / "judge_prompts.jsonl")
    questions, refs = mt_questions()
    a, b = ["first answer {not a field}", "first, turn 2"], ["second answer", "second, turn 2"]
    seen = set()
    for q in questions:
        ref_turns = refs[q["question_id"]]["choices"][0]["turns"] if q["question_id"] in refs else None
        norm = {**q, "instruction": q["turns"][0], "reference": ref_turns}
        for turn, name, order, call in mt_bench.pair_calls(prompts, norm, a, b, max_tokens=64):
            seen.add((name, order))
            shown_a, shown_b = (a, b) if order == "AB" else (b, a)
            ref = refs[q["question_id"]] if "math" in name else None
            judge = common.Judge("gpt-4", prompts[name], ref_based=ref is not None, multi_turn=turn == 2)
            for reply in REPLIES:
                common.chat_completion_openai = lambda *args, reply=reply, **kw: reply
                winner, user_prompt, _ = common.run_judge_pair(q, {"choices": [{"turns": shown_a}]},
                                                               {"choices": [{"turns": shown_b}]}, judge, ref,
                                                               multi_turn=turn == 2)
                assert user_prompt == call.messages()[-1]["content"], (name, order)
                assert call.messages()[0]["content"] == prompts[name]["system_prompt"]
                assert {"A": "A", "B": "B", "C": "tie", None: "error"}[mt_bench.pair_label(reply)] == winner, reply
    assert {n for n, _ in seen} == {"pair-v2", "pair-math-v1", "pair-v2-multi-turn", "pair-math-v1-multi-turn"}
    assert {o for _, o in seen} == {"AB", "BA"}


def constructed(tmp_path: Path):
    """Three models, two questions, turn 1: every kind of outcome, and one failed game."""
    labels = {  # (model_1, model_2, question) -> (label of game 1, label of game 2); game 2 swaps them
        ("x", "y", 1): ("A", "B"),   # x wins both games
        ("x", "y", 2): ("A", "A"),   # each shown-first wins: inconsistent, a tie
        ("x", "z", 1): ("C", "C"),   # a tie
        ("x", "z", 2): ("B", "A"),   # z wins both
        ("y", "z", 1): ("A", None),  # the second game failed: FastChat's "error"
        ("y", "z", 2): ("B", "A"),   # z wins
    }
    items, records = [], {}
    for (m1, m2, qid), (l1, l2) in labels.items():
        calls = [LabelledCall(system="s", template="{q}", fields=(("q", f"{m1}{m2}{qid}{g}"),), options=("A", "B", "C"),
                              protocol="test/pair") for g in (1, 2)]
        for call, label in zip(calls, (l1, l2)):
            if label:
                records[call] = {"label": label, "judgment": f"[[{label}]]"}
        items.append({"model_1": m1, "model_2": m2, "question_id": qid, "turn": 1, "prompt": "pair-v2",
                      "category": "writing", "g1": calls[0], "g2": calls[1]})
    rows = grade_pairs.games(items, records)
    table = grade_pairs.pair_table(rows, ["x", "y", "z"])
    export = grade_pairs.write(items, rows, table, "my judge", tmp_path)
    return table, export


def show_result(export: Path, *mode: str) -> pd.DataFrame:
    done = subprocess.run([sys.executable, "-m", "fastchat.llm_judge.show_result", "--input-file", str(export), *mode],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["win"])
    rows = {}
    for line in lines[start + 2:]:
        model, *values = line.split()
        rows[model] = dict(zip(["win", "loss", "tie", "win_rate", "loss_rate", "win_rate_adjusted"], map(float, values)))
    return pd.DataFrame(rows).T


def test_fastchat_show_result_prints_our_pairwise_table(tmp_path):
    table, export = constructed(tmp_path)
    ours = table.set_index("model")
    assert ours.loc["x", ["win", "loss", "tie"]].tolist() == [1, 1, 2]
    assert ours.loc["z", ["win", "loss", "tie", "n_failed"]].tolist() == [2, 0, 1, 1]
    assert ours.loc["y", "n_failed"] == 1 and ours["n_failed"].sum() == 2
    assert table["model"].tolist() == ["z", "x", "y"]  # by win_rate_adjusted, as FastChat sorts
    assert [json.loads(line)["g2_winner"] for line in export.read_text().splitlines()][4] == "error"
    theirs = show_result(export, "--mode", "pairwise-all")
    for model, row in theirs.iterrows():
        for column in row.index:
            assert row[column] == pytest.approx(ours.loc[model, column], abs=1e-4), (model, column)
    baseline = show_result(export, "--mode", "pairwise-baseline", "--baseline-model", "x")
    assert set(baseline.index) == {"y", "z"}
    assert baseline.loc["y", ["win", "loss", "tie"]].tolist() == [0, 1, 1]  # y's matches against x only
    assert (tmp_path / "board_pairwise.csv").is_file() and (tmp_path / "board_pairwise_games.json").is_file()
    assert grade_pairs.warnings_for(table)[0].startswith("pairwise: 1 matches have a game without a verdict")


def test_a_grader_without_pairwise_prompts_refuses_versus_all(tmp_path):
    (tmp_path / "q.txt").write_text("What is 2 + 2?\n")
    for name in ("a", "b"):
        (tmp_path / f"{name}.json").write_text(json.dumps([{"instruction": "What is 2 + 2?", "input": "", "output": "4",
                                                            "generator": name}]))
    (tmp_path / "models.toml").write_text('[models.judge]\nbackend = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
                                          'api_model = "x"\n')
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "board"), "--protocol", "grade", "--versus", "all",
                           "--answers", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--questions",
                           str(tmp_path / "q.txt"), "--judge", "judge", "--models-toml", str(tmp_path / "models.toml"),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "VERSUS=all" in done.stderr and "own grader" in done.stderr and "Traceback" not in done.stderr


def test_make_board_passes_versus_all_to_the_graded_stage(tmp_path):
    (tmp_path / "q.txt").write_text("What is 2 + 2?\n")
    done = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(ROOT), "board", "PROTOCOL=grade",
                           f"QUESTIONS={tmp_path / 'q.txt'}", "VERSUS=all", f"OUT={tmp_path / 'out'}"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    graded = done.stdout.replace("\\\n", " ").split("tools/board --protocol grade")[1].splitlines()[0]
    assert "--versus all" in graded and not (tmp_path / "out").exists()
