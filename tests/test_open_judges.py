"""The open judges of models.toml (commented out), each asked in its own format, on random-weight twins.

tests/judge_twins.py builds the twins (Llama-3.1 for Skywork-Critic and Selene-1-Mini, Mistral for
Prometheus-7B-v2.0, Qwen2.5 for the general model) once per session; the project's commented entries
are uncommented with the twin's file in place of the Hub location. For each format: the prompt
equals the format's text with a known pair, the chat template renders it as the real model's does,
and the verdict is P(A), P(B) read from the logits where the format puts it, checked against the
twin's own logits computed apart (llama_cpp.Llama, one token at a time).
What this cannot show: the real judges' agreement with people (docs/judges.md, "Open judge models").
"""
import math
import re
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

import judge_twins
from judges.cache import Call
from judges.labels import label_position, option_paths
from lib.registry import RegistryError, load_registry

ROOT = Path(__file__).resolve().parent.parent
QUESTION, GOOD, BAD = "What is the capital of France?", "Paris.", "Berlin is the capital of France."
ENTRIES = {"skywork_critic_8b": "llama31", "selene_mini_8b": "llama31", "prometheus_7b": "mistral"}
SHORT = 24  # tokens of explanation in these tests (the formats allow 512): the label is read after them
LOCATION = re.compile(r"^(gguf_repo|gguf_file|revision|sha256|hf_repo|quant) = .*$", re.M)


def uncommented() -> str:
    """The project's commented open-judge entries, uncommented ("# " dropped, "##" notes kept as comments)."""
    text = (ROOT / "models.toml").read_text(encoding="utf-8")
    block = text[text.index("# [models.skywork_critic_8b]"):]
    return "\n".join(line[2:] if line.startswith("# ") else "" if line == "#" else line
                     for line in block.splitlines()) + "\n"


@pytest.fixture(scope="session")
def twin_registry(tmp_path_factory):
    """(registry of the open judges on their twins, plus qwen25_twin; the twins' paths; an OUT)."""
    tmp = tmp_path_factory.mktemp("open-judges")
    paths = judge_twins.build_all(tmp / "twins")
    toml = uncommented()
    for name, twin in ENTRIES.items():
        toml = toml.replace(f"[models.{name}]\n", f"[models.{name}]\npath = \"{paths[twin]}\"\n")
    toml = LOCATION.sub("", toml)
    toml += f'\n[models.qwen25_twin]\npath = "{paths["qwen25"]}"\nmax_tokens = 512\ntemperature = 0.0\nn_ctx = 4096\n'
    (tmp / "models.toml").write_text(toml, encoding="utf-8")
    return load_registry(tmp / "models.toml"), paths, tmp / "out"


@pytest.fixture(scope="session")
def judges(twin_registry):
    from judges.resolve import resolve_judge

    registry, _, out = twin_registry
    made = {name: resolve_judge(name, registry, out) for name in [*ENTRIES, "qwen25_twin"]}
    yield made
    for judge in made.values():
        judge.close()


@pytest.fixture(scope="session")
def direct(twin_registry):
    """name of a twin -> llama_cpp.Llama on it, to compute logits apart from the judges' engine."""
    from llama_cpp import Llama

    _, paths, _ = twin_registry
    models = {k: Llama(str(p), n_ctx=4096, n_batch=512, logits_all=True, verbose=False, seed=0)
              for k, p in paths.items()}
    yield models
    for model in models.values():
        model.close()


def direct_probs(llm, context: list[int], paths: dict[str, list[int]]) -> dict[str, float]:
    """P(option) = the chain of each path's tokens after `context`, over the whole vocabulary, normalized."""
    import numpy as np

    raw = {}
    for option, path in paths.items():
        llm.reset()
        llm.eval(context)
        logp = 0.0
        for token in path:
            row = np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float64)
            logp += row[token] - (row.max() + math.log(np.exp(row - row.max()).sum()))
            llm.eval([token])
        raw[option] = math.exp(logp)
    total = sum(raw.values())
    return {o: p / total for o, p in raw.items()}


def detok(judge, ids) -> str:
    return judge.inner._load().model.detokenize(ids, special=True).decode("utf-8")


def encoder(judge):
    model = judge.inner._load().model
    return lambda text: model.tokenize(text.encode("utf-8"), add_bos=False, special=False)


LLAMA31_HEAD = ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
                "Today Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n")
LLAMA31_TAIL = "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"


