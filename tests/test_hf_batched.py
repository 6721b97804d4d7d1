"""Batched answers of the transformers backend (tools/backends/hf_backend.py, hf_batch.py): greedy
answers of several questions per generate call equal each question's alone, in fp32 on the CPU:
on a tiny Llama, on the Baichuan twin run as transformers' Llama, and on the ChatGLM-6B twin in
its own pinned environment, where they equal the model's own chat(); with repetition_penalty,
stop strings and a second turn ("history"). A batch over the memory is halved (simulated with
LLMEVAL_KV_BUDGET, as for the llama.cpp engine). Quantized weights asked for on a CPU, or in an
environment that cannot make them, are one line."""
import json
import subprocess
from pathlib import Path

import pytest

import infer
import twins
from backends.load import load_backend
from lib.messages import chat_messages
from lib.registry import load_registry

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [{"instruction": "What is the capital of France?"}, {"instruction": "Hi"},
             {"instruction": "Hello, how are you today? Machine learning models answer questions."},
             {"instruction": "你好，世界。"}, {"instruction": "Say hello.", "input": "to Bob"},
             {"instruction": "And why?", "history": [["Why is the sky blue?", "Sunlight is scattered by the air."]]},
             {"instruction": "Name a colour.", "generation": {"max_tokens": 5}}]  # a set's own setting


def spec_for(tmp_path, folder, extra="", name="m"):
    toml = tmp_path / "models.toml"
    toml.write_text(f'[models.{name}]\npath = "{folder}"\nbackend = "transformers"\nmax_tokens = 12\n{extra}\n',
                    encoding="utf-8")
    return load_registry(toml).get(name)


def answers(spec, questions):
    backend = load_backend(spec)
    try:
        return [r for _, r in sorted(backend.answer(questions), key=lambda x: x[0])]
    finally:
        backend.close()


def one_at_a_time(folder, questions, spec):
    """The original guide's loop: one question per generate, transformers' own repetition
    penalty and stop strings, the new tokens decoded."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    if spec.chat_template:
        tok.chat_template = spec.chat_template
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    out = []
    for question in questions:
        ids = tok.apply_chat_template(chat_messages(question, spec.system_prompt), add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)
        extra = {"repetition_penalty": spec.repetition_penalty} if spec.repetition_penalty != 1 else {}
        if spec.stop:
            extra.update(stop_strings=spec.stop, tokenizer=tok)
        with torch.no_grad():
            row = model.generate(**ids, max_new_tokens=question.get("generation", {}).get("max_tokens", spec.max_tokens),
                                 do_sample=False,
                                 pad_token_id=tok.eos_token_id, **extra)[0]
        text = tok.decode(row[ids["input_ids"].shape[1]:], skip_special_tokens=True)
        for stop in spec.stop:
            text = text.split(stop)[0]
        out.append(text.strip())
    return out


@pytest.mark.parametrize("penalty", [1.0, 1.3])
def test_batched_greedy_equals_one_at_a_time_on_a_tiny_llama(tiny_llama, tmp_path, penalty):
    spec = spec_for(tmp_path, tiny_llama, f"parallel = 4\nrepetition_penalty = {penalty}")
    expected = one_at_a_time(tiny_llama, QUESTIONS, spec)
    got = answers(spec, QUESTIONS)
    assert [r["output"] for r in got] == expected
    assert all(0 < r["tokens"] <= 12 and r["seconds"] > 0 for r in got) and got[-1]["tokens"] <= 5
    assert len(set(expected)) > 3  # different questions, different answers: the rows did not mix


def test_stop_strings_cut_each_row_of_a_batch(tiny_llama, tmp_path):
    plain = answers(spec_for(tmp_path, tiny_llama, "parallel = 1"), QUESTIONS)
    stop = next(r["output"][3:5] for r in plain if len(r["output"]) > 6 and r["output"][3:5].strip())
    spec = spec_for(tmp_path, tiny_llama, f"parallel = 3\nstop = [{json.dumps(stop)}]")
    got = [r["output"] for r in answers(spec, QUESTIONS)]
    assert got == one_at_a_time(tiny_llama, QUESTIONS, spec)
    assert got == [r["output"].split(stop)[0].strip() for r in plain] and all(stop not in g for g in got)


def test_batched_greedy_equals_one_at_a_time_on_the_baichuan_twin(tmp_path):
    """models.toml's own baichuan_7b settings: its Question/Answer template, stop and penalty 1.1."""
    folder = twins.baichuan_as_llama(twins.build_baichuan(tmp_path / "twin"), tmp_path / "llama")
    declared = load_registry(ROOT / "models.toml").get("baichuan_7b")
    extra = (f"parallel = 4\nrepetition_penalty = {declared.repetition_penalty}\n"
             f"stop = {json.dumps(declared.stop)}\nchat_template = {json.dumps(declared.chat_template)}")
    spec = spec_for(tmp_path, folder, extra)
    got = answers(spec, QUESTIONS)
    assert all("error" not in r for r in got), got
    assert [r["output"] for r in got] == one_at_a_time(folder, QUESTIONS, spec)


