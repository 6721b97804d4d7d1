"""The graded board end to end, by the embedded SmolLM2 judge in-process (its explanation cut at
16 tokens, to stay small): MT-Bench on a LIMIT of real questions (from ../shared/benchmarks,
laid out in tmp as the data helper's normalized set + sidecar), both turns of two models, every
rating given (none lost), FastChat's own show_result.py --mode single printing our scores from
our export, the page in headless Chromium (the radar, each answer with its explanation and
rating, model text escaped), FastChat's pairwise mode beside it (VERSUS=all: every game
judged, show_result --mode pairwise-all printing our table); and AlignBench with its own aggregation and judgment export."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from benchdata import shared_benchmarks

from conftest import ROOT, SMOLLM2, slow
SHARED = shared_benchmarks() or Path("/nonexistent")
MT = SHARED / "mt_bench" / "fastchat" / "llm_judge" / "data"
AB = SHARED / "alignbench"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [slow, pytest.mark.skipif(not SMOLLM2.is_file() or not MT.is_dir(),
                                      reason="needs `make models` and the benchmark files (../shared/benchmarks)")]
HOSTILE = '</pre><script>document.title="pwned"</script><h1 id="injected">x</h1>'


def write_set(out: Path, name: str, records: list[dict], sidecar: dict) -> Path:
    (out / "sets").mkdir(parents=True, exist_ok=True)
    path = out / "sets" / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    (out / "sets" / f"{name}.set.json").write_text(json.dumps({"name": name, **sidecar}), encoding="utf-8")
    return path


def mt_bench_fixture(out: Path) -> Path:
    questions = [json.loads(line) for line in (MT / "mt_bench" / "question.jsonl").read_text().splitlines()]
    refs = {r["question_id"]: r["choices"][0]["turns"]
            for r in map(json.loads, (MT / "mt_bench/reference_answer/gpt-4.jsonl").read_text().splitlines())}
    picked = [next(q for q in questions if q["category"] == c) for c in ("writing", "math")]
    norm = [{"instruction": q["turns"][0], "input": "", "dataset": q["category"], "question_id": q["question_id"],
             "category": q["category"], "turns": q["turns"], "reference": refs.get(q["question_id"]), "meta": {}}
            for q in picked]
    path = write_set(out, "mt_bench-limit2", norm, {
        "protocol": "grade", "grader": "mt_bench", "files": {"judge_prompts": str(MT / "judge_prompts.jsonl")},
        "published": {"path": "data/published/mt_bench.csv", "judge": "gpt-4", "comparable_with": "gpt-4"},
        "limit": 2, "seed": 0, "n_total": 80, "notes": []})
    for model, answer in (("right", None), ("wrong & <bad>", "I don't know. " + HOSTILE)):
        records = []
        for q in norm:
            outs = [answer or (q["reference"] or ["A careful, correct, complete answer."] * 2)[t] for t in range(2)]
            records.append({"instruction": q["instruction"], "input": "", "output": outs[0], "generator": model,
                            "dataset": q["category"], "question_id": q["question_id"], "category": q["category"],
                            "turns": q["turns"], "turn_outputs": outs})
        (out / f"{model.split()[0]}.json").write_text(json.dumps(records), encoding="utf-8")
    return path


def run_board(out: Path, questions: Path, answers: list[str], *extra):
    (out / "models.toml").write_text(f'[models.judge]\npath = "{SMOLLM2}"\nmax_tokens = 16\nn_ctx = 4096\n')
    return subprocess.run([sys.executable, str(ROOT / "tools" / "board"), "--protocol", "grade", "--answers",
                           *[str(out / a) for a in answers], "--questions", str(questions), "--judge", "judge",
                           "--models-toml", str(out / "models.toml"), "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def mt_board(tmp_path_factory):
    out = tmp_path_factory.mktemp("mt")
    done = run_board(out, mt_bench_fixture(out), ["right.json", "wrong.json"], "--versus", "all")
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_every_turn_of_every_model_is_rated_none_lost(mt_board):
    board = pd.read_csv(mt_board / "board.csv")
    assert set(board["model"]) == {"right", "wrong & <bad>"}
    assert (board["n_failed"] == 0).all() and (board["n_ratings"] == 4).all()  # 2 questions x 2 turns
    assert board[["turn1", "turn2", "math", "writing"]].notna().all().all()
    assert ((board["score"] >= 1) & (board["score"] <= 10)).all()
    assert (board["score_ci_low"] <= board["score"]).all() and (board["score"] <= board["score_ci_high"]).all()
    ratings = json.loads((mt_board / "board_ratings.json").read_text())
    assert {r["prompt"] for r in ratings} == {"single-v1", "single-math-v1", "single-v1-multi-turn",
                                              "single-math-v1-multi-turn"}
    versus = pd.read_csv(mt_board / "board_versus.csv")
    assert len(versus) == 1 and versus["n_questions"].iloc[0] == 2
    md = (mt_board / "board.md").read_text()
    assert "only 2 questions" in md and "LIMIT sample" in md and "## Published scores" in md
    assert "comparable only with a board graded by the same judge" in md


def test_fastchat_show_result_prints_our_scores(mt_board):
    export = mt_board / "fastchat" / "model_judgment" / "judge_single.jsonl"
    lines = [json.loads(line) for line in export.read_text().splitlines()]
    assert len(lines) == 8 and {tuple(line["judge"])[0] for line in lines} == {"judge"}
    shown = subprocess.run([sys.executable, "-m", "fastchat.llm_judge.show_result", "--mode", "single",
                            "--input-file", str(export)], capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr[-2000:]
    board = pd.read_csv(mt_board / "board.csv").set_index("model")
    sections = re.split(r"#+ (First turn|Second turn|Average) #+", shown.stdout)
    found = dict(zip(sections[1::2], sections[2::2]))
    for section, column in (("First turn", "turn1"), ("Second turn", "turn2"), ("Average", "score")):
        for model, row in board.iterrows():
            line = next(l for l in found[section].splitlines() if l.startswith(model))
            assert float(line.split()[-1]) == pytest.approx(row[column], abs=1e-4), (section, model)


def test_pairwise_mode_judges_every_game_and_fastchat_agrees(mt_board):
    table = pd.read_csv(mt_board / "board_pairwise.csv").set_index("model")
    assert set(table.index) == {"right", "wrong & <bad>"}
    assert (table["n_matches"] == 4).all() and (table["n_failed"] == 0).all()  # 2 questions x 2 turns, none lost
    assert table.loc["right", "win"] == table.loc["wrong & <bad>", "loss"]
    export = mt_board / "fastchat" / "model_judgment" / "judge_pair.jsonl"
    lines = [json.loads(line) for line in export.read_text().splitlines()]
    assert {line["judge"][1] for line in lines} == {"pair-v2", "pair-math-v1", "pair-v2-multi-turn",
                                                    "pair-math-v1-multi-turn"}
    assert all(line["g1_winner"] in ("model_1", "model_2", "tie") for line in lines)
    assert all(line["g2_winner"] in ("model_1", "model_2", "tie") for line in lines)
    shown = subprocess.run([sys.executable, "-m", "fastchat.llm_judge.show_result", "--mode", "pairwise-all",
                            "--input-file", str(export)], capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr[-2000:]
    for model, row in table.iterrows():
        line = next(l for l in shown.stdout.splitlines() if l.startswith(model))
        win, loss, tie, *_, adjusted = line[len(model):].split()
        assert [int(win), int(loss), int(tie)] == [row["win"], row["loss"], row["tie"]]
        assert float(adjusted) == pytest.approx(row["win_rate_adjusted"], abs=1e-4)
    assert "## MT-Bench pairwise (FastChat's pairwise-all)" in (mt_board / "board.md").read_text()
    assert json.loads((mt_board / "manifest.json").read_text())["pairwise"]["n_matches"] == 4


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_the_page_in_chromium_shows_ratings_explanations_and_escapes_text(mt_board, tmp_path):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", (mt_board / "board.html").as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    # the answer's markup stays text: no such element in the DOM (its escaped text may show quotes)
    assert '<h1 id="injected"' not in html and "<script>document.title" not in html
    assert "pwned" not in html.split("<title>")[1].split("</title>")[0]
    assert '<table id="board">' in html and '<img id="radar"' in html and '<table id="published">' in html
    assert '<table id="pairwise">' in html
    assert html.count('class="rating"') == 8 and html.count('class="judgment"') == 8
    assert "wrong &amp; &lt;bad&gt;" in html
    shot = subprocess.run(cmd[:-2] + [f"--screenshot={tmp_path / 'shot.png'}", "--window-size=1200,2000",
                                      (mt_board / "board.html").as_uri()], capture_output=True, timeout=120)
    assert shot.returncode == 0 and (tmp_path / "shot.png").stat().st_size > 10_000


@pytest.mark.skipif(not AB.is_dir(), reason="needs the AlignBench files")
def test_alignbench_aggregation_and_export(tmp_path):
    docs = [json.loads(line) for line in (AB / "data" / "data_v1.1_release.jsonl").read_text().splitlines()]
    picked = [next(d for d in docs if d["category"] == c) for c in ("数学计算", "逻辑推理", "文本写作")]
    norm = [{"instruction": d["question"], "input": "", "dataset": d["category"], "question_id": d["question_id"],
             "category": d["category"], "turns": [d["question"]], "reference": [d["reference"]],
             "meta": {"subcategory": d["subcategory"]}} for d in picked]
    files = {role: str(AB / "config" / f"{role}.json") for role in
             ("dimension_set", "dimension_definition", "subcategory_question_mapping")}
    questions = write_set(tmp_path, "alignbench-limit3", norm, {"protocol": "grade", "grader": "alignbench",
                                                                "files": files, "limit": 3, "n_total": 683})
    (tmp_path / "m.json").write_text(json.dumps([{"instruction": q["instruction"], "input": "", "output": "不知道。",
                                                   "generator": "m", "question_id": q["question_id"],
                                                   "category": q["category"], "turn_outputs": ["不知道。"]}
                                                  for q in norm], ensure_ascii=False))
    done = run_board(tmp_path, questions, ["m.json"], "--fast")
    assert done.returncode == 0, done.stderr[-3000:]
    board = pd.read_csv(tmp_path / "board.csv").iloc[0]
    reasoning = (board["数学计算"] + board["逻辑推理"]) / 2
    assert board["Reasoning"] == pytest.approx(reasoning, abs=1e-3)
    assert board["Language"] == pytest.approx(board["文本写作"], abs=1e-3)
    assert board["Overall"] == pytest.approx((reasoning + board["文本写作"]) / 2, abs=1e-3)
    assert board["score"] == pytest.approx(board["Overall"], abs=1e-3) and board["n_failed"] == 0
    export = [json.loads(line) for line in (tmp_path / "alignbench" / "model_judgment" / "m.jsonl").read_text().splitlines()]
    assert len(export) == 3 and all(1 <= d["score"] <= 10 and d["dimensions"] for d in export)
    assert "参考答案本身记8分" in export[0]["judge_prompt"] and picked[0]["reference"] in export[0]["judge_prompt"]
