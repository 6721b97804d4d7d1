"""Benchmark sets (tools/data.py, benchsets.py, benchformats.py): the real files, fetched by the
real download code from a local server made from ../shared/benchmarks (or file://), checked by
their pinned sha256, normalized, sampled with LIMIT, and used by make."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lib import benchsets
import data
from lib.records import InputError, load_questions, question_key

ROOT = Path(__file__).resolve().parent.parent
SIDECAR_KEYS = {"name", "protocol", "grader", "files", "reference_outputs", "reference_name", "published",
                "limit", "seed", "n_total", "notes"}


def run_data(*args, env=None):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "data.py"), *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, cwd=ROOT)


def test_every_set_fetched_and_normalized(bench_data_url, tmp_path):
    """Each declared set comes from the local server with its real sha256s, in the right counts."""
    out = tmp_path / "out"
    sets = {name: load_questions(data.build(name, None, out)) for name in benchsets.load_sets()}
    for table in benchsets.load_sets().values():  # the cache holds the pinned bytes
        for entry in table["files"]:
            assert hashlib.sha256(data.cache_path(entry).read_bytes()).hexdigest() == entry["sha256"]

    mt = sets["mt_bench"]
    assert len(mt) == 80 and all(len(q["turns"]) == 2 for q in mt)
    with_ref = [q for q in mt if q["reference"]]
    assert sorted(q["question_id"] for q in with_ref) == list(range(101, 131))
    assert {q["category"] for q in with_ref} == {"math", "reasoning", "coding"}
    assert all(len(q["reference"]) == 2 for q in with_ref)
    settings = {q["category"]: q["generation"] for q in mt}
    assert settings["writing"] == {"temperature": 0.7, "max_tokens": 1024}
    assert settings["stem"]["temperature"] == 0.1 and settings["math"]["temperature"] == 0.0

    for name, generator in (("alpaca_eval", "gpt4_1106_preview"), ("alpaca_eval_1", "text_davinci_003")):
        questions = sets[name]
        assert len(questions) == 805
        assert {q["dataset"] for q in questions} == {"helpful_base", "koala", "oasst", "selfinstruct", "vicuna"}
        info = benchsets.set_info(out / "sets" / f"{name}.jsonl")
        reference = json.loads(Path(info["reference_outputs"]).read_text(encoding="utf-8"))
        assert [question_key(r) for r in reference] == [question_key(q) for q in questions]
        assert {r["generator"] for r in reference} == {generator}
        assert sum(not r["output"] for r in reference) < 10  # text_davinci_003 left a few empty, as published

    arena = sets["arena_hard"]
    assert len(arena) == 500 and len({q["dataset"] for q in arena}) == 250  # the clusters
    assert all(q["meta"]["cluster"] == q["dataset"] for q in arena)
    assert all(q["generation"] == {"temperature": 0.0, "max_tokens": 4096} for q in arena)  # its gen config
    info = benchsets.set_info(out / "sets" / "arena_hard.jsonl")
    assert info["reference_name"] == "gpt-4-0314" and "judge_config" in info["files"]
    assert "[[A>>B]]" in Path(info["files"]["judge_config"]).read_text(encoding="utf-8")

    v2 = sets["arena_hard_v2"]
    assert len(v2) == 500 and {q["meta"]["category"] for q in v2} == {"hard_prompt"}
    notes = benchsets.set_info(out / "sets" / "arena_hard_v2.jsonl")["notes"]
    assert any("creative_writing" in n and "left out" in n for n in notes)  # said, not dropped silently

    align = sets["alignbench"]
    assert len(align) == 683 and all(q["reference"] and len(q["reference"]) == 1 for q in align)
    assert len({q["category"] for q in align}) == 8 and len({q["meta"]["subcategory"] for q in align}) == 36
    assert all(q["meta"]["dimensions"] for q in align)
    temperatures = json.loads(Path(benchsets.set_info(out / "sets" / "alignbench.jsonl")["files"]["temperature"])
                              .read_text(encoding="utf-8"))
    assert all(q["generation"] == {"temperature": temperatures[q["category"]]} for q in align)

    for name in sets:
        info = benchsets.set_info(out / "sets" / f"{name}.jsonl")
        assert SIDECAR_KEYS <= set(info) and info["n_total"] == len(sets[name]) and info["limit"] is None
        assert all(Path(p).is_absolute() and Path(p).is_file() for p in info["files"].values())
    assert benchsets.set_info(ROOT / "data" / "llm_benchmark_tiny.txt") is None


def test_published_tables_named_and_present(bench_data_url, tmp_path):
    for name, table in benchsets.load_sets().items():
        published = table.get("published")
        if published is None:
            assert name == "arena_hard_v2"  # none ships; its notes say so
            continue
        assert published["judge"] and published["comparable_with"]
        csv = benchsets.published_path(published)
        assert csv is not None and csv.read_text(encoding="utf-8").count("\n") > 10, published
        if name == "alpaca_eval":  # AlpacaEval 2.0's 223 models, with the LC win rate
            header, *rows = csv.read_text(encoding="utf-8").splitlines()
            assert len(rows) >= 223 and "length_controlled_winrate" in header


def test_corrupted_file_refused_and_not_cached(bench_layout, tmp_path):
    """A mirror serving other bytes: one line, and the file is never left in the cache."""
    from benchdata import serve

    layout = tmp_path / "layout"
    shutil.copytree(bench_layout, layout, symlinks=True)
    entry = benchsets.load_sets()["mt_bench"]["files"][0]
    served = layout / entry["repo"] / entry["commit"] / entry["path"]
    good = served.read_bytes()
    served.unlink()
    served.write_bytes(good.replace(b"Hawaii", b"Hawai'i", 1))
    server, url = serve(layout)
    try:
        env = {"LLMEVAL_DATA_URL": url, "LLMEVAL_DATA_DIR": str(tmp_path / "cache")}
        result = run_data("mt_bench", "--out", str(tmp_path / "out"), env=env)
    finally:
        server.shutdown()
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: mt_bench:") and "sha256" in lines[0]
    assert "not used" in lines[0] and "Traceback" not in result.stderr
    cached = tmp_path / "cache" / entry["repo"] / entry["commit"] / entry["path"]
    assert not cached.exists() and not list(cached.parent.glob("*.part"))
    assert not (tmp_path / "out" / "sets").exists()


def test_wrong_file_in_cache_is_fetched_again(bench_data_url, tmp_path):
    entry = benchsets.load_sets()["mt_bench"]["files"][2]
    data.fetch("mt_bench", entry)
    cached = data.cache_path(entry)
    cached.write_bytes(b"edited by hand\n")
    assert data.fetch("mt_bench", entry) == cached
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == entry["sha256"]


def test_offline_miss_is_one_line(bench_data_url, tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "LLMEVAL_DATA_DIR": str(tmp_path / "empty-cache")}
    result = run_data("alignbench", "--out", str(tmp_path / "out"), env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("error: alignbench:") and "make data QUESTIONS=alignbench" in line
    assert str(tmp_path / "empty-cache" / "THUDM" / "AlignBench") in line  # where to put it by hand


def test_offline_with_cached_files_needs_no_network(bench_data_url, tmp_path):
    data.build("mt_bench", None, tmp_path / "first")
    env = {"HF_HUB_OFFLINE": "1", "LLMEVAL_DATA_URL": "http://127.0.0.1:1"}  # nothing listens there
    result = run_data("mt_bench", "--out", str(tmp_path / "again"), env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "again" / "sets" / "mt_bench.jsonl").read_bytes() == \
        (tmp_path / "first" / "sets" / "mt_bench.jsonl").read_bytes()


def test_file_url_and_unreachable_mirror(bench_layout, tmp_path):
    env = {"LLMEVAL_DATA_URL": bench_layout.as_uri(), "LLMEVAL_DATA_DIR": str(tmp_path / "cache"),
           "HF_HUB_OFFLINE": "1"}  # a local folder is not the network
    result = run_data("arena_hard", "--out", str(tmp_path / "out"), env=env)
    assert result.returncode == 0, result.stderr
    assert len(load_questions(tmp_path / "out" / "sets" / "arena_hard.jsonl")) == 500
    env = {"LLMEVAL_DATA_URL": "http://127.0.0.1:1", "LLMEVAL_DATA_DIR": str(tmp_path / "cache2")}
    result = run_data("arena_hard", "--out", str(tmp_path / "out"), env=env)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "cannot fetch http://127.0.0.1:1/" in lines[0]


def test_limit_is_stratified_and_stable(bench_set, tmp_path):
    mt = load_questions(bench_set("mt_bench", 16))
    assert [q["dataset"] for q in mt].count("writing") == 2
    assert {q["dataset"] for q in mt} == {"writing", "roleplay", "reasoning", "math", "coding", "extraction",
                                          "stem", "humanities"}
    again = load_questions(bench_set("mt_bench", 16, tmp_path / "other"))
    assert [q["question_id"] for q in again] == [q["question_id"] for q in mt]  # the same for every model
    alpaca = load_questions(bench_set("alpaca_eval", 100))
    full = load_questions(bench_set("alpaca_eval"))
    for dataset in {q["dataset"] for q in full}:  # in proportion to each dataset's size, within one
        share = sum(q["dataset"] == dataset for q in full) * 100 / 805
        assert abs(sum(q["dataset"] == dataset for q in alpaca) - share) < 1
    arena = load_questions(bench_set("arena_hard", 6))
    assert len({q["dataset"] for q in arena}) == 6  # six clusters, not six prompts of one
    info = benchsets.set_info(tmp_path / "out" / "sets" / "arena_hard-limit6.jsonl")
    assert info["limit"] == 6 and info["n_total"] == 500 and any("sample" in n for n in info["notes"])
    reference = json.loads(Path(info["reference_outputs"]).read_text(encoding="utf-8"))
    assert [question_key(r) for r in reference] == [question_key(q) for q in arena]


def test_stratified_sample_rules():
    questions = [{"question_id": i, "dataset": "a" if i < 30 else "b"} for i in range(40)]
    sample = benchsets.stratified_sample(questions, 8)
    assert [q["dataset"] for q in sample].count("a") == 6 and len(sample) == 8
    assert sample == sorted(sample, key=lambda q: q["question_id"])  # file order kept
    assert benchsets.stratified_sample(questions, 8, seed=1) != sample
    assert benchsets.stratified_sample(questions, 99) == questions
    small = {q["question_id"] for q in benchsets.stratified_sample(questions, 4)}
    assert small <= {q["question_id"] for q in sample}  # a smaller LIMIT takes a subset here


def test_bad_limit_and_unknown_set_are_one_line(tmp_path):
    for args, words in ((["mt_bench", "--limit", "0"], "LIMIT=0"), (["nope"], "no set named 'nope'"),
                        ([], "name a set")):
        result = run_data(*args, "--out", str(tmp_path))
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and words in lines[0], result.stderr


def test_benchmarks_toml_checked(tmp_path):
    toml = tmp_path / "b.toml"
    real = (ROOT / "data" / "benchmarks.toml").read_text(encoding="utf-8")
    toml.write_text(real.replace('protocol = "grade"\ngrader = "mt_bench"', 'protocol = "grade"\ngrader = "mt_bench"\nlimt = 3'),
                    encoding="utf-8")
    with pytest.raises(InputError, match=r"\[sets.mt_bench\]: unknown key 'limt'"):
        benchsets.load_sets(toml)
    toml.write_text(real.replace("119565adbab82227", "119565ADBAB82227"), encoding="utf-8")
    with pytest.raises(InputError, match="sha256 must be 64 lowercase hex"):
        benchsets.load_sets(toml)
    assert benchsets.make_info("mt_bench") == "SET:mt_bench"
    assert benchsets.make_info("alpaca_eval") == "SET:alpaca_eval REF:gpt4_1106_preview"
    assert benchsets.make_info("data/llm_benchmark_tiny.txt") == ""
    assert benchsets.make_info("nope", toml).startswith("ERROR ")


def test_a_set_of_your_own(bench_data_url, tmp_path):
    """A user's set: FastChat-format questions at any URL, declared in their own benchmarks.toml."""
    questions = tmp_path / "served" / "mine.jsonl"
    questions.parent.mkdir()
    questions.write_text('{"question_id": 1, "category": "chat", "turns": ["Hi?", "And then?"]}\n'
                         '{"question_id": 2, "category": "math", "turns": ["2+2?"]}\n', encoding="utf-8")
    digest = hashlib.sha256(questions.read_bytes()).hexdigest()
    toml = tmp_path / "mine.toml"
    toml.write_text(f'[sets.mine]\nformat = "fastchat"\nprotocol = "grade"\ngrader = "mt_bench"\n'
                    f'[sets.mine.generation]\ndefault = {{ max_tokens = 64 }}\n'
                    f'[[sets.mine.files]]\nrole = "questions"\nurl = "{questions.as_uri()}"\nsha256 = "{digest}"\n',
                    encoding="utf-8")
    result = run_data("mine", "--out", str(tmp_path / "out"), "--benchmarks", str(toml))
    assert result.returncode == 0, result.stderr
    mine = load_questions(tmp_path / "out" / "sets" / "mine.jsonl")
    assert [q["turns"] for q in mine] == [["Hi?", "And then?"], ["2+2?"]]
    assert mine[0]["generation"] == {"max_tokens": 64} and mine[1]["dataset"] == "math"


