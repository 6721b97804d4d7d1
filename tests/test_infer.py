"""infer.py with the embedded SmolLM2 model through the real llama.cpp: answers, resume, failures."""
import json
from pathlib import Path

import pytest

import backends.load
import infer
from lib.records import AnswerCache
from lib.registry import load_registry

ROOT = Path(__file__).resolve().parent.parent
SMOLLM2 = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
pytestmark = pytest.mark.skipif(not SMOLLM2.is_file(), reason="run `make models` first")

QUESTIONS = [{"instruction": "What is 2+2?", "input": "", "dataset": "t"},
             {"instruction": "为什么天空是蓝色的？", "input": "", "dataset": "t"},
             {"instruction": "Name a colour.", "input": "Answer in one word.", "dataset": "t"}]


def spec_for(tmp_path, extra=""):
    toml = tmp_path / "models.toml"
    toml.write_text(f'[models.tiny]\npath = "{SMOLLM2}"\nmax_tokens = 12\nn_ctx = 512\n{extra}', encoding="utf-8")
    return load_registry(toml).get("tiny")


def read(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_answers_then_resumes_without_loading_the_model(tmp_path, monkeypatch):
    spec = spec_for(tmp_path)
    counts = infer.run_model(spec, QUESTIONS, tmp_path, quiet=True)
    assert counts == {"model": "tiny", "answered": 3, "reused": 0, "failed": 0}
    records = read(tmp_path / "tiny.json")
    assert [r["instruction"] for r in records] == [q["instruction"] for q in QUESTIONS]
    for record in records:
        assert record["generator"] == "tiny" and record["datasplit"] == "eval"
        assert record["output"] and 0 < record["tokens"] <= 12
        assert "<|im_start|>" not in record["output"] and "<|im_end|>" not in record["output"]
        assert "What is 2+2?" not in record["output"][:12]  # the prompt is not echoed

    def no_model(_spec):
        raise AssertionError("the model must not be loaded when every answer is cached")
    monkeypatch.setattr(backends.load, "load_backend", no_model)
    assert infer.run_model(spec, QUESTIONS, tmp_path, quiet=True)["reused"] == 3
    assert read(tmp_path / "tiny.json") == records


def test_changed_settings_are_answered_again(tmp_path):
    infer.run_model(spec_for(tmp_path), QUESTIONS[:1], tmp_path, quiet=True)
    counts = infer.run_model(spec_for(tmp_path, "seed = 5\n"),
                             QUESTIONS[:1], tmp_path, quiet=True)
    assert counts["answered"] == 1 and counts["reused"] == 0


def test_a_failed_question_is_recorded_and_the_rest_go_on(tmp_path):
    long_question = {"instruction": "word " * 600, "input": "", "dataset": "t"}  # > n_ctx=512
    counts = infer.run_model(spec_for(tmp_path), [QUESTIONS[0], long_question], tmp_path, quiet=True)
    assert counts == {"model": "tiny", "answered": 1, "reused": 0, "failed": 1}
    good, bad = read(tmp_path / "tiny.json")
    assert good["output"] and "error" not in good
    assert bad["error"] and bad["output"] == ""


class InterruptedBackend:
    """Answers the first question, then the user presses Ctrl-C."""

    def answer(self, questions):
        yield 0, {"output": "first", "tokens": 1, "seconds": 0.1}
        raise KeyboardInterrupt

    def close(self):
        pass


def test_ctrl_c_keeps_answers_already_done(tmp_path, monkeypatch):
    spec = spec_for(tmp_path)
    monkeypatch.setattr(backends.load, "load_backend", lambda _spec: InterruptedBackend())
    with pytest.raises(KeyboardInterrupt):
        infer.run_model(spec, QUESTIONS, tmp_path, quiet=True)
    assert AnswerCache(tmp_path / "cache" / "tiny.jsonl").get(spec.settings_id(), QUESTIONS[0])["output"] == "first"
    monkeypatch.undo()
    counts = infer.run_model(spec, QUESTIONS, tmp_path, quiet=True)  # the rerun continues
    assert (counts["reused"], counts["answered"]) == (1, 2)


def test_main_reports_bad_input_in_one_line(tmp_path, capsys):
    spec_for(tmp_path)
    assert infer.main(["tiny", "--models-toml", str(tmp_path / "models.toml"),
                       "--questions", str(tmp_path / "missing.txt"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "questions file not found" in err and "\n" not in err
    assert infer.main(["nope", "--models-toml", str(tmp_path / "models.toml"),
                       "--questions", str(tmp_path / "missing.txt")]) == 2
    assert "no model named 'nope'" in capsys.readouterr().err



def test_llama_cpp_log_lines_stay_off_the_screen(tmp_path, capfd):
    """The embedded Gemma 3 makes llama.cpp warn ("using full-size SWA cache") on a context longer
    than its sliding window: nothing of llama.cpp's reaches the screen, only our own lines."""
    from backends.llama_backend import LlamaBackend

    gemma = ROOT / "models" / "gemma-3-270m-q4_k_m.gguf"
    if not gemma.is_file():
        pytest.skip("run `make models` first")
    (tmp_path / "models.toml").write_text(f'[models.g]\npath = "{gemma}"\nmax_tokens = 4\nn_ctx = 2048\n'
                                          'chat_template = "{{ messages[0][\'content\'] }}"\n', encoding="utf-8")
    backend = LlamaBackend(load_registry(tmp_path / "models.toml").get("g"))
    try:
        answers = dict(backend.answer([{"instruction": "Name a colour."}], parallel=1))
    finally:
        backend.close()
    assert "error" not in answers[0]
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""
