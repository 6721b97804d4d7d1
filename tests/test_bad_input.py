"""The bad-input corpus: every case goes through a real command (tools/*.py or make) and must give
one clear line saying what to do and a non-zero exit, or, for a per-question problem, an error
recorded for that question while the run keeps the rest. Never a traceback; never exit 0 when
nothing was done. Cases that are not errors (a BOM, duplicates) must work, and say what was done.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
SMOLLM2 = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
pytestmark = pytest.mark.skipif(not SMOLLM2.is_file(), reason="run `make models` first")

GOOD_MODEL = f'[models.tiny]\npath = "{SMOLLM2}"\nmax_tokens = 4\nn_ctx = 512\n'
QUESTIONS = "What is 2+2?\nName a colour.\n"

# id -> (files written into the test folder, the command, what the one line must say).
# {d} in a command or a file is the test folder. Commands: "infer ..." and "registry ..." run
# tools/infer.py / tools/lib/registry.py; "make ..." runs make with OUT={d}/out and the files below;
# "board ..." and "judge-check ..." run those tools.
TOML_CASES = {
    "name_escapes_out": ('[models."../../escape"]\npath = "x.gguf"\n', "must be a plain identifier"),
    "name_with_slash": ('[models."sub/dir"]\npath = "x.gguf"\n', "must be a plain identifier"),
    "name_with_space": ('[models."my model"]\npath = "x.gguf"\n', "must be a plain identifier"),
    "name_dotdot": ('[models.".."]\npath = "x.gguf"\n', "must be a plain identifier"),
    "name_reserved": ('[models.output]\npath = "x.gguf"\n', "taken by OUT/output.json"),
    "toml_syntax": ('[models.tiny\npath = "x.gguf"\n', "not valid TOML"),
    "toml_invalid_utf8": (b'[models.tiny]\npath = "x.gguf"\ndescription = "\xff\xfe"\n', "models.toml:3: not UTF-8"),
    "unknown_key": ('[models.tiny]\npath = "x.gguf"\nmax_token = 3\n', "unknown key 'max_token'"),
    "wrong_type": ('[models.tiny]\npath = "x.gguf"\nmax_tokens = "many"\n', "'max_tokens' must be"),
    "zero_max_tokens": ('[models.tiny]\npath = "x.gguf"\nmax_tokens = 0\n', "'max_tokens' must be"),
    "top_p_too_big": ('[models.tiny]\npath = "x.gguf"\ntop_p = 2.0\n', "'top_p' must be"),
    "key_in_file": ('[models.g]\nbackend = "openai"\napi_model = "m"\napi_key_env = "sk-abcdef0123456789"\n',
                    "never the key itself"),
    "path_and_repo": ('[models.tiny]\npath = "x.gguf"\nhf_repo = "a/b"\nrevision = "' + "0" * 40 + '"\n',
                      "give one of"),
    "repo_without_revision": ('[models.tiny]\nhf_repo = "a/b"\n', "'revision' is required"),
    "bad_revision": ('[models.tiny]\nhf_repo = "a/b"\nrevision = "main"\n', "'revision' must be"),
    "unknown_backend": ('[models.tiny]\npath = "x.gguf"\nbackend = "vllm"\n', "'backend' must be"),
    "no_weights": ('[models.tiny]\nmax_tokens = 3\n', "'path' is required"),
    "defaults_undeclared": ('[defaults]\nmodels = ["ghost"]\n' + GOOD_MODEL, "names 'ghost'"),
    "unknown_table": ('[model.tiny]\npath = "x.gguf"\n', "unknown top-level table 'model'"),
    "no_models": ('[defaults]\n', "declare at least one model"),
    "base_url_not_http": ('[models.g]\nbackend = "openai"\napi_model = "m"\nbase_url = "ftp://x"\n',
                          "'base_url' must be"),
    "remote_code_wrong_backend": ('[models.tiny]\npath = "x.gguf"\ntrust_remote_code = true\n',
                                  "'trust_remote_code' is for backend"),
    "nf4_on_llama": ('[models.tiny]\npath = "x.gguf"\nquant = "nf4"\n', "quant 'nf4'"),
    "name_too_long": (f'[models.{"m" * 240}]\npath = "x.gguf"\n', "is 240 characters long; names are at most 64"),
}

CASES = {f"toml_{k}": ({"models.toml": text}, "registry check", said) for k, (text, said) in TOML_CASES.items()}
CASES.update({
    "toml_missing": ({}, "registry check", "file not found (MODELS_TOML names the registry)"),
    "toml_is_a_directory": ({"models.toml/x": ""}, "registry check", "is a directory"),
    "unknown_model": ({"models.toml": GOOD_MODEL, "q.txt": QUESTIONS}, "infer ghost", "no model named 'ghost'"),
    "no_model_given": ({"models.toml": GOOD_MODEL, "q.txt": QUESTIONS}, "infer", "no models given"),
    "questions_missing": ({"models.toml": GOOD_MODEL}, "infer tiny", "questions file not found"),
    "questions_directory": ({"models.toml": GOOD_MODEL, "q.txt/x": ""}, "infer tiny", "is a directory"),
    "questions_invalid_utf8": ({"models.toml": GOOD_MODEL, "q.txt": b"one\ntwo\nthr\xe9e\n"}, "infer tiny",
                               "q.txt:3: not UTF-8"),
    "questions_nul_byte": ({"models.toml": GOOD_MODEL, "q.txt": b"one\ntw\x00o\n"}, "infer tiny", "q.txt:2: contains a NUL"),
    "questions_empty": ({"models.toml": GOOD_MODEL, "q.txt": "\n  \n"}, "infer tiny", "no questions found"),
    "questions_json_invalid": ({"models.toml": GOOD_MODEL, "q.json": '[{"instruction": "a"'}, "infer tiny --questions {d}/q.json",
                               "not valid JSON"),
    "questions_json_not_list": ({"models.toml": GOOD_MODEL, "q.json": '{"instruction": "a"}'},
                                "infer tiny --questions {d}/q.json", "expected a JSON list"),
    "questions_json_no_instruction": ({"models.toml": GOOD_MODEL, "q.json": '[{"input": "a"}]'},
                                      "infer tiny --questions {d}/q.json", "record 1 has no 'instruction'"),
    "questions_json_input_not_text": ({"models.toml": GOOD_MODEL, "q.json": '[{"instruction": "a", "input": 3}]'},
                                      "infer tiny --questions {d}/q.json", "'input' must be text"),
    "questions_jsonl_bad_line": ({"models.toml": GOOD_MODEL, "q.jsonl": '{"instruction": "a"}\n{oops\n'},
                                 "infer tiny --questions {d}/q.jsonl", "q.jsonl:2: not valid JSON"),
    "questions_json_nul": ({"models.toml": GOOD_MODEL, "q.json": '[{"instruction": "a\\u0000b"}]'},
                           "infer tiny --questions {d}/q.json", "contains a NUL"),
    "questions_json_lone_surrogate": ({"models.toml": GOOD_MODEL, "q.json": '[{"instruction": "a"}, {"instruction": "b\\ud800c"}]'},
                                      "infer tiny --questions {d}/q.json", "record 2 contains a lone surrogate"),
    "questions_jsonl_lone_surrogate": ({"models.toml": GOOD_MODEL, "q.jsonl": '{"instruction": "a"}\n{"instruction": "x", "input": "\\udc00"}\n'},
                                       "infer tiny --questions {d}/q.jsonl", "record on line 2 contains a lone surrogate"),
    "toml_timeout_zero": ({"models.toml": '[models.g]\nbackend = "openai"\napi_model = "m"\nbase_url = "http://127.0.0.1:9/v1"\ntimeout = 0\n'},
                          "registry check", "'timeout' must be a number of seconds > 0"),
    "toml_timeout_on_llama": ({"models.toml": GOOD_MODEL + "timeout = 30\n"}, "registry check",
                              "'timeout' is for backend"),
    "parallel_negative": ({"models.toml": GOOD_MODEL, "q.txt": QUESTIONS}, "infer tiny --parallel -1",
                          "argument --parallel: must be a whole number >= 0"),
    "make_parallel_not_a_number": ({"models.toml": GOOD_MODEL, "q.txt": QUESTIONS}, "make infer MODELS=tiny PARALLEL=abc",
                                   "argument --parallel: must be a whole number >= 0 (0 = automatic), got 'abc'"),
    "make_questions_empty": ({"models.toml": GOOD_MODEL, "q.txt": QUESTIONS}, "make infer MODELS=tiny QUESTIONS=",
                             "QUESTIONS is empty"),
    "make_out_empty": ({"models.toml": GOOD_MODEL, "q.txt": QUESTIONS}, "make -n board MODELS=tiny OUT=", "OUT is empty"),
    "make_model_name_too_long": ({"models.toml": f'[models.{"m" * 240}]\npath = "x.gguf"\n', "q.txt": QUESTIONS},
                                 f"make infer MODELS={'m' * 240}", "names are at most 64"),
    # OUT is written into and emptied by make clean: never where the project or a home lives. The
    # refusal comes as make reads the Makefile, so `make -n` shows it, and a make that failed to
    # refuse would only print its `rm` (never run it on /, the project or HOME, here).
    "make_out_root": ({"models.toml": GOOD_MODEL, "q.txt": QUESTIONS}, "make -n board MODELS=tiny OUT=/", "OUT=/ is /"),
    "make_clean_out_root": ({}, "make -n clean OUT=/", "OUT=/ is /"),
    "make_clean_out_project": ({}, "make -n clean OUT=.", f"(that is {ROOT}) is / or holds the project"),
    "make_clean_out_above_project": ({}, f"make -n clean OUT={ROOT.parent}", "is / or holds the project"),
    "make_clean_out_home": ({}, "make -n clean OUT={home}", "is your home folder"),
    "make_out_project_folder": ({}, "make -n infer MODELS=tiny OUT=tools", "is one of the project's own folders"),
    "make_out_a_clone": ({"clone/models/x.gguf": "", "clone/.venv/bin/python": ""}, "make -n clean OUT={d}/clone",
                         "holds models/ or .venv/"),
    "make_out_a_file": ({"f.txt": "mine"}, "make infer MODELS=tiny OUT={d}/f.txt", "is a file, not a folder"),
    "weights_missing": ({"models.toml": '[models.tiny]\npath = "nowhere.gguf"\n', "q.txt": QUESTIONS}, "infer tiny",
                        "weights not found"),
    "weights_not_gguf": ({"models.toml": '[models.tiny]\npath = "w.gguf"\n', "q.txt": QUESTIONS,
                          "w.gguf": "<html>404 Not Found</html>"}, "infer tiny", "is not a GGUF file"),
    "weights_truncated": ({"models.toml": '[models.tiny]\npath = "w.gguf"\n', "q.txt": QUESTIONS,
                           "w.gguf": "TRUNCATED_SMOLLM2"}, "infer tiny", "is truncated or damaged"),
    "api_key_missing": ({"models.toml": '[models.g]\nbackend = "openai"\napi_model = "m"\napi_key_env = "LLMEVAL_NO_SUCH_KEY"\n',
                         "q.txt": QUESTIONS}, "infer g", "export LLMEVAL_NO_SUCH_KEY="),
    "make_questions_missing": ({"models.toml": GOOD_MODEL}, "make infer MODELS=tiny", "questions file not found"),
    "make_questions_directory": ({"models.toml": GOOD_MODEL, "q.txt/x": ""}, "make infer MODELS=tiny",
                                 "is not a file"),
    "make_questions_with_space": ({"models.toml": GOOD_MODEL, "my q.txt": QUESTIONS},
                                  "make infer MODELS=tiny QUESTIONS={d}/my q.txt", "must be one path without spaces"),
    "make_model_escapes_out": ({"models.toml": '[models."../../escape"]\npath = "x.gguf"\n', "q.txt": QUESTIONS},
                               "make infer MODELS=../../escape", "must be a plain identifier"),
    "make_model_subdir": ({"models.toml": '[models."sub/dir"]\npath = "x.gguf"\n', "q.txt": QUESTIONS},
                          "make infer MODELS=sub/dir", "must be a plain identifier"),
    "make_unknown_model": ({"models.toml": GOOD_MODEL, "q.txt": QUESTIONS}, "make infer MODELS=ghost",
                           "no model named 'ghost'"),
    "board_outputs_missing": ({"models.toml": GOOD_MODEL}, "board --outputs {d}/none.json --reference {d}/none.json "
                              "--judge tiny --out {d}/out", "not found"),
    "board_outputs_not_json": ({"models.toml": GOOD_MODEL, "o.json": "{half", "r.json": "[]"},
                               "board --outputs {d}/o.json --reference {d}/r.json --judge tiny --out {d}/out",
                               "not valid JSON"),
    "board_outputs_not_records": ({"models.toml": GOOD_MODEL, "o.json": '[{"a": 1}]', "r.json": "[]"},
                                  "board --outputs {d}/o.json --reference {d}/r.json --judge tiny --out {d}/out",
                                  "expected a list of alpaca_eval records"),
    "board_versus_unknown": ({"models.toml": GOOD_MODEL}, "board --check-judge --judge tiny --versus some",
                             "argument --versus: invalid choice: 'some'"),
    "board_unknown_judge": ({"models.toml": GOOD_MODEL}, "board --check-judge --judge ghost", "ghost"),
    "judge_check_pairs_invalid": ({"models.toml": GOOD_MODEL, "p.jsonl": '{"instruction": "a"\n'},
                                  "judge-check --judge tiny --pairs {d}/p.jsonl --out {d}/out", "p.jsonl:1"),
    "judge_check_pairs_missing": ({"models.toml": GOOD_MODEL},
                                  "judge-check --judge tiny --pairs {d}/nope.jsonl --out {d}/out", "nope.jsonl"),
})


def setup_files(d: Path, files: dict) -> None:
    for name, content in files.items():
        path = d / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content == "TRUNCATED_SMOLLM2":  # the real model, cut short as an interrupted download leaves it
            with SMOLLM2.open("rb") as src:
                path.write_bytes(src.read(5_000_000))
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def command(d: Path, line: str) -> list[str]:
    tool, *rest = line.split(" ", 1)
    args = rest[0].replace("{d}", str(d)).replace("{home}", os.environ.get("HOME", "/")) if rest else ""
    if tool == "make":
        # QUESTIONS=... with a space must reach make as one argument, as a shell user would quote it.
        words = args.split(" QUESTIONS=")
        extra = [f"QUESTIONS={words[1]}"] if len(words) > 1 else [f"QUESTIONS={d}/q.txt"]
        given = words[0].split()
        if not any(w.startswith("OUT=") for w in given):
            extra.append(f"OUT={d}/out")
        return ["make", "--no-print-directory", "-C", str(ROOT), *given, *extra, f"MODELS_TOML={d}/models.toml"]
    script = {"infer": "infer.py", "registry": "lib/registry.py", "board": "board",
              "judge-check": "judge_check.py"}[tool]
    argv = [PY, str(ROOT / "tools" / script), *args.split()]
    if tool == "infer":
        argv += ["--out", f"{d}/out"] + ([] if "--questions" in args else ["--questions", f"{d}/q.txt"])
    return argv + ["--models-toml", f"{d}/models.toml"]


def run(d: Path, line: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command(d, line), capture_output=True, text=True, timeout=300, cwd=d,
                          env={**os.environ, **(env or {})})


def assert_one_clear_line(result, said: str) -> None:
    everything = result.stdout + result.stderr
    assert "Traceback" not in everything and 'File "' not in everything, everything
    lines = [line for line in result.stderr.splitlines() if said in line]
    assert len(lines) == 1, f"expected one line saying {said!r}:\n{result.stderr}"
    # Besides that line, at most make's own one-line trailer ("make: *** [...] Error 2").
    others = [line for line in result.stderr.splitlines()
              if line.strip() and said not in line and not line.startswith("make: ***")]
    assert not others, result.stderr


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_refused_in_one_clear_line(tmp_path, case):
    files, line, said = CASES[case]
    setup_files(tmp_path, files)
    result = run(tmp_path, line, env={"LLMEVAL_NO_SUCH_KEY": ""})
    assert result.returncode != 0, result.stdout + result.stderr
    assert_one_clear_line(result, said)
    # Nothing escaped OUT (a model named ../../escape would write OUT/../../escape.json).
    assert not (tmp_path.parent / "escape.json").exists() and not (tmp_path / "sub").exists()


def test_bom_in_models_toml_and_questions_is_fine(tmp_path):
    setup_files(tmp_path, {"models.toml": "\ufeff" + GOOD_MODEL, "q.txt": "\ufeff" + QUESTIONS})
    result = run(tmp_path, "infer tiny --quiet")
    assert result.returncode == 0, result.stderr
    answers = json.loads((tmp_path / "out" / "tiny.json").read_text(encoding="utf-8"))
    assert [a["instruction"] for a in answers] == ["What is 2+2?", "Name a colour."]


def test_duplicate_questions_are_asked_once_and_said(tmp_path):
    setup_files(tmp_path, {"models.toml": GOOD_MODEL, "q.txt": QUESTIONS + "What is 2+2?\n"})
    result = run(tmp_path, "infer tiny --quiet")
    assert result.returncode == 0, result.stderr
    assert "1 duplicate question(s) skipped; 2 asked once each" in result.stderr
    assert len(json.loads((tmp_path / "out" / "tiny.json").read_text(encoding="utf-8"))) == 2


def test_one_question_too_long_fails_alone(tmp_path):
    setup_files(tmp_path, {"models.toml": GOOD_MODEL, "q.txt": QUESTIONS + "word " * 700 + "\n"})
    result = run(tmp_path, "infer tiny --quiet")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "2 answered, 0 reused, 1 failed" in result.stderr
    answers = json.loads((tmp_path / "out" / "tiny.json").read_text(encoding="utf-8"))
    assert [bool(a.get("error")) for a in answers] == [False, False, True]
    assert "more than n_ctx=512" in answers[2]["error"]


def test_read_only_out_is_one_line(tmp_path):
    """A read-only OUT (a real read-only bind mount, in a user namespace of our own)."""
    if not shutil.which("unshare") or subprocess.run(["unshare", "-rm", "true"]).returncode != 0:
        pytest.skip("this kernel does not allow user namespaces (unshare -rm)")
    setup_files(tmp_path, {"models.toml": GOOD_MODEL, "q.txt": QUESTIONS})
    (tmp_path / "out").mkdir()
    make = " ".join(f"'{word}'" for word in command(tmp_path, "make infer MODELS=tiny"))
    script = f"mount --bind {tmp_path}/out {tmp_path}/out && mount -o remount,bind,ro {tmp_path}/out && {make}"
    result = subprocess.run(["unshare", "-rm", "bash", "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert_one_clear_line(result, "Read-only file system; choose a writable OUT=")


def test_line_separators_inside_a_line_stay_in_it(tmp_path):
    """Lines end at \\n (or \\r\\n) only: a form feed, U+0085 or U+2028 is a character of its
    question, and a JSONL line may hold a raw U+2028 inside a string (valid JSON)."""
    text = "one\x0cstill one\r\nfive\x85more\ntwo\u2028lines\n"
    jsonl = json.dumps({"instruction": "a\u2028b", "dataset": "x"}, ensure_ascii=False) + "\r\n"
    setup_files(tmp_path, {"models.toml": GOOD_MODEL, "q.txt": text, "q.jsonl": jsonl})
    for name, wanted in (("q.txt", ["one\x0cstill one", "five\x85more", "two\u2028lines"]), ("q.jsonl", ["a\u2028b"])):
        result = run(tmp_path, f"infer tiny --quiet --questions {{d}}/{name}")
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        answers = json.loads((tmp_path / "out" / "tiny.json").read_text(encoding="utf-8"))
        assert [a["instruction"] for a in answers] == wanted


def records_of(d: Path, name: str) -> dict:
    return {r["instruction"]: r for r in json.loads((d / "out" / f"{name}.json").read_text(encoding="utf-8"))}


def test_malformed_api_replies_fail_that_question_alone(tmp_path):
    """Issue 16, items 5, 6, 9, 10: a 200 reply that is an HTML page, HTML labelled as JSON or not
    UTF-8 is that question's error (retried first) naming the endpoint and what came back; content
    null is an error, not an empty answer; a lone surrogate becomes U+FFFD and a 5 MB answer is cut,
    both said in the record. The other questions are answered; a rerun asks only the failed ones."""
    from faulty_api_server import faulty_api_server

    with faulty_api_server() as server:
        setup_files(tmp_path, {"models.toml": f'[models.api]\nbackend = "openai"\nbase_url = "{server.url}"\n'
                                              'api_model = "m"\nmax_tokens = 8\nconcurrency = 3\n',
                               "q.txt": "".join(f"FAULT:{m}\n" for m in ("html", "html_json", "utf16", "null",
                                                                          "surrogate", "huge", "html_once"))
                               + "plain\n"})
        result = run(tmp_path, "infer api --quiet")
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        assert "4 answered, 0 reused, 4 failed" in result.stderr
        got = records_of(tmp_path, "api")
        endpoint = f"{server.url}/chat/completions answered 200 with"
        assert got["FAULT:html"]["error"].startswith(f"{endpoint} a body that is not JSON on 7 tries")
        assert "text/html; charset=utf-8, 96 bytes: b'<!DOCTYPE html>" in got["FAULT:html"]["error"]
        assert "application/json, 96 bytes: b'<!DOCTYPE" in got["FAULT:html_json"]["error"]
        assert "a body that is not UTF-8 on 7 tries" in got["FAULT:utf16"]["error"]
        assert "bytes: b'\\xff\\xfe{" in got["FAULT:utf16"]["error"]
        assert server.requests["html"] == 7  # retried like a 5xx: the first try and 6 retries
        assert "answered without text (content: null" in got["FAULT:null"]["error"] and got["FAULT:null"]["output"] == ""
        assert got["FAULT:surrogate"]["output"] == "half \ufffd a character"
        assert got["FAULT:surrogate"]["notes"] == ["1 lone surrogate(s) in the output replaced by U+FFFD"]
        assert len(got["FAULT:huge"]["output"]) == 4096 and "cut to its first 4,096 of 5,000,000" in got["FAULT:huge"]["notes"][0]
        assert got["FAULT:html_once"]["output"] == "answer to FAULT:html_once" and got["plain"]["output"] == "answer to plain"
        cache = (tmp_path / "out" / "cache" / "api.jsonl").read_text(encoding="utf-8")
        assert "content: null" not in cache and len(cache.splitlines()) == 4  # failures are not cached
        again = run(tmp_path, "infer api --quiet")
        assert "0 answered, 4 reused, 4 failed" in again.stderr, again.stderr
        assert (server.requests[""], server.requests["html_once"], server.requests["html"]) == (1, 2, 14)


def test_misbehaving_custom_function_fails_that_question_alone(tmp_path):
    """Issue 16, items 6, 10, 12: a custom function that returns a str, raises KeyboardInterrupt or
    SystemExit fails that question only (the run goes on, rc 0); its surrogates and huge answers are
    repaired and cut like an API's."""
    setup_files(tmp_path, {"models.toml": '[models.drill]\nbackend = "custom"\nfunction = "fault_drill"\nmax_tokens = 8\n',
                           "q.txt": "RETURN_STR\nRAISE_INTERRUPT\nRAISE_EXIT\nSURROGATE\nHUGE\nplain\n"})
    result = run(tmp_path, "infer drill --quiet")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "3 answered, 0 reused, 3 failed" in result.stderr
    got = records_of(tmp_path, "drill")
    assert "TypeError: returned a str, not a list of answers" in got["RETURN_STR"]["error"]
    assert "custom function 'fault_drill': KeyboardInterrupt" in got["RAISE_INTERRUPT"]["error"]
    assert "custom function 'fault_drill': SystemExit: 3" in got["RAISE_EXIT"]["error"]
    assert got["SURROGATE"]["output"] == "half \ufffd a character" and "U+FFFD" in got["SURROGATE"]["notes"][0]
    assert len(got["HUGE"]["output"]) == 4096 and "of 50,000,000 characters" in got["HUGE"]["notes"][0]
    assert got["plain"]["output"] == "echo: plain"


