"""The custom backend: functions registered with @register_llm_infer, found in tools/custom/
(the example file) or registered here; a failing question fails alone; settings are passed on."""
import pytest

from backends.load import load_backend
from backends.custom_backend import CHUNK, register_llm_infer
from conftest import ROOT
from lib.registry import load_registry

QUESTIONS = [{"instruction": "What is 2+2?"}, {"instruction": "Translate", "input": "bonjour"},
             {"instruction": "BAD question"}]


@register_llm_infer("test_upper")
def upper(questions):
    if any(q.startswith("BAD") for q in questions):
        raise ValueError("cannot answer a BAD question")
    return [q.upper() for q in questions]


@register_llm_infer("test_settings")
def with_settings(questions, settings):
    return [{"output": f"{settings['max_tokens']}:{settings['system_prompt']}", "tokens": 7} for _ in questions]


@register_llm_infer("test_short")
def short(questions):
    return questions[:-1]


def spec_for(tmp_path, function, extra=""):
    toml = tmp_path / "models.toml"
    toml.write_text(f'[models.mine]\nbackend = "custom"\nfunction = "{function}"\n{extra}\n', encoding="utf-8")
    return load_registry(toml).get("mine")


def run(spec, questions=QUESTIONS):
    backend = load_backend(spec)
    try:
        return dict(backend.answer(questions))
    finally:
        backend.close()


def test_example_file_is_discovered():
    spec = load_registry(ROOT / "models.toml").get("parrot")
    assert (spec.backend, spec.function, spec.path) == ("custom", "parrot", None)
    results = run(spec)
    assert results[1]["output"] == "You asked: Translate\n\nbonjour"  # instruction, then its input
    assert results[0]["tokens"] == 5  # words stand in when the function gives no token count


def test_a_failing_question_fails_alone(tmp_path):
    results = run(spec_for(tmp_path, "test_upper"))
    assert results[0]["output"] == "WHAT IS 2+2?"
    assert results[1]["output"] == "TRANSLATE\n\nBONJOUR"
    assert "cannot answer a BAD question" in results[2]["error"]


def test_settings_and_dict_answers(tmp_path):
    results = run(spec_for(tmp_path, "test_settings", 'max_tokens = 9\nsystem_prompt = "be brief"'))
    assert results[0] == {"output": "9:be brief", "tokens": 7, "seconds": results[0]["seconds"]}


def test_wrong_number_of_answers_is_an_error(tmp_path):
    results = run(spec_for(tmp_path, "test_short"), QUESTIONS[:2])
    # The chunk fails as a whole, then each question alone gets no answer at all.
    assert all("returned" in r["error"] for r in results.values())


def test_many_questions_are_answered_in_chunks(tmp_path):
    questions = [{"instruction": f"q{i}"} for i in range(CHUNK * 2 + 3)]
    results = run(spec_for(tmp_path, "test_upper"), questions)
    assert [results[i]["output"] for i in range(len(questions))] == [f"Q{i}" for i in range(len(questions))]


def test_unknown_function_lists_the_registered_ones(tmp_path):
    with pytest.raises(LookupError) as err:
        load_backend(spec_for(tmp_path, "nope"))
    assert "'nope'" in str(err.value) and "parrot" in str(err.value) and "test_upper" in str(err.value)


def test_settings_id_follows_the_custom_code(tmp_path):
    spec = spec_for(tmp_path, "test_upper")
    assert spec.settings_id() != spec_for(tmp_path, "test_settings").settings_id()
    assert spec.settings_id() == spec_for(tmp_path, "test_upper").settings_id()