def test_entries_are_commented_out_and_pinned():
    """Nothing changes for a user who does not opt in; uncommented, the entries load with their pins."""
    assert not set(ENTRIES) & set(load_registry(ROOT / "models.toml").models)
    tables = tomllib.loads(uncommented())["models"]
    assert set(tables) == set(ENTRIES)
    for name, table in tables.items():
        assert re.fullmatch(r"[0-9a-f]{40}", table["revision"]), name
    assert tables["skywork_critic_8b"]["sha256"] == "e45956e23b2f328dc7e8b9edd67224aeebbaf5c3c3a203822d8bb847713893e1"
    assert tables["selene_mini_8b"]["gguf_repo"].startswith("AtlaAI/")  # Atla's own GGUF
    assert {t["judge_format"] for t in tables.values()} == {"skywork", "selene", "prometheus"}


@pytest.mark.parametrize("table, wanted", [
    ('path = "x.gguf"\njudge_format = "nope"\n', "judge_format 'nope' is unknown; use one of: skywork, selene, prometheus"),
    ('backend = "openai"\napi_model = "m"\nbase_url = "http://127.0.0.1:1/v1"\njudge_format = "skywork"\n',
     "reads the verdict from the logits, which a openai judge does not give"),
])
def test_bad_judge_format_is_one_line(tmp_path, table, wanted):
    (tmp_path / "models.toml").write_text("[models.j]\n" + table, encoding="utf-8")
    with pytest.raises(RegistryError) as err:
        load_registry(tmp_path / "models.toml")
    assert wanted in str(err.value) and "\n" not in str(err.value)


def test_skywork_prompt_and_label(judges, direct):
    from judges.formats import skywork

    call = skywork.pair_call(QUESTION, GOOD, BAD)
    expected = (
        "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to "
        "the user question displayed below. You should choose the assistant that follows the user's instructions and "
        "answers the user's question better. \nYour evaluation should consider factors such as the helpfulness, "
        "relevance, accuracy, depth, creativity, and level of detail of their responses. Avoid any position biases "
        "and ensure that the order in which the responses were presented does not influence your decision. Do not "
        "allow the length of the responses to influence your evaluation. Do not favor certain names of the "
        "assistants. Be as objective as possible. \nPlease directly output your final verdict by strictly following "
        "this format: \"[[A]]\" if assistant A is better, \"[[B]]\" if assistant B is better.\n\n[User Question]\n"
        "What is the capital of France?\n\n[The Start of Assistant A's Answer]\nParis.\n[The End of Assistant A's "
        "Answer]\n\n[The Start of Assistant B's Answer]\nBerlin is the capital of France.\n[The End of Assistant B's "
        "Answer]\n")
    assert call.messages() == [{"role": "user", "content": expected}]
    judge = judges["skywork_critic_8b"]
    ids = judge.inner.tokens(call.messages())
    assert detok(judge, ids) == LLAMA31_HEAD + expected.strip() + LLAMA31_TAIL  # the template trims content
    [(_, verdict)] = list(judge.judge([Call(QUESTION, GOOD, BAD)]))
    assert verdict["source"] == "fast" and verdict["label"] in ("A", "B")
    assert math.isclose(sum(verdict["probs"].values()), 1.0, abs_tol=1e-5)
    assert math.isclose(verdict["preference"], 1 + verdict["probs"]["B"], abs_tol=1e-5)
    # read right after the generation prompt and "[[", chained with "]]"
    head, paths = option_paths(encoder(judge), "[[", ("A", "B"))
    assert detok(judge, ids + head).endswith(LLAMA31_TAIL + "[[")
    assert {o: detok(judge, p) for o, p in paths.items()} == {"A": "A]]", "B": "B]]"}
    want = direct_probs(direct["llama31"], ids + head, paths)
    assert verdict["probs"] == pytest.approx(want, abs=2e-3)


def short_verdict(judge, call):
    """FormatJudge.judge's verdict for `call` with a short explanation (the judge-check test runs judge())."""
    from judges.formats import verdict_from_label

    [(_, record)] = list(judge.inner.label([replace(call, max_tokens=SHORT)]))
    return verdict_from_label(record)


def check_written_label(judge, llm, call, verdict, marker: str, ids: list[int]):
    """The verdict's probabilities were read after `marker` in the judge's own reply."""
    assert verdict["label"] in ("A", "B") and math.isclose(sum(verdict["probs"].values()), 1.0, abs_tol=1e-5)
    prefix, source = label_position(call, verdict["judgment"])
    assert source == verdict["source"] and prefix.endswith(marker)
    head, paths = option_paths(encoder(judge), prefix, call.options, call.close)
    for option, path in paths.items():  # the text before the label is the reply up to the marker
        # (SentencePiece, Mistral's: re-encoding the reply adds its dummy-prefix space at the start)
        assert detok(judge, head + path) in (prefix + option, " " + prefix + option)
    assert verdict["probs"] == pytest.approx(direct_probs(llm, ids + head, paths), abs=2e-3)


