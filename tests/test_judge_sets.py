"""make judge-check PAIRS=NAME: the human-labelled pair sets fetched from 127.0.0.1 (the real files of
../shared/benchmarks), their labels, the LIMIT sample, the scoring against PandaLM's and LLMBar's own
figures, LLMBar's prompts byte for byte, the embedded judge end to end, and one line per bad input."""
import json
import re
from pathlib import Path

import pytest

from judge_sets import load_pair_sets, read_pair_set, sample
from lib.records import InputError

ROOT = Path(__file__).resolve().parent.parent
SMOLLM2 = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
needs_model = pytest.mark.skipif(not SMOLLM2.is_file(), reason="run `make models` first")


def test_every_declared_set_is_fetched_checked_and_read_with_its_labels(bench_data_url, monkeypatch, bench_layout):
    sizes = {"llmbar_natural": 100, "llmbar_adversarial": 319, "mt_bench_human": 200, "faireval": 66,
             "llmeval2": 200, "pandalm": 999}
    assert set(load_pair_sets()) == set(sizes)
    for name, n in sizes.items():
        pairs, info = read_pair_set(name)
        assert len(pairs) == n == info["n_total"]
        assert all(p["instruction"] and isinstance(p["output_1"], str) and isinstance(p["output_2"], str) for p in pairs)
    _, adversarial = read_pair_set("llmbar_adversarial")
    assert adversarial["subset_sizes"] == {"Neighbor": 134, "GPTInst": 92, "GPTOut": 47, "Manual": 46}
    pandalm, info = read_pair_set("pandalm")
    assert info["ties"] and [sum(p["label"] == c for p in pandalm) for c in ("tie", "1", "2")] == [105, 422, 472]
    # offline, the cache is enough; and a file:// mirror is read without the network
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert len(read_pair_set("faireval")[0]) == 66
    monkeypatch.setenv("LLMEVAL_DATA_DIR", str(bench_layout.parent / "fresh-cache"))
    monkeypatch.setenv("LLMEVAL_DATA_URL", bench_layout.as_uri())
    assert len(read_pair_set("llmbar_natural", limit=5)[0]) == 5


def test_limit_is_stratified_by_subset_and_label_with_a_fixed_seed(bench_data_url):
    pairs, _ = read_pair_set("pandalm")
    forty = sample(pairs, 40)
    assert len(forty) == 40 and forty == sample(pairs, 40)
    counts = [sum(p["label"] == c for p in forty) for c in ("tie", "1", "2")]
    assert counts == [4, 17, 19]  # 105 / 422 / 472 of 999, in proportion
    assert {p["id"] for p in sample(pairs, 20)} <= {p["id"] for p in forty}
    adversarial, _ = read_pair_set("llmbar_adversarial", limit=32)
    assert {p["subset"] for p in adversarial} == {"Neighbor", "GPTInst", "GPTOut", "Manual"}


def test_pandalm_own_predictions_through_our_scoring_give_its_published_figures(bench_data_url):
    import csv

    from judge_scores import three_way
    from judge_sets import predictions

    pairs, info = read_pair_set("pandalm")
    got = {judge: three_way([{"label": p["label"], "pred": v} for p, v in zip(pairs, preds)], count_missing=True)
           for judge, preds in predictions(info, pairs).items()}
    assert (round(got["gpt-3.5-turbo"]["accuracy"], 1), round(got["gpt-3.5-turbo"]["macro_f1"], 1)) == (69.8, 52.7)
    assert got["gpt-3.5-turbo"]["unlabelled"] == 25
    assert (round(got["pandalm-7b"]["accuracy"], 1), round(got["pandalm-7b"]["macro_f1"], 1)) == (66.8, 57.4)
    low, high = got["gpt-3.5-turbo"]["macro_f1_ci"]
    assert low < 52.7 < high
    shipped = {r["evaluator"]: r for r in csv.DictReader((ROOT / "data/published/pandalm_judges.csv").open())}
    for judge, figures in got.items():
        assert float(shipped[judge]["accuracy"]) == round(figures["accuracy"], 2)
        assert float(shipped[judge]["macro_f1"]) == round(figures["macro_f1"], 2)


