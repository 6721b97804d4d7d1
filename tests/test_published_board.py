"""The published leaderboards beside ours (tools/board/published.py, board/arena_hard/board.py): the
tables the sets name (AlpacaEval 2.0's and 1.0's inside the installed alpaca_eval package,
Arena-Hard v0.1's under data/published/), their well-known rows and the rows nearest each of our
models, labelled with their judge and when they are comparable; and both sections rendered in
board.html by a real headless Chromium, next to the Arena-Hard score section."""
import shutil
import subprocess

import pandas as pd
import pytest

from lib.benchsets import load_sets
from board.arena_hard.score import LABELS
from board.arena_hard.board import arena_table, extra_sections
from board.published import load_published, published_section
from board.pairwise.stats import board_table, judge_consistency, warnings_for
from board.pairwise.views import write_all
from judges.pairs import combine

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SETS = load_sets()


def test_alpaca_eval_2_table_is_the_packaged_one():
    table = load_published(SETS["alpaca_eval"]["published"])
    assert len(table) == 223 and table["lc_win_rate"].notna().all()
    row = table.set_index("model").loc["gpt4_1106_preview"]
    assert row["win_rate"] == pytest.approx(50) and row["length_unit"] == "characters"
    first = load_published(SETS["alpaca_eval_1"]["published"])
    assert "claude" in set(first["model"]) and first["lc_win_rate"].isna().all()  # 1.0: no LC
    arena = load_published(SETS["arena_hard"]["published"])
    assert len(arena) == 60 and arena.set_index("model").loc["gpt-4-0314", "score"] == pytest.approx(50)


def board(models=("tiny_a", "tiny_b")):
    rows = []
    for qid in range(4):
        for i, model in enumerate(models):
            pref, agree = combine(1.2 + 0.2 * i, 1.6)
            rows.append({"model": model, "question_id": qid, "instruction": f"Q{qid}", "model_output": "x" * (50 + qid),
                         "reference_output": "reference", "identical": False, "pref_model_first": 1.2 + 0.2 * i,
                         "pref_reference_first": 1.6, "preference": pref, "consistent": agree, "n_calls": 2,
                         "n_failed": 0})
    return rows


def test_nearest_rows_and_comparability():
    results = board()
    ours = board_table(results)
    ours.loc["tiny_a", "lc_win_rate"] = 4.0  # between published rows
    title, table, note = published_section(SETS["alpaca_eval"]["published"], ours, "smollm2_135m")
    assert "weighted_alpaca_eval_gpt4_turbo" in title
    assert "comparable with ours only when JUDGE=weighted_alpaca_eval_gpt4_turbo" in note and "not" in note
    lc = table.set_index("model")["LC win rate"].astype(float)
    assert "tiny_a (ours)" in lc.index and "gpt4_1106_preview" in lc.index  # a well-known row
    rank = list(lc.index).index("tiny_a (ours)")
    assert lc.iloc[rank - 1] >= 4.0 >= lc.iloc[rank + 1]  # its published neighbours, above and below
    published = pd.read_csv(__import__("board.published", fromlist=["x"]).published_path(SETS["alpaca_eval"]["published"]))
    nearest = published.iloc[(published["length_controlled_winrate"] - 4.0).abs().argsort()[:2]].iloc[:, 0]
    assert set(nearest) <= set(lc.index)
    _, _, same = published_section(SETS["alpaca_eval"]["published"], ours, "weighted_alpaca_eval_gpt4_turbo")
    assert "(it is: this board used it)" in same


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = tmp_path_factory.mktemp("board")
    results = board()
    games = [{"model": r["model"], "question_id": r["question_id"], "game": n, "label": LABELS[(r["question_id"] + n) % 5]}
             for r in results for n in (1, 2)]
    arena, about_arena = arena_table(games, results, "gpt-4-0314", out)
    ours = board_table(results)
    consistency, n = judge_consistency(results)
    about = {"judge": {"name": "tiny", "kind": "llama.cpp", "protocol": "Arena-Hard-Auto v0.1", "last_check": None},
             "reference": "gpt-4-0314", "n_questions": 4,
             "set": {"name": "arena_hard", "notes": ["a note the board must show"]}}
    compare = {"sections": extra_sections({"published": SETS["arena_hard"]["published"]}, ours, "tiny", arena, about_arena)
               + extra_sections({"published": SETS["alpaca_eval"]["published"]}, ours, "tiny", None, None)}
    write_all(ours, about, warnings_for(ours, consistency, n, "tiny", 4, None), results, out, False, compare)
    return out


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_published_sections_render_in_chromium(page, tmp_path):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", (page / "board.html").as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    arena = html.split('<table id="arena-hard">', 1)[1].split("</table>", 1)[0]
    assert "tiny_a" in arena and "gpt-4-0314" in arena
    tables = html.split('<table id="published">')
    assert len(tables) == 3  # Arena-Hard's published table, then AlpacaEval 2.0's
    assert "Published leaderboard (judge: gpt-4-1106-preview)" in html
    assert "only when JUDGE=gpt-4-1106-preview" in html and "only when JUDGE=weighted_alpaca_eval_gpt4_turbo" in html
    assert "claude-3-opus-20240229" in tables[1] and "tiny_a (ours)" in tables[1] and "tiny_b (ours)" in tables[2]
    assert "a note the board must show" in html
    assert "Arena-Hard-Auto v0.1 score" in (page / "board.md").read_text(encoding="utf-8")
