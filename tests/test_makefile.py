"""The Makefile's registry handling: a models.toml without [defaults] (or without a judge) still
runs what needs no judge; a missing or broken models.toml, or nothing to run, is one line and a
failure through make, never "Nothing to be done" with exit 0. Real make, real embedded model."""
import json
import subprocess

import pytest

from conftest import ROOT, SMOLLM2, needs_models, needs_smollm2, project_registry, slow

NO_DEFAULTS = f"""
[models.tiny]
path = "{SMOLLM2}"
max_tokens = 4
n_ctx = 512
"""


def make(tmp_path, *args, toml="models.toml"):
    # QUESTIONS first: a line's own QUESTIONS=mt_bench (a set) comes after it, and wins.
    cmd = ["make", "--no-print-directory", "-C", str(ROOT), f"QUESTIONS={tmp_path / 'q.txt'}", *args,
           f"OUT={tmp_path / 'out'}", f"MODELS_TOML={tmp_path / toml}"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def errors(result):
    """Our own lines (make adds its '*** [...] Error 2' after them)."""
    return [line for line in result.stderr.splitlines() if not line.startswith("make: ***")]


@slow
@needs_smollm2
def test_registry_without_defaults_runs_what_needs_no_judge(tmp_path):
    (tmp_path / "models.toml").write_text(NO_DEFAULTS, encoding="utf-8")
    (tmp_path / "q.txt").write_text("What is 2 + 2?\n", encoding="utf-8")
    for args in (["models"], ["infer", "MODELS=tiny"], ["reference", "MODELS=tiny", "REFERENCE=tiny"]):
        result = make(tmp_path, *args)
        assert result.returncode == 0, (args, result.stderr)
        assert "expected one argument" not in result.stderr
    assert (tmp_path / "out" / "tiny.json").is_file() and (tmp_path / "out" / "reference.json").is_file()
    # Only what needs a value asks for it, in one line.
    for args, wanted in ((["infer"], "no models to run: set MODELS="),
                         (["infer", "MODELS="], "no models to run: set MODELS="),
                         (["reference", "MODELS=tiny"], "no reference model: set REFERENCE="),
                         (["board", "MODELS=tiny", "REFERENCE=tiny"], "no judge: set JUDGE="),
                         (["judge-check"], "no judge: set JUDGE=")):
        result = make(tmp_path, *args)
        assert result.returncode != 0, args
        assert len(errors(result)) == 1 and wanted in errors(result)[0], (args, result.stderr)
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("content, wanted", [
    (None, "file not found"),
    ("[models.a\npath = 1\n", "not valid TOML"),
    ('[defaults]\nmodels = ["a"]\n[models.a]\npath = "a.gguf"\nmax_tokenz = 3\n', "unknown key 'max_tokenz'"),
])
@pytest.mark.parametrize("goal", ["infer", "reference", "board", "download", "merge"])
def test_broken_or_missing_registry_fails_with_one_line(tmp_path, content, wanted, goal):
    if content is not None:
        (tmp_path / "models.toml").write_text(content, encoding="utf-8")
    (tmp_path / "q.txt").write_text("What is 2 + 2?\n", encoding="utf-8")
    result = make(tmp_path, goal)
    assert result.returncode != 0
    lines = errors(result)
    assert len(lines) == 1 and lines[0].startswith("error: ") and wanted in lines[0], result.stderr
    assert "Nothing to be done" not in result.stdout + result.stderr


# --- Every `make` line the README, docs/*.md and `make help` document, run for real once (issue 16, item 3):
# the project's models.toml with its embedded models (answers cut to 16 tokens), two questions,
# two labelled pairs, one OUT reused from line to line, and `make clean` last.
EMBEDDED = ("smollm2_135m", "gemma3_270m")
TWO_JUDGES = f'JUDGE="{" ".join(EMBEDDED)}"'
PLAN_CARDS = 'make plan MODELS="qwen25_7b llama31_8b qwen3_14b baichuan_7b" JUDGE=qwen25_7b CARDS=8,12,16,24'
# documented line -> the line run here (None: not run, and why).
DOCUMENTED = {
    "make help": "make help",
    "make setup": "make setup",
    "make models": "make models",
    "make download": "make download",
    "make quantize": "make quantize",
    "make judge-weights": "make judge-weights",  # the embedded judge: on disk already, nothing to do
    "make plan": "make plan",
    'make plan MODELS="..."': f'make plan MODELS="{" ".join(EMBEDDED)}" {TWO_JUDGES} FREE=12GiB',
    PLAN_CARDS: PLAN_CARDS,  # the published shapes: nothing downloaded
    "make -n infer MODELS=...": f'make -n infer MODELS="{" ".join(EMBEDDED)}"',
    "make infer": "make infer",
    "make merge": "make merge",
    "make reference": "make reference",
    "make board": "make board",
    'make board MODELS="smollm2_135m gemma3_270m" QUESTIONS=data/questions_zh_en.txt':
        'make board MODELS="smollm2_135m gemma3_270m"',  # QUESTIONS: the test's two questions
    'make board MODELS="..."': f'make board MODELS="{" ".join(EMBEDDED)}"',
    'make board JUDGE="a b c"': f"make board {TWO_JUDGES}",
    "make board VERSUS=all": "make board VERSUS=all",
    "make judge-check": "make judge-check",
    "make judge-check PAIRS=my_pairs.jsonl": "make judge-check PAIRS={pairs}",
    'make judge-check JUDGE="a b c"': f"make judge-check {TWO_JUDGES}",  # make help: JUDGE="a b c"
    "make demo": "make demo",
    # Benchmark sets, fetched from the local server of ../shared/benchmarks (bench_data_url).
    "make data": "make data QUESTIONS=mt_bench LIMIT=2",
    "make data QUESTIONS=NAME": "make data QUESTIONS=arena_hard LIMIT=2",
    "make data QUESTIONS=mt_bench": "make data QUESTIONS=mt_bench",
    # Before the Arena-Hard lines (their board is checked last). One question and the two embedded
    # models: 2 turns x 2 models rated, and 1 pair x 2 turns x 2 games (16-token explanations).
    # Three models' all-pairs table is checked against FastChat's in tests/test_grade_pairs.py.
    "make board QUESTIONS=mt_bench VERSUS=all":
        f'make board QUESTIONS=mt_bench LIMIT=1 VERSUS=all MODELS="{" ".join(EMBEDDED)}"',
    "make plan QUESTIONS=arena_hard": "make plan QUESTIONS=arena_hard",
    # Each judge call reads a published answer (seconds here): these two run in tests/test_arena_boards.py.
    "make board QUESTIONS=alpaca_eval LIMIT=20": None,
    "make board QUESTIONS=arena_hard FAST=1": None,
    "make board QUESTIONS=arena_hard PROTOCOL=pairwise": "make board QUESTIONS=arena_hard LIMIT=1 PROTOCOL=pairwise",
    "make plan MODELS=chatglm_6b CARDS=8,12,16,24 QUANTS=fp16,int8,int4":
        "make plan MODELS=chatglm_6b CARDS=8,12,16,24 QUANTS=fp16,int8,int4",  # its published config
    "make clean": "make clean",
    # Graded boards: tests/test_grade_board.py runs the graded stage on a LIMIT of real questions
    # with the embedded judge (explanations cut short: each rating writes one, minutes here).
    "make board QUESTIONS=mt_bench LIMIT=8": None,
    "make board QUESTIONS=mt_bench LIMIT=4": None,  # docs/speed.md's measured run: 3 minutes here
    "make board QUESTIONS=mt_bench": None,
    "make board QUESTIONS=alignbench LIMIT=16 FAST=1": None,
    "make board PROTOCOL=grade QUESTIONS=data/llm_benchmark_tiny.txt": None,
    "make judge-check PROTOCOL=grade": None,  # tests/test_grade_check.py
    # The whole sets (805 and 500 questions): the LIMIT lines above run the same code on two.
    "make board QUESTIONS=alpaca_eval": None,
    "make board QUESTIONS=arena_hard": None,  # explanations first: tests/test_arena_labels.py
    "make board QUESTIONS=alpaca_eval JUDGE=weighted_alpaca_eval_gpt4_turbo": None,  # test_alpaca_eval_official.py
    "make board QUESTIONS=alpaca_eval_1 JUDGE=chatgpt_fn": None,  # an API key; tests/test_data.py fetches the set
    "make test": None,  # this suite
    "make test-fast": None,  # this suite without its slow tests
    "make setup CUDA=1": None,  # needs the CUDA toolkit
    "make native-bench": None,  # builds llama.cpp's native tools, about 25 minutes
    "make bench": None,  # needs make native-bench; tests/test_bench.py runs bench/bench.py
    "make bench-judge": None,  # 40 questions answered and 64 judge calls: minutes
    "make board JUDGE=...": None,  # a placeholder for the lines below
    "make board JUDGE=my_api_judge": None,  # an API: tests/test_judge_api.py, on a local server
    "make board JUDGE=chatgpt_fn": None,  # the guide's judges: tests/test_guide_models.py
    "make board JUDGE=claude": None,
    "make board JUDGE=path/to/configs.yaml": None,  # tests/test_judge_api.py
    'make infer MODELS="chatglm_6b baichuan_7b"': None,  # tests/test_guide_models.py, on twins
    'make board MODELS="chatglm_6b baichuan_7b" REFERENCE=gpt35 JUDGE=chatgpt_fn': None,  # likewise
    'make board MODELS="chatglm_6b baichuan_7b qwen25_7b" REFERENCE=gpt35 JUDGE=qwen25_7b': None,  # 20 GB, a key
    # Human-labelled sets (docs/judges.md): tests/test_judge_sets.py judges llmbar_natural, pandalm and
    # mt_bench_human (PROTOCOL=grade) with the embedded judge on a LIMIT of the real files, LLMBar's
    # prompts byte for byte, and checks what make passes on (PAIRS, LIMIT, PROTOCOL=llmbar).
    "make judge-check PAIRS=NAME": None,  # a placeholder for the lines below
    "make judge-check PAIRS=llmbar_natural": None,
    "make judge-check JUDGE=qwen25_7b PAIRS=llmbar_natural": None,  # 4.7 GB from the Hub
    "make judge-check JUDGE=smollm2_135m PAIRS=pandalm LIMIT=40": None,  # 80 calls: about an hour here
    'make judge-check JUDGE="a b c" PAIRS=llmbar_adversarial PROTOCOL=llmbar': None,
    "make judge-check PAIRS=mt_bench_human PROTOCOL=grade": None,
    # Open judges (commented out in models.toml, ~5 GB each from the Hub): tests/test_open_judges.py
    # loads their entries uncommented on twins and checks each format's prompt and verdict.
    "make judge-weights JUDGE=skywork_critic_8b": None,
    "make judge-check JUDGE=skywork_critic_8b PAIRS=llmbar_natural": None,
    "make board JUDGE=skywork_critic_8b": None,
}


def documented_lines() -> set[str]:
    """`make ...` in the bash blocks and backquotes of README.md and docs/*.md, and each target `make help` lists."""
    import re

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    text = "\n".join(page.read_text(encoding="utf-8") for page in pages)
    lines = {" ".join(line.split("#")[0].split()) for block in re.findall(r"```bash\n(.*?)```", text, re.S)
             for line in block.replace("\\\n", " ").splitlines() if line.strip().startswith("make ")}
    lines |= {" ".join(m.split()) for m in re.findall(r"`(make [^`]*)`", text)}
    shown = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "help"], capture_output=True,
                           text=True, timeout=60).stdout
    lines |= {f"make {m}" for m in re.findall(r"^  make (\S+)", shown, re.M)}
    return lines