def test_cost_lines(bench_set):
    lines = data.cost_lines(bench_set("mt_bench"), 3)
    assert "80 questions (160 turns) x 3 models = 480 answers" in lines[0] and "480 gradings" in lines[0]
    assert "API judge reads about" in lines[1]
    lines = data.cost_lines(bench_set("alpaca_eval", 10), 2, n_judges=3)
    assert "10 questions x 2 orders x 2 models = 40" in lines[0] and "120 for 3 judges" in lines[0]
    assert "LIMIT=10 of 805" in lines[2]
    assert "2 games" in data.cost_lines(bench_set("arena_hard", 6), 1)[0]
    graded = data.cost_lines(bench_set("mt_bench"), 3, versus=True)[0]  # MT-Bench's pairwise mode beside the ratings
    assert "480 gradings (one per answer); VERSUS=all: 160 turns x 3 model pairs x 2 games = 960 more" in graded
    pairwise = data.cost_lines(bench_set("alpaca_eval", 10), 3, versus=True)[0]
    assert "= 60; VERSUS=all: 10 questions x 3 model pairs x 2 games = 60 more" in pairwise


def test_fastchat_file_and_multi_turn_keys():
    """FastChat's question.jsonl works as a QUESTIONS file too; later turns keep questions apart."""
    from benchdata import shared_benchmarks

    source = shared_benchmarks()
    if source is None:
        pytest.skip("the real benchmark files are not here")
    questions = load_questions(source / "mt_bench" / "fastchat" / "llm_judge" / "data" / "mt_bench" / "question.jsonl")
    assert len(questions) == 80 and questions[0]["dataset"] == "writing" and len(questions[0]["turns"]) == 2
    one, two = ({"instruction": "Hi", "turns": ["Hi", t]} for t in ("a", "b"))
    assert question_key(one) != question_key(two)
    assert question_key({"instruction": "Hi", "turns": ["Hi"]}) == question_key({"instruction": "Hi"}) == ("Hi", "")