def test_published_llmbar_figures_match_its_statistics_json_at_the_pinned_commit():
    import csv

    stats = json.loads((ROOT / "tests/data/llmbar_natural_statistics.json").read_text(encoding="utf-8"))
    assert "900616bff90b6c6c8e1681f7d079250637c55992" in stats["source"]
    rows = [r for r in csv.DictReader((ROOT / "data/published/llmbar_judges.csv").open()) if r["dataset"] == "LLMBar/Natural"]
    assert len(rows) == len(stats["statistics"]) == 65

    def pct(text: str) -> float:
        return float(re.search(r"([\d.]+)%$", text).group(1))
    for r in rows:
        s = stats["statistics"][f"{r['evaluator']}/{r['strategy']}"]
        assert float(r["accuracy_average"]) == pytest.approx(pct(s["correct_average"]), abs=0.006)
        assert float(r["accuracy_output1_first"]) == pytest.approx(pct(s["correct_False"]), abs=0.006)
        assert float(r["accuracy_swapped"]) == pytest.approx(pct(s["correct_True"]), abs=0.006)
        assert float(r["correct_both_orders"]) == pytest.approx(pct(s["correct_both"]), abs=0.006)
        assert float(r["same_choice_both_orders"]) == pytest.approx(pct(s["equal"]), abs=0.006)


def test_llmbar_prompts_are_llmbars_own_bytes_and_replies_are_parsed_with_its_regexes(bench_data_url):
    from alpaca_eval.utils import prompt_to_chatml as llmbar_prompt_to_chatml  # LLMBar's copy is this function

    from judge_sets import prompt_files
    from judges.labels import result_from_text
    from judges.llmbar import fill, llmbar_call, load_llmbar

    prompts = load_llmbar(prompt_files("llmbar"))
    pairs, _ = read_pair_set("llmbar_natural", limit=6)
    for strategy in ("Vanilla_NoRules", "Vanilla"):
        template = prompts["templates"][strategy]
        for p in pairs:
            kwargs = {"input": p["instruction"], "output_1": p["output_2"], "output_2": p["output_1"]}  # swapped
            own = template.format_map(kwargs)  # LLMBar's evaluate.py, byte for byte
            assert fill(template, p["instruction"], p["output_2"], p["output_1"]) == own
            call = llmbar_call(prompts, strategy, p["instruction"], p["output_2"], p["output_1"], api=True)
            assert call.messages() == [{"role": m["role"], "content": m["content"]} for m in llmbar_prompt_to_chatml(own)]
    parse = call.parser
    assert parse("Output (b)") == "Output (b)" and parse(" Output (a)\nbecause") == "Output (a)"
    assert parse("Both are good") is None and parse("I pick Output (a)") is None  # LLMBar: ^ or \n first
    assert result_from_text(call, "Neither.").get("unparsed")  # a failed call: counted, never guessed


