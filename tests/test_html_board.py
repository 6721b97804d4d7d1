"""board.html in a real headless browser (Debian's chromium): it loads, its table shows every
model, model text is escaped (a hostile answer stays text), the model-vs-model matrix, Bradley-Terry and
judge agreement are shown, and a screenshot is taken."""
import shutil
import subprocess

import pytest

from board.pairwise.compare import bradley_terry, judge_agreement, reference_battles, versus_table
from board.pairwise.stats import board_table, judge_consistency, warnings_for
from board.pairwise.views import write_all, write_csv
from judges.pairs import combine

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")

HOSTILE = '</pre><script>document.title="pwned"</script><img src=x onerror=alert(1)><h1 id="injected">x</h1>'
MODELS = ["alpha", "beta & <gamma>", "delta"]


def results():
    rows = []
    for qid, question in enumerate(["What is 2 + 2?", "天空为什么是蓝色的？", "Write a haiku."]):
        for i, model in enumerate(MODELS):
            identical = model == "delta" and qid == 0
            output = "same" if identical else (HOSTILE if model == "alpha" else f"{model} answer {qid} " * (i + 1))
            pref, agree = (1.5, None) if identical else combine(1 + 0.3 * i, 1.4 + 0.2 * qid)
            rows.append({"model": model, "question_id": qid, "instruction": question, "model_output": output,
                         "reference_output": "same" if qid == 0 else "reference answer", "identical": identical,
                         "pref_model_first": None if identical else 1 + 0.3 * i,
                         "pref_reference_first": None if identical else 1.4 + 0.2 * qid,
                         "preference": pref, "consistent": agree, "n_calls": 0 if identical else 2, "n_failed": 0})
    return rows


def start_tags(html: str) -> list[tuple[str, dict]]:
    from html.parser import HTMLParser

    found = []

    class Collector(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, dict(attrs)))

    Collector().feed(html)
    return found


def chromium(*args, profile):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = tmp_path_factory.mktemp("board")
    data = results()
    board = board_table(data)
    consistency, n = judge_consistency(data)
    about = {"judge": {"name": "tiny <judge>", "kind": "llama.cpp", "protocol": "logprob-v1", "last_check": None},
             "reference": "ref", "n_questions": 3}
    warnings = warnings_for(board, consistency, n, "tiny <judge>", 3, None)
    flipped = [{**r, "preference": 3 - r["preference"]} for r in data]
    compare = {"versus": versus_table(data), "bt": bradley_terry(reference_battles(data, "ref"), "ref"),
               "agreement": judge_agreement({"tiny <judge>": data, "other": flipped})}
    about["judge_agreement"] = compare["agreement"].to_dict("records")
    write_all(board, about, warnings, data, out, low_consistency=True, compare=compare)
    write_csv(board, out / "board.csv")
    return out


def test_page_loads_with_every_model_and_escaped_text(page, tmp_path):
    dom = chromium("--dump-dom", (page / "board.html").as_uri(), profile=tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert '<table id="board">' in html
    table = html.split('<table id="board">', 1)[1].split("</table>", 1)[0]
    for model in ["alpha", "beta &amp; &lt;gamma&gt;", "delta"]:
        assert f'<td class="model">{model}</td>' in table
    tags = start_tags(html)
    assert "script" not in {tag for tag, _ in tags}  # the page has none, and the answer added none
    assert not [attrs for _, attrs in tags if attrs.get("id") == "injected" or "onerror" in attrs]
    assert len([tag for tag, _ in tags if tag == "img"]) == 1  # only the chart
    assert "<title>Leaderboard" in html and "pwned" not in html.split("</title>", 1)[0]
    assert "&lt;script&gt;" in html  # the hostile answer is shown, as text
    assert "JUDGE WITHOUT SIGNAL" in html and "天空为什么是蓝色的" in html
    versus = html.split('<table id="versus">', 1)[1].split("</table>", 1)[0]
    assert versus.count("<tr>") == 1 + len(MODELS) and '<td class="model">beta &amp; &lt;gamma&gt;</td>' in versus
    assert "95% percentile bootstrap interval" in html
    bt = html.split('<table id="bradley-terry">', 1)[1].split("</table>", 1)[0]
    assert all(f'<td class="model">{m}</td>' in bt for m in ["alpha", "delta", "ref"])
    assert '<table id="agreement">' in html and "Cohen's kappa" in html.replace("&#x27;", "'")


def test_screenshot(page, tmp_path):
    shot = tmp_path / "board.png"
    result = chromium(f"--screenshot={shot}", "--window-size=1280,1600", (page / "board.html").as_uri(),
                      profile=tmp_path / "profile")
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_other_views(page):
    assert (page / "board.png").read_bytes()[:4] == b"\x89PNG"
    md = (page / "board.md").read_text(encoding="utf-8")
    assert "| model |" in md and "beta & <gamma>" in md and "WARNING" in md
    assert "## Model against model" in md and "## Bradley-Terry" in md and "## Agreement between judges" in md
    versus = (page / "board_versus.csv").read_text(encoding="utf-8").splitlines()
    assert versus[0] == "model_a,model_b,n_questions,diff,ci_low,ci_high,p_a_ahead" and len(versus) == 1 + 3 * 2
    assert (page / "board_bradley_terry.csv").read_text(encoding="utf-8").startswith("model,strength,")
    assert (page / "board.csv").read_text(encoding="utf-8").splitlines()[0].startswith(
        "model,win_rate,standard_error,n_wins,n_wins_base,n_draws,n_total,discrete_win_rate,avg_length,"
        "win_rate_ci_low,win_rate_ci_high,lc_win_rate,lc_standard_error,position_consistency,n_judge_calls,n_failed")