def make(*args, cwd=ROOT):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    return subprocess.run(["make", "--no-print-directory", *args], capture_output=True, text=True, cwd=cwd, env=env)


def test_make_data_with_limit(bench_data_url, tmp_path):
    result = make("data", "QUESTIONS=mt_bench", "LIMIT=4", f"OUT={tmp_path}")
    assert result.returncode == 0, result.stderr
    questions = load_questions(tmp_path / "sets" / "mt_bench-limit4.jsonl")
    assert len(questions) == 4 and all(len(q["turns"]) == 2 for q in questions)
    assert "answers to make" in result.stdout  # what the board will cost
    result = make("data", "QUESTIONS=data/llm_benchmark_tiny.txt", f"OUT={tmp_path}")
    assert result.returncode == 2 and "make data needs QUESTIONS=<a set" in result.stderr
    result = make("infer", "LIMIT=3", f"OUT={tmp_path}")
    assert result.returncode == 2 and "LIMIT=3 samples a named set only" in result.stderr


def test_make_reference_from_the_set_runs_no_model(bench_data_url, tmp_path):
    result = make("reference", "QUESTIONS=alpaca_eval", "LIMIT=6", f"OUT={tmp_path}")
    assert result.returncode == 0, result.stderr
    reference = json.loads((tmp_path / "reference.json").read_text(encoding="utf-8"))
    assert len(reference) == 6 and {r["generator"] for r in reference} == {"gpt4_1106_preview"}
    assert "infer.py" not in result.stdout and not list(tmp_path.glob("*_*.json"))  # no model's answers
    # A model named with REFERENCE= still wins: make would answer with it (dry run).
    result = make("-n", "reference", "QUESTIONS=alpaca_eval", "LIMIT=6", "REFERENCE=smollm2_135m", f"OUT={tmp_path}")
    assert "tools/infer.py smollm2_135m" in result.stdout and "--set" not in result.stdout
    # make board answers with MODELS only; the reference comes from the set.
    result = make("-n", "board", "QUESTIONS=alpaca_eval", "LIMIT=6", "MODELS=gemma3_270m", f"OUT={tmp_path}")
    assert result.returncode == 0, result.stderr
    answered = [line for line in result.stdout.splitlines() if "tools/infer.py" in line]
    assert len(answered) == 1 and "infer.py gemma3_270m" in answered[0]
    assert "tools/reference.py --set" in result.stdout and "tools/data.py --cost" in result.stdout


def test_progress_bar_while_fetching(bench_data_url, tmp_path):
    env = {"LLMEVAL_PROGRESS": "1", "LLMEVAL_DATA_DIR": str(tmp_path / "cache")}
    result = run_data("alpaca_eval", "--out", str(tmp_path / "out"), env=env)
    assert result.returncode == 0, result.stderr
    assert "alpaca_eval: model_outputs.json:" in result.stderr and "/1.90M" in result.stderr  # tqdm: of 1.90 MB
