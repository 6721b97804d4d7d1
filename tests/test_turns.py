"""Conversations of several turns (MT-Bench's question.jsonl) through infer.py, with every backend
kind that runs here: the embedded GGUF models on the llama.cpp engine, a custom function that takes
conversations, and the openai backend against a real llama_cpp.server on 127.0.0.1. Checked: every
turn is answered, turn 2 is shown the model's own turn-1 answer (in the rendered prompt or the
request's messages), per-question generation settings apply unless the model sets them, a failed
turn is retried on the next run, kill -9 between turns loses nothing, and FastChat's own code
reads the model-answer export. The transformers backend's turns: tests/test_hf_backend.py.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import infer
from lib.messages import chat_messages
from backends.custom_backend import register_llm_infer
from lib.records import AnswerCache, InputError, load_questions
from lib.registry import load_registry

ROOT = Path(__file__).resolve().parent.parent
MODELS = {"smollm2": ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf",
          "gemma3": ROOT / "models" / "gemma-3-270m-q4_k_m.gguf"}
GEMMA_TEMPLATE = load_registry(ROOT / "models.toml").get("gemma3_270m").chat_template

# MT-Bench's format (FastChat question.jsonl), with the per-category settings a set declares.
MT_QUESTIONS = [
    {"question_id": 81, "category": "writing", "generation": {"temperature": 0.7, "max_tokens": 10},
     "turns": ["Write one sentence about a trip to Hawaii.", "Rewrite it so that every word starts with A."]},
    {"question_id": 111, "category": "math", "generation": {"temperature": 0.0, "max_tokens": 10},
     "turns": ["What is 3 + 4?", "Now multiply the result by 2."], "reference": ["7", "14"]},
    {"question_id": 131, "category": "stem", "generation": {"temperature": 0.1, "max_tokens": 10},
     "turns": ["Name a planet.", "How far is it from the Sun?", "Say that again in French."]},
]


def write_questions(folder: Path, questions=MT_QUESTIONS) -> Path:
    path = folder / "question.jsonl"
    path.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in questions), encoding="utf-8")
    return path


def spec_for(tmp_path, table: str, name: str = "m"):
    (tmp_path / "models.toml").write_text(f"[models.{name}]\n{table}\n", encoding="utf-8")
    return load_registry(tmp_path / "models.toml").get(name)


def gguf_spec(tmp_path, model: str, extra: str = ""):
    if not MODELS[model].is_file():
        pytest.skip("run `make models` first")
    template = f"chat_template = '''{GEMMA_TEMPLATE}'''\n" if model == "gemma3" else ""
    return spec_for(tmp_path, f'path = "{MODELS[model]}"\nn_ctx = 1024\n{template}{extra}')


def read(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_fastchat_questions_load_as_conversations(tmp_path):
    questions = load_questions(write_questions(tmp_path))
    first = questions[0]
    assert first["instruction"] == MT_QUESTIONS[0]["turns"][0] and first["input"] == ""
    assert (first["dataset"], first["category"], first["question_id"]) == ("writing", "writing", 81)
    assert first["turns"] == MT_QUESTIONS[0]["turns"] and first.get("reference") is None
    assert questions[1]["reference"] == ["7", "14"]
    assert questions[1]["generation"] == {"temperature": 0.0, "max_tokens": 10}
    # Two conversations that start alike but go on differently are both kept.
    forked = [{"question_id": 1, "category": "c", "turns": ["Hi.", "A?"]},
              {"question_id": 2, "category": "c", "turns": ["Hi.", "B?"]}]
    assert [q["question_id"] for q in load_questions(write_questions(tmp_path, forked))] == [1, 2]
    for bad, says in ((["x"], "'turns' must be a list"), ([], "'turns' must be a list"),
                      ({"temperature": -1}, "'generation' must be"), ({"seed": 3}, "'generation' must be")):
        record = {"question_id": 1, "category": "c", "turns": bad} if isinstance(bad, list) else \
            {"question_id": 1, "category": "c", "turns": ["Hi."], "generation": bad}
        if record["turns"] == ["x"]:
            record["turns"] = "x"
        with pytest.raises(InputError, match=says) as err:
            load_questions(write_questions(tmp_path, [record]))
        assert "\n" not in str(err.value)


def test_chat_messages_alternate_the_history():
    question = {"instruction": "And 3?", "history": [["1?", "one"], ["2?", "two"]]}
    assert chat_messages(question, "Be brief.") == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "1?"},
        {"role": "assistant", "content": "one"}, {"role": "user", "content": "2?"},
        {"role": "assistant", "content": "two"}, {"role": "user", "content": "And 3?"}]


@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
def test_llama_cpp_answers_every_turn_with_its_own_answers_in_the_prompt(tmp_path, model, monkeypatch):
    from backends.llama_backend import LlamaBackend

    prompts = []  # the text each prompt renders to, as llama.cpp decodes it
    original = LlamaBackend.prompt_tokens

    def seen(self, question):
        tokens = original(self, question)
        prompts.append(self.model.detokenize(tokens, special=True).decode("utf-8", errors="replace"))
        return tokens
    monkeypatch.setattr(LlamaBackend, "prompt_tokens", seen)
    spec = gguf_spec(tmp_path, model)
    questions = load_questions(write_questions(tmp_path))
    counts = infer.run_model(spec, questions, tmp_path, quiet=True)
    assert counts == {"model": "m", "answered": 3, "reused": 0, "failed": 0, "turns_answered": 7,
                      "turns_reused": 0}
    records = read(tmp_path / "m.json")
    for record, question in zip(records, MT_QUESTIONS):
        assert "error" not in record, record
        assert record["turns"] == question["turns"] and len(record["turn_outputs"]) == len(question["turns"])
        assert all(record["turn_outputs"]), record
        assert record["output"] == record["turn_outputs"][0]  # alpaca_eval's fields are turn 1's
        assert record["instruction"] == question["turns"][0] and record["dataset"] == question["category"]
        assert (record["question_id"], record["category"]) == (question["question_id"], question["category"])
    assert len(prompts) == 7  # 3 first turns, 3 second turns, 1 third turn
    # Turn 2's prompt holds turn 1 and the model's own answer to it, before turn 2 itself.
    stem = records[2]
    turn2 = next(p for p in prompts if MT_QUESTIONS[2]["turns"][1] in p and MT_QUESTIONS[2]["turns"][2] not in p)
    assert turn2.index(MT_QUESTIONS[2]["turns"][0]) < turn2.index(stem["turn_outputs"][0]) \
        < turn2.index(MT_QUESTIONS[2]["turns"][1])
    turn3 = next(p for p in prompts if MT_QUESTIONS[2]["turns"][2] in p)
    assert all(text in turn3 for text in [*MT_QUESTIONS[2]["turns"], *stem["turn_outputs"][:2]])
    if model == "smollm2":  # the answer sits in an assistant turn of the model's own template
        assert f"<|im_start|>assistant\n{stem['turn_outputs'][0]}<|im_end|>" in turn2


def test_generation_settings_of_the_set_apply_unless_the_model_sets_them(tmp_path, monkeypatch):
    from backends.llama_engine import BatchedEngine

    runs = []  # (temperature, max_tokens, prompts) of each group the engine decoded
    original = BatchedEngine.run

    def run(self, prompts, settings, *args, **kwargs):
        runs.append((settings.temperature, settings.max_tokens, len(prompts)))
        yield from original(self, prompts, settings, *args, **kwargs)
    monkeypatch.setattr(BatchedEngine, "run", run)
    questions = load_questions(write_questions(tmp_path))
    spec = gguf_spec(tmp_path, "smollm2", "max_tokens = 6\n")  # the model sets max_tokens, not temperature
    infer.run_model(spec, [q for q in questions if q["question_id"] != 131], tmp_path, quiet=True)
    # Questions of different temperatures decode in groups of their own, with the model's max_tokens.
    assert sorted(runs) == [(0.0, 6, 1), (0.0, 6, 1), (0.7, 6, 1), (0.7, 6, 1)]
    writing, math = read(tmp_path / "m.json")
    assert writing["generation"] == {"temperature": 0.7, "max_tokens": 6}
    assert writing["generation_from_model"] == ["max_tokens"]
    assert all(0 < len(t.split()) and r["tokens"] <= 6 for r in (writing, math) for t in r["turn_outputs"])
    # The settings id covers the temperature used: not the model's own (greedy) one.
    assert writing["settings_id"] != spec.settings_id() and math["settings_id"] != writing["settings_id"]
    cached = AnswerCache(tmp_path / "cache" / "m.jsonl")
    assert {r["settings_id"] for r in cached.answers.values()} == {writing["settings_id"], math["settings_id"]}

    # A model that sets temperature itself keeps it: every question greedy, in one group per turn.
    runs.clear()
    (tmp_path / "x").mkdir()
    spec = gguf_spec(tmp_path / "x", "smollm2", "temperature = 0.0\n")
    infer.run_model(spec, questions, tmp_path / "x", quiet=True)
    assert sorted(runs) == [(0.0, 10, 1), (0.0, 10, 3), (0.0, 10, 3)]
    records = read(tmp_path / "x" / "m.json")
    assert [r["generation"]["temperature"] for r in records] == [0.0, 0.0, 0.0]
    assert all(r["generation_from_model"] == ["temperature"] for r in records)


CONVERSATIONS_SEEN = []
FAILING = set()  # user turns the function fails on (a service that is down for them)


@register_llm_infer("test_turns_chat")
def chat(conversations):
    """Answers from the conversation it is shown; fails on the user turns in FAILING."""
    CONVERSATIONS_SEEN.extend(conversations)
    answers = []
    for messages in conversations:
        if messages[-1]["content"] in FAILING:
            raise RuntimeError("the service is down")
        turn = sum(1 for m in messages if m["role"] == "user")
        answers.append(f"answer {turn} to: {messages[-1]['content']}")
    return answers


@register_llm_infer("test_turns_strings")
def strings(questions):
    return [f"A: {q}" for q in questions]


def test_custom_function_of_conversations_answers_every_turn_and_a_failed_turn_is_retried(tmp_path):
    CONVERSATIONS_SEEN.clear()
    FAILING.add("Now multiply the result by 2.")
    questions = load_questions(write_questions(tmp_path))
    spec = spec_for(tmp_path, 'backend = "custom"\nfunction = "test_turns_chat"\nsystem_prompt = "Be brief."')
    counts = infer.run_model(spec, questions, tmp_path, quiet=True)
    assert (counts["answered"], counts["failed"], counts["turns_answered"]) == (2, 1, 6)
    writing, math, stem = read(tmp_path / "m.json")
    assert writing["turn_outputs"] == ["answer 1 to: " + MT_QUESTIONS[0]["turns"][0],
                                       "answer 2 to: " + MT_QUESTIONS[0]["turns"][1]]
    assert stem["turn_outputs"][2] == "answer 3 to: Say that again in French."
    # Turn 2 failed: recorded, turn 1 kept, not exported to FastChat until it is answered.
    assert math["error"] == ("turn 2: custom function 'test_turns_chat': RuntimeError: the service is down")
    assert math["output"] == "answer 1 to: What is 3 + 4?" and math["turn_outputs"][1] == ""
    exported = [json.loads(x) for x in (tmp_path / "fastchat" / "model_answer" / "m.jsonl").read_text().splitlines()]
    assert [x["question_id"] for x in exported] == [81, 131]
    # The turn-3 conversation: the system prompt, every earlier turn with the function's own answers.
    third = next(m for m in CONVERSATIONS_SEEN if m[-1]["content"] == "Say that again in French.")
    assert third == [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": "Name a planet."},
                     {"role": "assistant", "content": "answer 1 to: Name a planet."},
                     {"role": "user", "content": "How far is it from the Sun?"},
                     {"role": "assistant", "content": "answer 2 to: How far is it from the Sun?"},
                     {"role": "user", "content": "Say that again in French."}]

    CONVERSATIONS_SEEN.clear()
    FAILING.clear()  # the service is back
    counts = infer.run_model(spec, questions, tmp_path, quiet=True)  # the rerun: only the failed turn
    assert (counts["answered"], counts["reused"], counts["failed"], counts["turns_answered"]) == (1, 2, 0, 1)
    assert [m[-1]["content"] for m in CONVERSATIONS_SEEN] == ["Now multiply the result by 2."]
    assert read(tmp_path / "m.json")[1]["turn_outputs"][1] == "answer 2 to: Now multiply the result by 2."
    exported = [json.loads(x) for x in (tmp_path / "fastchat" / "model_answer" / "m.jsonl").read_text().splitlines()]
    assert [x["question_id"] for x in exported] == [81, 111, 131]
    assert exported[1]["choices"] == [{"index": 0, "turns": read(tmp_path / "m.json")[1]["turn_outputs"]}]


def test_custom_function_of_strings_says_it_cannot_answer_turn_2(tmp_path):
    spec = spec_for(tmp_path, 'backend = "custom"\nfunction = "test_turns_strings"')
    counts = infer.run_model(spec, load_questions(write_questions(tmp_path))[:1], tmp_path, quiet=True)
    assert counts["failed"] == 1
    (record,) = read(tmp_path / "m.json")
    assert record["output"] == "A: " + MT_QUESTIONS[0]["turns"][0]  # turn 1 answered
    assert record["error"].startswith("turn 2: custom function 'test_turns_strings' takes questions as "
                                      "strings, so it cannot answer turn 2") and "\n" not in record["error"]


def test_the_example_conversation_function(tmp_path):
    spec = spec_for(tmp_path, 'backend = "custom"\nfunction = "parrot_chat"')
    infer.run_model(spec, load_questions(write_questions(tmp_path))[2:], tmp_path, quiet=True)
    (record,) = read(tmp_path / "m.json")
    assert record["turn_outputs"] == ["You asked: Name a planet. (0 earlier turns)",
                                      "You asked: How far is it from the Sun? (1 earlier turns)",
                                      "You asked: Say that again in French. (2 earlier turns)"]


def test_single_turn_files_keep_their_records(tmp_path):
    """A plain questions file gets exactly the records it always got: no new fields, no export."""
    (tmp_path / "q.txt").write_text("What is 2+2?\nName a colour.\n", encoding="utf-8")
    spec = spec_for(tmp_path, 'backend = "custom"\nfunction = "test_turns_strings"')
    counts = infer.run_model(spec, load_questions(tmp_path / "q.txt"), tmp_path, quiet=True)
    assert counts == {"model": "m", "answered": 2, "reused": 0, "failed": 0}
    for record in read(tmp_path / "m.json"):
        assert set(record) == {"instruction", "input", "output", "generator", "dataset", "datasplit", "tokens",
                               "seconds", "settings_id"}
        assert record["settings_id"] == spec.settings_id()
    assert not (tmp_path / "fastchat").exists()


def test_openai_backend_sends_the_conversation_as_messages(llama_server, tmp_path, monkeypatch):
    from openai.resources.chat.completions import Completions

    sent = []  # what reached the real server, request by request
    original = Completions.create

    def create(self, **kwargs):
        sent.append(kwargs)
        return original(self, **kwargs)
    monkeypatch.setattr(Completions, "create", create)
    spec = spec_for(tmp_path, f'backend = "openai"\nbase_url = "{llama_server}"\napi_model = "smollm2_135m"\n'
                              'max_tokens = 12\nconcurrency = 2')
    questions = load_questions(write_questions(tmp_path))[:2]
    counts = infer.run_model(spec, questions, tmp_path, quiet=True)
    assert (counts["failed"], counts["turns_answered"]) == (0, 4)
    writing, math = read(tmp_path / "m.json")
    assert all(writing["turn_outputs"]) and all(math["turn_outputs"])
    turn2 = next(k for k in sent if k["messages"][-1]["content"] == "Now multiply the result by 2.")
    assert turn2["messages"] == [{"role": "user", "content": "What is 3 + 4?"},
                                 {"role": "assistant", "content": math["turn_outputs"][0]},
                                 {"role": "user", "content": "Now multiply the result by 2."}]
    # The set's temperature reached the request; max_tokens is the model's own.
    assert {k["messages"][0]["content"]: (k["temperature"], k["max_tokens"]) for k in sent
            if len(k["messages"]) == 1} == {MT_QUESTIONS[0]["turns"][0]: (0.7, 12), "What is 3 + 4?": (0.0, 12)}


def test_kill_9_between_turns_loses_nothing(tmp_path):
    """infer.py killed with SIGKILL once every first turn is cached: the rerun answers only the
    turns that are missing, and each turn is in the cache once."""
    if not MODELS["smollm2"].is_file():
        pytest.skip("run `make models` first")
    questions = [{**q, "generation": {"max_tokens": 48}} for q in MT_QUESTIONS]
    path = write_questions(tmp_path, questions)
    spec_for(tmp_path, f'path = "{MODELS["smollm2"]}"\nn_ctx = 1024')
    cache = tmp_path / "out" / "cache" / "m.jsonl"
    command = [sys.executable, str(ROOT / "tools" / "infer.py"), "m", "--questions", str(path),
               "--models-toml", str(tmp_path / "models.toml"), "--out", str(tmp_path / "out"), "--quiet"]
    for attempt in range(3):  # a fast machine may finish turn 2 before we see turn 1 done
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lines: list[dict] = []
        while proc.poll() is None:
            lines = cache_lines(cache)
            if len(lines) >= 3:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.01)
        proc.wait()
        if proc.returncode == -signal.SIGKILL:
            break
        cache.unlink()
    else:
        pytest.skip("every run finished before it could be killed between turns")
    before = cache_lines(cache)
    assert sum(1 for r in before if "turn" not in r) == 3  # every first turn was cached
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    missing = 7 - len(before)
    assert f"({missing} turns answered, {len(before)} reused)" in done.stderr
    after = cache_lines(cache)
    assert after[:len(before)] == before and len(after) == 7  # nothing lost, nothing asked twice
    keys = [(r["instruction"], r.get("turn", 1)) for r in after]
    assert len(set(keys)) == 7
    records = read(tmp_path / "out" / "m.json")
    assert all(all(r["turn_outputs"]) and "error" not in r for r in records)
    # The answers the killed run made are the ones the conversation goes on from.
    first = {r["instruction"]: r["output"] for r in before if "turn" not in r}
    assert [r["turn_outputs"][0] for r in records] == [first[q["turns"][0]] for q in MT_QUESTIONS]


def cache_lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for raw in path.read_bytes().splitlines():
        try:
            out.append(json.loads(raw))
        except ValueError:
            pass  # a line being written
    return out


def fastchat_functions(names: list[str]) -> dict:
    """FastChat's own functions `names` from fastchat/llm_judge/common.py of the installed fschat,
    as published, without the module's imports (openai 0.x, anthropic, torch) that they do not use."""
    import ast
    import importlib.util
    import warnings

    spec = importlib.util.find_spec("fastchat")
    if spec is None:
        pytest.skip("fschat is not installed (requirements-nodeps.txt pins it; make setup)")
    path = Path(spec.submodule_search_locations[0]) / "llm_judge" / "common.py"
    with warnings.catch_warnings():  # its regular expressions are written as plain strings
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        tree = ast.parse(path.read_text(encoding="utf-8"))
    keep = [node for node in tree.body
            if (isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in names)
            or (isinstance(node, ast.Assign) and any(getattr(t, "id", None) in names for t in node.targets))]
    namespace = {}
    exec("import dataclasses, glob, json, os\nfrom typing import Optional\n", namespace)
    exec(compile(ast.Module(body=keep, type_ignores=[]), str(path), "exec"), namespace)
    return namespace