def test_a_batch_out_of_memory_is_halved_once_and_every_answer_is_cached(tiny_llama, tmp_path, monkeypatch, capsys):
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in QUESTIONS[:5]),
                                      encoding="utf-8")
    spec_for(tmp_path, tiny_llama, "parallel = 4")
    # 2 layers x K,V x 256 x 4 bytes (fp32) = 4 KiB a token; the longest prompt is under 40 tokens,
    # so 2 sequences of 40 + 12 fit in 450 KiB and 4 do not.
    monkeypatch.setenv("LLMEVAL_KV_BUDGET", "450K")
    args = ["--questions", str(tmp_path / "q.jsonl"), "--models-toml", str(tmp_path / "models.toml"),
            "--out", str(tmp_path / "out"), "--quiet", "m"]
    assert infer.main(args) == 0
    err = capsys.readouterr().err
    assert err.count("ran out of memory; halving the batch") == 1, err
    halved = [r["output"] for r in json.loads((tmp_path / "out" / "m.json").read_text(encoding="utf-8"))]
    cached = (tmp_path / "out" / "cache" / "m.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(cached) == 5
    monkeypatch.delenv("LLMEVAL_KV_BUDGET")
    assert halved == [r["output"] for r in answers(spec_for(tmp_path, tiny_llama, "parallel = 4"), QUESTIONS[:5])]
    # Not even one sequence fits: each question fails with one line, none is cached.
    monkeypatch.setenv("LLMEVAL_KV_BUDGET", "1K")
    results = answers(spec_for(tmp_path, tiny_llama, "parallel = 2"), QUESTIONS[:2])
    assert all("over LLMEVAL_KV_BUDGET" in r["error"] for r in results), results


# --- ChatGLM-6B: its own code, in its own environment (transformers 4.27) -------------------------
glm_only = pytest.mark.skipif(not twins.twin_available(), reason="../shared/twins/chatglm-6b is not beside the clone")
GLM_CHAT = """
import json, sys, torch
from transformers import AutoModel, AutoTokenizer
folder, questions = sys.argv[1], json.loads(sys.stdin.read())
tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
model = AutoModel.from_pretrained(folder, trust_remote_code=True, torch_dtype=torch.float32).float().eval()
out = []
for q in questions:
    query = q["instruction"] + ("\\n\\n" + q["input"] if q.get("input") else "")
    response, _ = model.chat(tok, query, history=q.get("history") or [], max_length=2048,
                             max_new_tokens=q.get("generation", {}).get("max_tokens", 12), do_sample=False,
                             repetition_penalty=1.1)
    out.append(response)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def glm(tmp_path_factory, chatglm_venv):
    """The twin, and a models.toml whose chatglm model runs in the project's models/chatglm_6b/.venv."""
    tmp = tmp_path_factory.mktemp("glm")
    folder = twins.build_chatglm(tmp / "chatglm-twin")
    (tmp / "models").mkdir()
    (tmp / "models" / "glm").symlink_to(chatglm_venv.parent)

    def spec(extra=""):
        toml = tmp / "models.toml"
        toml.write_text(f'[models.glm]\npath = "{folder}"\nbackend = "transformers"\ntrust_remote_code = true\n'
                        f'model_chat = true\nrequirements = "{ROOT / "envs" / "chatglm-6b.txt"}"\n'
                        f'max_tokens = 12\nn_ctx = 2048\nrepetition_penalty = 1.1\n{extra}\n', encoding="utf-8")
        return load_registry(toml).get("glm")
    return {"folder": folder, "spec": spec, "tmp": tmp}


@glm_only
def test_chatglm_batched_equals_its_own_chat_on_the_twin(glm):
    python = glm["spec"]().venv / "bin" / "python"
    run = subprocess.run([str(python), "-c", GLM_CHAT, str(glm["folder"])], input=json.dumps(QUESTIONS),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    expected = [r.strip() for r in json.loads(run.stdout.strip().splitlines()[-1])]
    backend = load_backend(glm["spec"]("parallel = 4"))
    try:
        assert type(backend.impl).__name__ == "WorkerClient"
        got = [r for _, r in sorted(backend.answer(QUESTIONS), key=lambda x: x[0])]
    finally:
        backend.close()
    assert [r.get("output", r.get("error")) for r in got] == expected
    assert len(set(expected)) > 3


@glm_only
@pytest.mark.parametrize("quant, line", [
    ("int4", 'quant = "int4" (the model\'s own quantize(4), cpm_kernels) needs an NVIDIA GPU and none is visible'),
    ("nf4", 'quant = "nf4" needs bitsandbytes 4-bit with transformers 4.30 or newer; this environment'),
])
def test_chatglm_quant_that_cannot_run_here_is_one_line(glm, quant, line, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("has a GPU")
    glm["spec"](f'quant = "{quant}"')
    (glm["tmp"] / "q.txt").write_text("Hi\n", encoding="utf-8")
    code = infer.main(["--questions", str(glm["tmp"] / "q.txt"), "--models-toml", str(glm["tmp"] / "models.toml"),
                       "--out", str(glm["tmp"] / "out"), "--quiet"] + ["glm"])
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert code == 1 and len(err) == 1 and line in err[0], err
    if quant == "nf4":
        assert err[0].endswith("can do: int8, int4")


@pytest.mark.parametrize("quant, line", [
    ("int4", "quant = \"int4\" is the model's own quantize(4), which this model's code does not have"),
    ("int8", 'quant = "int8" (bitsandbytes) needs an NVIDIA GPU'),
])
def test_quant_on_a_plain_model_on_a_cpu_is_one_error(tiny_llama, tmp_path, quant, line):
    import torch

    if torch.cuda.is_available():
        pytest.skip("has a GPU")
    with pytest.raises(RuntimeError, match="^" + line.replace("(", r"\(").replace(")", r"\)")):
        load_backend(spec_for(tmp_path, tiny_llama, f'quant = "{quant}"'))


def test_transformers_quants_are_not_for_llama_cpp(tmp_path):
    toml = tmp_path / "models.toml"
    toml.write_text('[models.g]\npath = "x.gguf"\nquant = "int4"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="quant 'int4' is for backend = \"transformers\""):
        load_registry(toml)

