"""GPU sizing (tools/backends/gpu_fit.py) and the engine's halving when a context does not fit.

The sizing is a pure function, tested on real consumer cards (memory as nvidia-smi reports it
for an RTX 4060, 3060, 4060 Ti 16 GB and 4090, less 400 MiB for a desktop) with the published
shapes of real 7B, 8B and 14B Q4_K_M models. The GGUF reader and the ggml device probe run for
real on the embedded models and this machine's llama.cpp (a CPU build: no GPU device). The
halving runs on the CPU through the real llama.cpp, with LLMEVAL_KV_BUDGET forcing a budget too
small for the N asked.
"""
import json
import re
from pathlib import Path

import pytest

from backends import gpu_fit
from backends.gpu_fit import GIB, PUBLISHED, ModelShape, fit
from lib.registry import load_registry

from conftest import SMOLLM2, GEMMA3, needs_models, needs_smollm2
MIB = 1 << 20
CARDS = {8: (8188 - 400) * MIB, 12: (12288 - 400) * MIB, 16: (16380 - 400) * MIB, 24: (24564 - 400) * MIB}
QWEN25_7B = ModelShape.from_published("qwen25_7b", **PUBLISHED["Qwen2.5-7B-Instruct-Q4_K_M.gguf"])
LLAMA31_8B = ModelShape.from_published("llama31_8b", **PUBLISHED["Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf"])
QWEN3_14B = ModelShape.from_published("qwen3_14b", **PUBLISHED["Qwen3-14B-Q4_K_M.gguf"])


def gpu_bytes(shape, f, n_ctx):
    """What the fit puts on the GPU: weights, N + 1 sequences' cache (the shared prompt start),
    the compute buffer and the reserve."""
    return f.weights_gpu + (f.n_parallel + 1) * f.kv_seq_gpu + f.compute + gpu_fit.RESERVE


def test_published_shapes_match_the_model_cards():
    # KV per token in f16: 2 (K, V) x layers x KV heads x head size x 2 bytes.
    assert QWEN25_7B.kv_bytes_per_token() == 2 * 28 * 4 * 128 * 2
    assert LLAMA31_8B.kv_bytes_per_token() == 2 * 32 * 8 * 128 * 2
    assert QWEN3_14B.kv_bytes_per_token() == 2 * 40 * 8 * 128 * 2
    for shape in (QWEN25_7B, LLAMA31_8B, QWEN3_14B):  # embeddings + output + layers = the file
        embd = shape.n_vocab * shape.n_embd * 9 // 16
        assert abs(embd + shape.output_bytes + sum(shape.layer_bytes) - shape.file_bytes) < shape.n_layer


@pytest.mark.parametrize("card", [8, 12, 16, 24])
@pytest.mark.parametrize("shape", [QWEN25_7B, LLAMA31_8B, QWEN3_14B], ids=lambda s: s.name)
def test_what_is_sized_fits_the_card_and_one_more_sequence_would_not(card, shape):
    free = CARDS[card]
    f = fit(shape, free, 4096)
    assert 1 <= f.n_parallel <= 32
    assert gpu_bytes(shape, f, 4096) <= free
    if f.n_parallel < 32:  # memory, not the cap, stopped N
        assert gpu_bytes(shape, f, 4096) + f.kv_seq_gpu > free
    if f.gpu_layers < shape.n_layer:  # one more layer, with its least cache, would not fit
        more = fit(shape, free, 4096, n_gpu_layers=f.gpu_layers + 1, parallel=1)
        assert gpu_bytes(shape, more, 4096) > free


def test_the_issue_cases_7b_and_14b_on_real_cards():
    # 7B Q4_K_M on a 12 GB card: all layers, and N from the memory left, not an 8 GiB guess.
    f = fit(QWEN25_7B, CARDS[12], 4096)
    assert f.n_gpu_layers == -1 and 16 <= f.n_parallel < 32
    assert f.n_parallel * f.kv_seq < 8 * GIB
    # 14B (9 GB) on an 8 GB card: part of the layers, the rest on the CPU, said in one line.
    f = fit(QWEN3_14B, CARDS[8], 4096)
    assert 0 < f.n_gpu_layers == f.gpu_layers < 40 and f.n_parallel >= 1
    assert f.note.startswith(f"qwen3_14b: {f.gpu_layers} of 40 layers fit on the GPU")
    # The same 14B on 12, 16 and 24 GB: every layer, more sequences with more memory.
    ns = [fit(QWEN3_14B, CARDS[c], 4096) for c in (12, 16, 24)]
    assert all(x.n_gpu_layers == -1 and not x.note for x in ns)
    assert ns[0].n_parallel < ns[1].n_parallel < ns[2].n_parallel
    # A 24 GB card holds the 7B with the cap of 32 sequences.
    assert fit(QWEN25_7B, CARDS[24], 4096).n_parallel == 32


