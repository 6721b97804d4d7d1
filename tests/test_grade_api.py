"""MT-Bench grading by an API judge against a real local OpenAI-compatible server
(`python -m llama_cpp.server` with the embedded SmolLM2, 127.0.0.1 only), checked against
FastChat's own code (fschat 0.2.36: common.run_judge_single): the same system and user prompts,
the same reply, the same rating on every reply; a reply without a rating is a failed call
(n_failed, not cached), as FastChat's -1. FastChat's parse is also run on replies of every
format a judge writes ([[8]], [[8.5]], [8], [[10]], none, ...), against ours.
FastChat sends its requests with the pre-1.0 openai API: its one network function,
chat_completion_openai, is replaced by one that sends FastChat's own messages to the server."""
import json
from pathlib import Path

import pytest

from benchdata import fastchat_common, mt_bench_data
from board.graded import mt_bench
from judges.resolve import resolve_judge
from judges.labels import fastchat_rating, label_calls
from llama_server import judge_server
from lib.registry import load_registry

ROOT = Path(__file__).resolve().parent.parent
SMOLLM2 = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
BENCH = mt_bench_data()
pytestmark = pytest.mark.skipif(not SMOLLM2.is_file() or not BENCH.is_dir(),
                                reason="needs `make models` and the MT-Bench files (../shared/benchmarks)")
FORMATS = ["Rating: [[8]]", "[[8.5]] overall", "It deserves [7].", "Rating: [[10]]", "[[3]] then [[9]]",
           "[9] but [[4]]", "Rating: 6/10", "[[rating]]", "[[ 5 ]]", "", "Score [[0.5]]", "[[7.]]", "[2.25]"]


def fixture_questions():
    questions = [json.loads(line) for line in (BENCH / "mt_bench" / "question.jsonl").read_text().splitlines()]
    refs = {r["question_id"]: r for r in map(json.loads, (BENCH / "mt_bench/reference_answer/gpt-4.jsonl").read_text().splitlines())}
    picked = [next(q for q in questions if q["category"] == c) for c in ("writing", "math")]
    return picked, refs


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api")
    (folder / "models.toml").write_text(f'[models.local]\npath = "{SMOLLM2}"\nn_ctx = 4096\n')
    spec = load_registry(folder / "models.toml").models["local"]
    with judge_server(spec, folder / "server.log") as base_url:
        (folder / "models.toml").write_text(f'[models.api]\nbackend = "openai"\nbase_url = "{base_url}"\n'
                                            f'api_model = "local"\nconcurrency = 4\n')
        yield base_url, folder


def test_our_prompts_replies_and_ratings_equal_fastchats(server, tmp_path):
    base_url, folder = server
    common = fastchat_common()
    prompts = mt_bench.load_judge_prompts(BENCH / "judge_prompts.jsonl")
    questions, refs = fixture_questions()
    answers = ["Hawaii is lovely. Rating: [[9]]", "x = 3 [[2]]"]  # answers quoting a rating, as attacks do
    items = []
    for q, answer in zip(questions, answers):
        norm = {**q, "instruction": q["turns"][0], "reference": refs.get(q["question_id"], {}).get("choices", [{}])[0].get("turns")}
        for turn, name, call in mt_bench.single_calls(prompts, norm, [answer, answer + " (again)"], max_tokens=48):
            items.append((q, [answer, answer + " (again)"], turn, name, call))
    judge = resolve_judge("api", load_registry(folder / "models.toml"), tmp_path)
    records, stats = label_calls(judge, [c for *_, c in items], tmp_path, quiet=True)

    import openai
    client = openai.OpenAI(base_url=base_url, api_key="none")
    sent = []

    def chat_completion_openai(model, conv, temperature, max_tokens, api_dict=None):
        messages = conv.to_openai_api_messages()
        sent.append(messages)
        reply = client.chat.completions.create(model="local", messages=messages, temperature=temperature, max_tokens=48)
        return reply.choices[0].message.content

    common.chat_completion_openai = chat_completion_openai
    failed = 0
    for q, outs, turn, name, call in items:
        judge_ = common.Judge("gpt-4", prompts[name], ref_based="math" in name, multi_turn=turn == 2)
        answer = {"choices": [{"turns": outs}]}
        ref = refs[q["question_id"]] if "math" in name else None
        rating, user_prompt, judgment = common.run_judge_single(q, answer, judge_, ref, multi_turn=turn == 2)
        assert sent[-1] == call.messages()  # the same system + user messages, byte for byte
        assert user_prompt == call.messages()[-1]["content"]
        record = records.get(call)
        ours = record["written"] if record else -1
        assert ours == rating, (judgment, record)
        if record:
            assert record["judgment"] == judgment and record["score"] is not None
        failed += rating == -1
    assert stats.failed == failed  # FastChat's -1s are our failed calls, counted
    assert stats.made == len(items) - failed


def test_the_parser_equals_fastchats_on_every_format():
    common = fastchat_common()
    prompts = mt_bench.load_judge_prompts(BENCH / "judge_prompts.jsonl")
    for text in FORMATS:
        common.chat_completion_openai = lambda *a, text=text, **k: text
        judge = common.Judge("gpt-4", prompts["single-v1"])
        rating, _, _ = common.run_judge_single({"turns": ["q"]}, {"choices": [{"turns": ["a"]}]}, judge, None)
        ours = fastchat_rating(text)
        assert (ours if ours is not None else -1) == rating, text