@slow
@needs_models
def test_every_documented_make_line_runs_for_real(tmp_path, bench_data_url):
    import shlex

    undeclared = documented_lines() - set(DOCUMENTED)
    assert not undeclared, f"documented but not run here (add them to DOCUMENTED): {sorted(undeclared)}"
    project_registry(tmp_path)
    (tmp_path / "q.txt").write_text("What is 2 + 2?\n为什么天空是蓝色的？\n", encoding="utf-8")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"instruction": "What is 2 + 2?", "right": "4", "wrong": "5"}\n'
                     '{"instruction": "天空是什么颜色？", "right": "蓝色。", "wrong": "绿色。"}\n', encoding="utf-8")
    out = tmp_path / "out"
    results = {}
    for documented, line in DOCUMENTED.items():
        if line is None or documented == "make clean":  # clean: last, below
            continue
        words = shlex.split(line.format(pairs=pairs))[1:]
        if words[0] == "judge-check" and not any(w.startswith("PAIRS=") for w in words):
            words.append(f"PAIRS={pairs}")  # two pairs, not the twelve built in: the suite's time
        result = make(tmp_path, *words)
        everything = result.stdout + result.stderr
        assert result.returncode == 0 and "Traceback" not in everything, (documented, everything)
        results[documented] = everything
    assert "make board" in results["make help"] and 'JUDGE="a b c"' in results["make help"]
    assert "tools/infer.py" in results["make -n infer MODELS=..."]
    for judge in EMBEDDED:  # several judges: each one planned, checked and on the board
        assert f"{judge} (judge)" in results['make plan MODELS="..."']
        assert (out / "judge" / "checks" / f"{judge}.json").is_file()
        assert judge in (out / "board.md").read_text(encoding="utf-8")
    assert "qwen3_14b" in results[PLAN_CARDS] and "24 GB card" in results[PLAN_CARDS]
    assert "500 questions (500 turns) x 3 models = 1500 answers" in results["make plan QUESTIONS=arena_hard"]
    assert "int4" in results["make plan MODELS=chatglm_6b CARDS=8,12,16,24 QUANTS=fp16,int8,int4"]
    assert "4 ratings to give (mt_bench" in results["make board QUESTIONS=mt_bench VERSUS=all"]
    assert "and 2 pairwise matches, two games each" in results["make board QUESTIONS=mt_bench VERSUS=all"]
    line = "make board QUESTIONS=arena_hard PROTOCOL=pairwise"
    assert "board: 3 models ->" in results[line], results[line]  # the three models against the set's baseline
    about = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["about"]  # the last board's
    assert about["protocol"] == "pairwise" and about["set"]["name"] == "arena_hard", about
    # make clean, last: it removes everything the lines above wrote, and says so.
    written = sorted(p.name for p in out.iterdir())
    clean = make(tmp_path, "clean")
    assert clean.returncode == 0 and out.is_dir() and not list(out.iterdir()), \
        (clean.stdout + clean.stderr, sorted(p.name for p in out.iterdir()))
    assert f"{len(written)} removed, 0 kept" in clean.stdout and f"removed {out / 'cache'}/" in clean.stdout