def test_more_memory_never_gives_less():
    for shape in (QWEN25_7B, LLAMA31_8B, QWEN3_14B):
        last = None
        for free in range(2 * GIB, 26 * GIB, GIB // 4):
            f = fit(shape, free, 4096)
            if last:
                assert f.gpu_layers >= last.gpu_layers
                if f.gpu_layers == last.gpu_layers:
                    assert f.n_parallel >= last.n_parallel
            last = f


def test_shorter_contexts_hold_more_sequences_and_prompts_cap_n():
    long, short = fit(LLAMA31_8B, CARDS[12], 4096), fit(LLAMA31_8B, CARDS[12], 1024)
    assert short.n_parallel > long.n_parallel
    assert fit(LLAMA31_8B, CARDS[12], 1024, n_prompts=3).n_parallel == 3


def test_the_users_settings_are_kept():
    f = fit(QWEN25_7B, CARDS[8], 4096, parallel=24, n_gpu_layers=10)
    assert (f.n_gpu_layers, f.gpu_layers, f.n_parallel) == (10, 10, 24)
    assert f.weights_gpu == sum(QWEN25_7B.layer_bytes[-10:])  # the last 10 layers, output on the CPU


def test_nothing_fits_says_what_to_set():
    # All 40 layers asked for on an 8 GB card: not even one sequence.
    f = fit(QWEN3_14B, CARDS[8], 4096, n_gpu_layers=41)
    assert f.n_parallel == 0
    assert re.fullmatch(r"qwen3_14b: one sequence of 4096 tokens with 40 layers on the GPU does not fit "
                        r"in 7\.6 GiB free; set n_gpu_layers = \d+ in models\.toml", f.note), f.note
    # A context too long for a 7B that does fit: a shorter n_ctx is the way out.
    f = fit(QWEN25_7B, CARDS[8], 131072, n_gpu_layers=-1)
    assert f.gpu_layers < 28
    note = gpu_fit.advice(QWEN25_7B, CARDS[8], 131072, 28)
    n_ctx = int(re.search(r"n_ctx = (\d+)", note).group(1))
    assert 4096 <= n_ctx < 131072 and n_ctx % 256 == 0
    assert fit(QWEN25_7B, CARDS[8], n_ctx).n_gpu_layers == -1  # and the advice fits


@needs_models
@pytest.mark.parametrize("path", [SMOLLM2, GEMMA3], ids=lambda p: p.name)
def test_gguf_shape_agrees_with_llama_cpp(path):
    import llama_cpp
    shape = ModelShape.from_gguf(path)
    params = llama_cpp.llama_model_default_params()
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    try:
        assert shape.n_layer == llama_cpp.llama_model_n_layer(model)
        assert shape.n_embd == llama_cpp.llama_model_n_embd(model)
        assert shape.n_vocab == llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
        size = llama_cpp.llama_model_size(model)  # every tensor's bytes
    finally:
        llama_cpp.llama_model_free(model)
    # Layers + token embeddings (tied: the output uses them) = all tensors but the final norm.
    assert 0 <= size - (sum(shape.layer_bytes) + shape.output_bytes) < 64 * 1024
    assert shape.file_bytes > size and min(shape.layer_bytes) > 0


@needs_smollm2
def test_gguf_header_reads_as_the_gguf_package_reads_it(tmp_path):
    """backends/gguf_file.py against gguf.GGUFReader: every key (string arrays by their length) and
    every tensor's shape, type, size and offset; a file cut inside its header is a ValueError."""
    from gguf import GGUFReader

    from backends.gguf_file import StringArray, read_gguf

    meta, tensors = read_gguf(SMOLLM2)
    reader = GGUFReader(str(SMOLLM2))
    fields = {k: f for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    assert set(meta) == set(fields) and isinstance(meta["tokenizer.ggml.tokens"], StringArray)
    for key, field in fields.items():
        ours, theirs = meta[key], field.contents()
        if isinstance(ours, StringArray):
            ours, theirs = len(ours), len(theirs)
        assert ours == (pytest.approx(theirs) if isinstance(theirs, float) else theirs), key
    assert [(t.name, tuple(int(d) for d in t.shape), int(t.tensor_type), int(t.n_bytes), int(t.data_offset))
            for t in reader.tensors] == [(t.name, t.shape, t.ggml_type, t.n_bytes, t.data_offset) for t in tensors]
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(SMOLLM2.read_bytes()[:100_000])  # inside the vocabulary
    with pytest.raises(ValueError, match="cut short"):
        read_gguf(cut)


def test_ggml_device_memory_through_the_bundled_llama_cpp():
    import llama_cpp
    devices = gpu_fit.ggml_devices()
    cpu = [d for d in devices if d.source == "ggml"]
    assert cpu and all(0 < d.free <= d.total for d in devices)
    # The CPU device reports the machine's RAM: ggml_backend_dev_memory really answered.
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    assert cpu[0].total == int(meminfo["MemTotal"].split()[0]) * 1024
    memory = gpu_fit.device_memory()
    if not llama_cpp.llama_supports_gpu_offload():
        assert memory is None  # a CPU build sizes from RAM, as before
    else:
        assert memory.source == "ggml GPU" and 0 < memory.free <= memory.total


# --- The engine: halving N when llama.cpp cannot create the context, on the CPU -----------------

QUESTIONS = [{"instruction": q} for q in [
    "What is the capital of France?", "List three prime numbers.", "How do I boil an egg?",
    "Explain recursion in one sentence.", "为什么天空是蓝色的？", "Write a haiku about the sea."]]


def write_toml(folder: Path) -> Path:
    toml = folder / "models.toml"
    toml.write_text(f'[models.tiny]\npath = "{SMOLLM2}"\nmax_tokens = 24\nn_ctx = 512\n', encoding="utf-8")
    return toml


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    if not SMOLLM2.is_file():
        pytest.skip("run `make models` first")
    from backends.llama_backend import LlamaBackend
    b = LlamaBackend(load_registry(write_toml(tmp_path_factory.mktemp("spec"))).get("tiny"))
    yield b
    b.close()


@needs_smollm2
def test_n_is_halved_until_the_context_fits_and_answers_are_unchanged(backend, monkeypatch, capfd):
    alone = dict(backend.answer(QUESTIONS, parallel=1))
    capfd.readouterr()
    # A KV budget of 3 sequences of n_ctx = 512 tokens (6 of the 256 these questions need): 6
    # asked, plus the shared prompt start, do not fit; 3 (+ start) do.
    monkeypatch.setenv("LLMEVAL_KV_BUDGET", str(3 * 512 * backend.engine.kv_bytes_per_token()))
    halved = dict(backend.answer(QUESTIONS, parallel=6))
    err = capfd.readouterr().err
    notes = re.findall(r"note: llama\.cpp could not make room for 6 sequences of \d+ tokens "
                       r"\(out of memory\); decoding (\d+) together", err)
    assert len(notes) == 1 and 1 <= int(notes[0]) < 6, err
    assert {i: r["output"] for i, r in halved.items()} == {i: r["output"] for i, r in alone.items()}


@needs_smollm2
def test_one_sequence_that_does_not_fit_is_one_line_and_answers_are_kept(tmp_path, monkeypatch, capsys):
    import infer
    toml = write_toml(tmp_path)
    questions = tmp_path / "q.txt"
    questions.write_text("\n".join(q["instruction"] for q in QUESTIONS[:2]) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    args = ["tiny", "--questions", str(questions), "--models-toml", str(toml), "--out", str(out), "--quiet"]
    assert infer.main(args) == 0
    first = json.loads((out / "tiny.json").read_text(encoding="utf-8"))
    questions.write_text("\n".join(q["instruction"] for q in QUESTIONS[:3]) + "\n", encoding="utf-8")
    monkeypatch.setenv("LLMEVAL_KV_BUDGET", "1K")
    capsys.readouterr()
    assert infer.main(args) == 1
    err = capsys.readouterr().err
    assert err.strip() == ("error: model 'tiny': llama.cpp could not create a context for one sequence of "
                           "256 tokens (out of memory): set a smaller n_ctx, or fewer n_gpu_layers"), err
    # The two answers made before are still there, and answered again by nobody.
    cached = [json.loads(line) for line in (out / "cache" / "tiny.jsonl").read_text().splitlines()]
    assert [r["output"] for r in cached] == [r["output"] for r in first] and len(cached) == 2
    monkeypatch.delenv("LLMEVAL_KV_BUDGET")
    assert infer.main(args) == 0
    again = json.loads((out / "tiny.json").read_text(encoding="utf-8"))
    assert [r["output"] for r in again[:2]] == [r["output"] for r in first] and again[2]["output"]