BOARD_TOML = """[defaults]
models = ["drill"]
reference = "parrot"
judge = "j"

[models.drill]
backend = "custom"
function = "fault_drill"
max_tokens = {max_tokens}

[models.parrot]
backend = "custom"

[models.j]
path = "{judge}"
n_ctx = 1024
"""


def test_board_warns_about_answers_it_cannot_rank_or_trace(tmp_path):
    """Issue 16, items 10, 11, 15: board.html cuts a long answer (board_pairs.json keeps it whole);
    manifest.json takes each model's settings from its answers' settings_id, and the board warns
    when models.toml changed since, when answers have no reference answer and when a ranked model
    is not in models.toml, each warning naming the counts."""
    toml = tmp_path / "models.toml"
    toml.write_text(BOARD_TOML.format(max_tokens=128, judge=SMOLLM2), encoding="utf-8")
    (tmp_path / "q.txt").write_text("plain\nHUGE\n", encoding="utf-8")
    made = run(tmp_path, "make board")
    assert made.returncode == 0 and "Traceback" not in made.stderr, made.stderr
    out = tmp_path / "out"
    page = (out / "board.html").read_text(encoding="utf-8")
    assert "x" * 8_001 not in page and "cut here: 8,192 characters in all; board_pairs.json has" in page
    pairs = json.loads((out / "board_pairs.json").read_text(encoding="utf-8"))
    assert max(len(p["model_output"]) for p in pairs) == 8_192  # cut only by infer's bound: 64 x max_tokens
    first = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert first["models"]["drill"]["settings"]["max_tokens"] == 128 and "settings_now" not in first["models"]["drill"]

    toml.write_text(BOARD_TOML.format(max_tokens=64, judge=SMOLLM2), encoding="utf-8")  # changed since
    outputs = json.loads((out / "output.json").read_text(encoding="utf-8"))
    ghost = [{**r, "generator": "ghost"} for r in outputs if r["generator"] == "drill"]
    unmatched = {**outputs[0], "instruction": "a question the reference never answered"}
    (tmp_path / "o.json").write_text(json.dumps(outputs + ghost + [unmatched]), encoding="utf-8")
    board = run(tmp_path, f"board --outputs {tmp_path}/o.json --reference {out}/reference.json --judge j --out {out}")
    assert board.returncode == 0 and "Traceback" not in board.stderr, board.stderr
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    drill = manifest["models"]["drill"]
    assert drill["settings_id"] == first["models"]["drill"]["settings_id"]
    assert drill["settings"]["max_tokens"] == 128 and drill["settings_now"]["settings"]["max_tokens"] == 64
    shown = run(tmp_path, f"board --show {out}/board.csv")
    said = [line for line in shown.stdout.splitlines() if line.startswith("WARNING:")]
    assert any("models.toml or the weights of 'drill' changed since it answered: its 3 answers" in w for w in said), said
    assert any("1 model answers have no reference answer to their question and are left out (1 of '"
               f"{outputs[0]['generator']}')" in w for w in said), said
    assert any(f"1 ranked models are not in {toml}: ghost" in w for w in said), said