def test_fastchat_reads_the_export(tmp_path):
    """FastChat's own load_questions, load_model_answers and check_data read our question file and
    model-answer export as its gen_judgment.py does, and find every answer of every turn."""
    fc = fastchat_functions(["load_questions", "load_model_answers", "check_data", "NEED_REF_CATS"])
    path = write_questions(tmp_path)
    spec = spec_for(tmp_path, 'backend = "custom"\nfunction = "test_turns_chat"', name="my-model")
    infer.run_model(spec, load_questions(path), tmp_path, quiet=True)
    questions = fc["load_questions"](str(path), None, None)
    answers = fc["load_model_answers"](str(tmp_path / "fastchat" / "model_answer"))
    fc["check_data"](questions, answers, {}, ["my-model"], {})  # asserts every question has its answer
    ours = read(tmp_path / "my-model.json")
    for question, record in zip(questions, ours):
        answer = answers["my-model"][question["question_id"]]
        assert answer["model_id"] == "my-model" and len(answer["answer_id"]) == 22
        assert answer["choices"][0]["turns"] == record["turn_outputs"]
        assert len(answer["choices"][0]["turns"]) == len(question["turns"])
    before = (tmp_path / "fastchat" / "model_answer" / "my-model.jsonl").read_bytes()
    infer.run_model(spec, load_questions(path), tmp_path, quiet=True)  # nothing new: the file is kept
    assert (tmp_path / "fastchat" / "model_answer" / "my-model.jsonl").read_bytes() == before


def test_the_manifest_says_which_generation_settings_were_used(tmp_path):
    from board.provenance import model_entry

    spec = spec_for(tmp_path, 'backend = "custom"\nfunction = "parrot_chat"\nmax_tokens = 64')
    infer.run_model(spec, load_questions(write_questions(tmp_path)), tmp_path, quiet=True)
    entry, changed = model_entry(load_registry(tmp_path / "models.toml"), "m", tmp_path, read(tmp_path / "m.json"))
    assert changed is None  # per-question settings are not a change of models.toml
    assert entry["generation"] == [
        {"temperature": 0.0, "max_tokens": 64, "from_model": ["max_tokens"], "n_answers": 1},
        {"temperature": 0.1, "max_tokens": 64, "from_model": ["max_tokens"], "n_answers": 1},
        {"temperature": 0.7, "max_tokens": 64, "from_model": ["max_tokens"], "n_answers": 1}]