def test_selene_prompt_and_label(judges, direct):
    from judges.formats import selene

    call = selene.pair_call(QUESTION, GOOD, BAD)
    [message] = call.messages()
    assert message["role"] == "user"
    assert message["content"].startswith("You are a helpful assistant in evaluating the quality of the responses "
                                          "for a given instruction. Your goal is to select the best response")
    assert ("Your reply should strictly follow this format:\n**Reasoning:** <feedback evaluating the responses>\n\n"
            "**Result:** <A or B>\n\nHere is the data.\n\n") in message["content"]
    assert message["content"].endswith(
        "Instruction:\n```\nWhat is the capital of France?\n```\n\nResponse A:\n```\nParis.\n```\n\nResponse B:\n```\n"
        "Berlin is the capital of France.\n```\n\nScore Rubrics:\n[Does the model provide relevant and useful "
        "responses to the user's needs or questions?]")
    judge = judges["selene_mini_8b"]
    ids = judge.inner.tokens(call.messages())
    assert detok(judge, ids) == LLAMA31_HEAD + message["content"] + LLAMA31_TAIL
    verdict = short_verdict(judge, call)
    assert verdict["source"] in ("logits", "logits-cued") and verdict["judgment"]
    check_written_label(judge, direct["llama31"], call, verdict, "**Result:** ", ids)


def test_prometheus_relative_prompt_and_label(judges, direct):
    from fastchat.conversation import get_conv_template

    from judges.formats import prometheus

    call = prometheus.pair_call(QUESTION, GOOD, BAD)
    system, user = call.messages()
    assert system == {"role": "system", "content": prometheus.REL_SYSTEM_PROMPT}
    assert user["content"].startswith("###Task Description:\nAn instruction (might include an Input inside it), two "
                                      "responses to evaluate (denoted as Response A and Response B)")
    assert user["content"].endswith(
        "###Instruction:\nWhat is the capital of France?\n\n###Response A:\nParis.\n\n###Response B:\nBerlin is the "
        "capital of France.\n\n###Score Rubric:\n[Does the model provide relevant and useful responses to the "
        "user's needs or questions?]\n\n###Feedback: ")
    # models.toml's template renders what prometheus-eval sends: FastChat's "mistral" conversation after <s>
    conv = get_conv_template("mistral")
    conv.set_system_message(system["content"])
    conv.append_message(conv.roles[0], user["content"])
    conv.append_message(conv.roles[1], None)
    judge = judges["prometheus_7b"]
    ids = judge.inner.tokens(call.messages())
    # token for token what vLLM feeds the model for that prompt string (BOS added, SentencePiece's space prefix)
    model = judge.inner._load().model
    assert ids == model.tokenize(conv.get_prompt().encode("utf-8"), add_bos=True, special=False)
    check_written_label(judge, direct["mistral"], call, short_verdict(judge, call), "[RESULT] ", ids)


def test_prometheus_absolute_grading(judges):
    from judges.formats import prometheus

    call = prometheus.absolute_call(QUESTION, GOOD)
    assert "###Response to evaluate:\nParis.\n\n###Score Rubrics:\n[Does the model provide relevant" in \
        call.messages()[1]["content"]
    [(_, record)] = list(judges["prometheus_7b"].label([replace(call, max_tokens=SHORT)]))
    assert record["label"] in prometheus.SCORES and 1 <= record["score"] <= 5
    assert math.isclose(sum(record["probs"].values()), 1.0, abs_tol=1e-5)
    assert label_position(call, record["judgment"])[0].endswith("[RESULT] ")


def test_qwen25_general_judge_chatml(judges):
    """Qwen2.5 judges in the board's own prompt (no judge_format), through its ChatML template."""
    from judges.prompt import make_messages, prompt_template

    judge = judges["qwen25_twin"]
    assert judge.protocol == "logits-v2"
    ids = judge.tokens(make_messages(Call(QUESTION, GOOD, BAD), prompt_template()))
    text = judge._load().model.detokenize(ids, special=True).decode("utf-8")
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_end|>\n<|im_start|>assistant\n")
    [(_, verdict)] = list(judge.judge([Call(QUESTION, GOOD, BAD)]))
    assert 1 <= verdict["preference"] <= 2 and verdict["soft"]


def test_judge_check_asks_in_the_format(twin_registry, judges):
    """`make judge-check JUDGE=skywork_critic_8b`'s tool: the check records the format's protocol."""
    import json

    import judge_check
    from judges.identity import check_path

    registry, _, out = twin_registry
    code = judge_check.main(["--judge", "skywork_critic_8b", "--models-toml", str(registry.source),
                             "--out", str(out), "--limit", "2"])
    assert code == 0
    check = json.loads(check_path(out, "skywork_critic_8b").read_text(encoding="utf-8"))
    assert check["protocol"] == "format:skywork-v1" and check["identity"]["prompt_sha256"]