def test_bad_input_is_one_line_each(bench_data_url, tmp_path, capsys, monkeypatch):
    from data import fetch
    from judge_check import main
    from judge_sets import read_pairs_file

    (tmp_path / "models.toml").write_text(f'[models.tiny]\npath = "{SMOLLM2}"\n', encoding="utf-8")
    base = ["--judge", "tiny", "--models-toml", str(tmp_path / "models.toml"), "--out", str(tmp_path / "out")]
    assert main(base + ["--pairs", "no_such_set"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: PAIRS=no_such_set: neither a file nor a pair set") and "\n" not in err
    entry = dict(load_pair_sets()["faireval"]["files"][0], sha256="0" * 64)
    with pytest.raises(InputError, match="not the pinned"):
        fetch("faireval", entry)
    table = load_pair_sets()["pandalm"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"instruction": "q", "input": "", "response1": "a", "response2": "b",
                               "annotator1": 1, "annotator2": 2}) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.jsonl:1: label field 'annotator3' is missing"):
        read_pairs_file(bad, table, "pairs")
    bad.write_text(json.dumps({"instruction": "q", "response1": "a", "response2": "b",
                               "annotator1": 1, "annotator2": 7, "annotator3": 1}) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"label annotator2 = 7 is not one of 0, 1, 2"):
        read_pairs_file(bad, table, "pairs")
    from judges.prompt import alpaca_eval_configs_dir
    annotator = str(alpaca_eval_configs_dir() / "chatgpt_fn" / "configs.yaml")
    assert main(["--judge", annotator, "--out", str(tmp_path / "out"), "--models-toml", str(tmp_path / "models.toml"),
                 "--pairs", "faireval", "--limit", "2", "--protocol", "llmbar"]) == 2
    err = capsys.readouterr().err.strip()
    assert "PROTOCOL=llmbar" in err and "cannot run it" in err and "\n" not in err.split("error:", 1)[1]


def test_user_declared_pair_set(bench_data_url, tmp_path):
    """A set of one's own in judge_sets.toml's format: a url file pinned by sha256."""
    import hashlib

    from judge_sets import read_pair_set as read

    mine = tmp_path / "mine.jsonl"
    mine.write_text("".join(json.dumps({"q": f"{k} + 1 = ?", "a": str(k + 1), "b": str(k + 2), "better": "A"}) + "\n"
                            for k in range(6)), encoding="utf-8")
    digest = hashlib.sha256(mine.read_bytes()).hexdigest()
    toml = tmp_path / "judge_sets.toml"
    toml.write_text(f'[pairs.mine]\nfields = {{ instruction = ["q"], output_1 = "a", output_2 = "b" }}\n'
                    f'label = {{ field = "better", values = {{ A = "1", B = "2" }} }}\n'
                    f'files = [ {{ role = "pairs", url = "{mine.as_uri()}", sha256 = "{digest}" }} ]\n', encoding="utf-8")
    pairs, info = read("mine", limit=4, path=toml)
    assert len(pairs) == 4 and {p["label"] for p in pairs} == {"1"} and info["n_total"] == 6


@needs_model
def test_embedded_judge_on_pandalm_beside_the_published_judges_and_the_board_quotes_it(bench_data_url, tmp_path, capsys):
    """Both protocols on 2 of PandaLM's pairs (its texts are short): 3-way figures with intervals,
    GPT-3.5's published figures beside them (on all pairs and on these), and the board's header."""
    from board.pairwise.views import header_lines
    from judge_check import main
    from judge_human import human_summary, result_path

    (tmp_path / "models.toml").write_text(f'[models.tiny]\npath = "{SMOLLM2}"\nn_ctx = 2048\n', encoding="utf-8")
    out = tmp_path / "out"
    base = ["--judge", "tiny", "--models-toml", str(tmp_path / "models.toml"), "--out", str(out), "--pairs", "pandalm",
            "--limit", "2"]
    assert main(base) == 0
    assert main(base + ["--protocol", "llmbar", "--llmbar-prompts", "Vanilla_NoRules"]) == 0
    printed = capsys.readouterr().out
    check = json.loads(result_path(out, "tiny", "pandalm", 2, "pairwise").read_text(encoding="utf-8"))
    figures = check["figures"]["all"]
    assert check["n_pairs"] == 2 and check["calls"]["made"] == 4 and figures["n_failed"] == 0
    assert 0 <= figures["three_way"]["accuracy"] <= 100 and figures["three_way"]["accuracy_ci"][0] is not None
    assert {r["evaluator"] for r in check["published"]} == {"gpt-3.5-turbo", "pandalm-7b"}
    assert "gpt-3.5-turbo (published)" in printed and "llmbar/Vanilla_NoRules" in printed and "tie when the two orders" in printed
    table = (out / "judge" / "checks" / "pandalm-limit2.table.md").read_text(encoding="utf-8")
    assert "| tiny | pairwise |" in table and "| tiny | llmbar/Vanilla_NoRules |" in table  # both protocols shown
    assert result_path(out, "tiny", "pandalm", 2, "pairwise").with_suffix(".csv").is_file()
    summary = human_summary(out, "tiny")
    lines = header_lines({"judge": {"name": "tiny", "kind": "llama.cpp", "protocol": "logits-v2", "last_check": None,
                                    "human_agreement": summary}, "reference": "r", "n_questions": 1})
    quoted = [line for line in lines if line.startswith("agreement of tiny with people on pandalm (2 of 999 pairs")]
    assert len(quoted) == 2 and all("gpt-3.5-turbo published 3-way 69.8%, macro-F1 52.7" in line for line in quoted)
    from board.graded.views import header  # the graded board's header (text, Markdown, HTML) quotes them too
    graded = header({"grader": "own", "judge": "tiny", "judge_kind": "llama.cpp", "questions": "q", "human_agreement": summary})
    assert [line for line in graded if line.startswith("agreement of tiny")] == quoted


@needs_model
def test_embedded_judge_on_llmbar_natural_and_graded_on_mt_bench_human(bench_data_url, tmp_path, capsys):
    from judge_check import main
    from judge_human import result_path

    (tmp_path / "models.toml").write_text(f'[models.tiny]\npath = "{SMOLLM2}"\nn_ctx = 4096\n', encoding="utf-8")
    out = tmp_path / "out"
    base = ["--judge", "tiny", "--models-toml", str(tmp_path / "models.toml"), "--out", str(out)]
    assert main(base + ["--pairs", "llmbar_natural", "--limit", "2"]) == 0
    check = json.loads(result_path(out, "tiny", "llmbar_natural", 2, "pairwise").read_text(encoding="utf-8"))
    figures = check["figures"]["all"]
    for key in ("accuracy", "accuracy_first", "accuracy_second", "correct_both", "same_choice"):
        assert 0 <= figures[key] <= 100
    gpt4 = next(r for r in check["published"] if r["evaluator"] == "GPT-4" and r["strategy"] == "Vanilla_NoRules")
    assert gpt4["subsets"]["pairs"]["accuracy"] == 93.5 and gpt4["prompt"].startswith("a different prompt")
    assert main(base + ["--pairs", "mt_bench_human", "--limit", "1", "--protocol", "grade", "--fast"]) == 0
    graded = json.loads(result_path(out, "tiny", "mt_bench_human", 1, "grade").read_text(encoding="utf-8"))
    row = graded["pairs"][0]
    assert graded["protocol"] == "grade/mt_bench-single-v1" and graded["calls"]["made"] == 2
    assert row["pred"] == ("tie" if abs(row["rating_1"] - row["rating_2"]) < 0.5 else "1" if row["rating_1"] > row["rating_2"] else "2")
    assert "less than 0.5" in graded["tie_rule"]


def test_make_passes_a_named_set_its_limit_and_the_protocol(tmp_path):
    import subprocess

    (tmp_path / "models.toml").write_text('[models.a]\npath = "a.gguf"\n', encoding="utf-8")
    cmd = ["make", "-n", "--no-print-directory", "-C", str(ROOT), "judge-check", "JUDGE=a", "PAIRS=pandalm", "LIMIT=40",
           "PROTOCOL=llmbar", f"OUT={tmp_path / 'out'}", f"MODELS_TOML={tmp_path / 'models.toml'}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    line = " ".join(done.stdout.replace("\\\n", " ").split())
    assert done.returncode == 0, done.stderr
    assert "tools/judge_check.py --judge a" in line and "--pairs pandalm --protocol llmbar --limit 40" in line
