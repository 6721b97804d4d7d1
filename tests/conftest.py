"""Shared test setup: the tools are scripts in tools/, imported here as modules; the paths, skips
and helpers many test files use (ROOT, the embedded models, `make` as a user runs it, a one-model
registry); the session fixtures that build what several tests read (a tiny Llama, the benchmark
files' local server). It does not hold a test's own data: that stays in its file."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

# Under `make test` these would make every `make` a test runs a sub-make (`make[1]: ***` lines,
# the parent's flags): the tests run make as a user does, from a shell.
import os  # noqa: E402

for _name in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES"):
    os.environ.pop(_name, None)
sys.path.insert(0, str(ROOT / "bench"))  # llama_server.py: a local OpenAI-compatible server for tests


def _pin_xdist_worker() -> None:
    """Under `make test` (pytest-xdist, two workers), each worker and everything it starts runs on
    its own share of the CPUs: llama.cpp sizes its threads from the CPUs a process may use
    (backends/llama_engine.usable_cpus), so two workers never spin on each other's cores."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count < 2 or not hasattr(os, "sched_setaffinity"):
        return
    cpus = sorted(os.sched_getaffinity(0))
    share = cpus[int(worker[2:]) % count::count]
    if share and len(cpus) >= count:
        os.sched_setaffinity(0, share)


_pin_xdist_worker()

import pytest  # noqa: E402


# --- The embedded models (`make models` puts them under models/) and their skip.
SMOLLM2 = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3 = ROOT / "models" / "gemma-3-270m-q4_k_m.gguf"
needs_smollm2 = pytest.mark.skipif(not SMOLLM2.is_file(), reason="run `make models` first")
needs_models = pytest.mark.skipif(not (SMOLLM2.is_file() and GEMMA3.is_file()), reason="run `make models` first")
# Runs a board, a build or a make pipeline end to end: `make test-fast` leaves it out (pytest.ini).
slow = pytest.mark.slow


def make(*args: str, cwd: Path = ROOT, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`make ARGS` in the project, as a user runs it from a shell (output captured, never raised on)."""
    return subprocess.run(["make", "--no-print-directory", "-C", str(cwd), *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def spec_for(tmp_path: Path, table: str, name: str = "m"):
    """The ModelSpec of a one-model registry, `[models.NAME]` followed by TABLE's lines, written
    to tmp_path/models.toml."""
    from lib.registry import load_registry

    (tmp_path / "models.toml").write_text(f"[models.{name}]\n{table}\n", encoding="utf-8")
    return load_registry(tmp_path / "models.toml").get(name)


def project_registry(folder: Path, max_tokens: int = 16) -> Path:
    """The project's models.toml as shipped, written to folder/models.toml with its relative paths
    made absolute and the embedded models' answers cut from 256 to MAX_TOKENS tokens: the same
    models, judge and code paths, for a fraction of the suite's time."""
    text = (ROOT / "models.toml").read_text(encoding="utf-8")
    text = text.replace('path = "models/', f'path = "{ROOT}/models/').replace('"envs/', f'"{ROOT}/envs/')
    text = text.replace("max_tokens = 256", f"max_tokens = {max_tokens}")
    (folder / "models.toml").write_text(text, encoding="utf-8")
    return folder / "models.toml"


# --- A tiny random Llama with a real tokenizer, made offline (no Hub) for the conversion and
# transformers tests. Random weights answer nonsense, but every code path is the real one.

TINY_SENTENCES = [
    "The quick brown fox jumps over the lazy dog.", "What is the capital of France? Paris is.",
    "Hello, how are you today?", "Machine learning models answer questions.", "你好，世界。",
] * 4
# A chat template of the kind real models carry (BOS, role turns closed by EOS, generation prompt).
TINY_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{{ eos_token }}"
                 "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}")
# Remote code for `trust_remote_code`: a Llama that brings its own chat(), as ChatGLM-6B does. Its
# print() checks that stray output of a model's code never corrupts the worker protocol.
TINY_CHAT_CODE = '''
from transformers import LlamaForCausalLM


class TinyChatLlama(LlamaForCausalLM):
    def chat(self, tokenizer, query, history=None, max_length=2048, **gen_kwargs):
        print("tiny chat model: answering")
        prompt = "".join(f"user: {q}</s>assistant: {a}</s>" for q, a in history or [])
        ids = tokenizer(prompt + f"user: {query}</s>assistant:", return_tensors="pt").to(self.device)
        out = self.generate(**ids, pad_token_id=tokenizer.eos_token_id, **gen_kwargs)
        response = tokenizer.decode(out[0][ids["input_ids"].shape[1]:], skip_special_tokens=True)
        return response, (history or []) + [(query, response)]
'''


def build_tiny_llama(folder: Path, chat_code: bool = False) -> Path:
    """A 2-layer Llama (hidden 256, so k-quants apply) with a trained byte-fallback BPE tokenizer."""
    import json

    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    # Llama-2's tokenizer layout (BPE, byte fallback, "▁" for spaces), so llama.cpp's converter
    # reads it as a SentencePiece-style vocabulary.
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    tok.train_from_iterator(TINY_SENTENCES, trainers.BpeTrainer(vocab_size=384, special_tokens=specials,
                                                                show_progress=False))
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                            chat_template=TINY_TEMPLATE).save_pretrained(folder)
    torch.manual_seed(0)
    # As many KV heads as heads: old transformers (4.27, ChatGLM's) predates grouped-query attention.
    config = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=256, intermediate_size=512,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=512, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(folder)
    if chat_code:
        (folder / "modeling_tinychat.py").write_text(TINY_CHAT_CODE, encoding="utf-8")
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        cfg["auto_map"] = {"AutoModel": "modeling_tinychat.TinyChatLlama",
                           "AutoModelForCausalLM": "modeling_tinychat.TinyChatLlama"}
        (folder / "config.json").write_text(json.dumps(cfg, indent=1), encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """A tiny Hugging Face Llama folder, built once per test run (a few seconds)."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_chat_llama(tmp_path_factory) -> Path:
    """The same, with remote code that brings its own chat() (needs trust_remote_code)."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-chat-llama"), chat_code=True)


@pytest.fixture(scope="session")
def chatglm_venv() -> Path:
    """ChatGLM-6B's own environment, models/chatglm_6b/.venv of the project (transformers 4.27,
    envs/chatglm-6b.txt), made as `make download` makes it when missing (about a minute; kept)."""
    import download
    from lib.registry import load_registry

    spec = load_registry(ROOT / "models.toml").get("chatglm_6b")
    spec.venv.parent.mkdir(parents=True, exist_ok=True)
    download.ensure_env(spec)
    return spec.venv


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """The base URL of `python -m llama_cpp.server` serving the embedded SmolLM2 on 127.0.0.1 (a real
    OpenAI-compatible endpoint), one per test module."""
    from llama_server import judge_server
    from lib.registry import load_registry

    smol = load_registry(ROOT / "models.toml").get("smollm2_135m")
    if not smol.path.is_file():
        pytest.skip("run `make models` first")
    with judge_server(smol, tmp_path_factory.mktemp("server") / "server.log", n_ctx=2048) as base_url:
        yield base_url


# --- The real benchmark files (../shared/benchmarks, never in the repository) served on 127.0.0.1
# the way raw.githubusercontent.com serves them, so the real download code runs in tests.
@pytest.fixture(scope="session")
def bench_layout(tmp_path_factory) -> Path:
    """A folder laid out as REPO/COMMIT/PATH (symlinks to ../shared/benchmarks)."""
    from benchdata import build_layout, shared_benchmarks

    source = shared_benchmarks()
    if source is None:
        pytest.skip("the real benchmark files are not here (../shared/benchmarks beside the clone)")
    return build_layout(tmp_path_factory.mktemp("bench-layout"), source)


@pytest.fixture(scope="session")
def bench_data_url(bench_layout, tmp_path_factory):
    """The base URL of a local server of the real benchmark files. For the whole session it sets
    LLMEVAL_DATA_URL to it and LLMEVAL_DATA_DIR to a fresh cache, so `make data` / `make board
    QUESTIONS=mt_bench` (and tools/data.py in-process) fetch from it."""
    from benchdata import serve

    server, url = serve(bench_layout)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LLMEVAL_DATA_URL", url)
        patch.setenv("LLMEVAL_DATA_DIR", str(tmp_path_factory.mktemp("bench-cache")))
        patch.delenv("HF_HUB_OFFLINE", raising=False)
        yield url
    server.shutdown()


@pytest.fixture
def bench_set(bench_data_url, tmp_path):
    """bench_set("mt_bench", limit=4) -> the normalized questions file, under tmp_path/out/sets."""
    import data

    def build(name: str, limit: int | None = None, out: Path | None = None) -> Path:
        return data.build(name, limit, out or tmp_path / "out")
    return build


# The files that take minutes, started first (make test: `--dist loadfile --no-loadscope-reorder`
# hands files to the two workers in this order), so that no long file starts last and runs alone.
LONGEST_FIRST = ("test_faults.py", "test_makefile.py", "test_guide_models.py", "test_arena_boards.py",
                 "test_judge.py", "test_security.py", "test_grade_board.py", "test_load.py",
                 "test_llama_batched.py", "test_alpaca_eval_official.py")


def pytest_collection_modifyitems(items):
    rank = {name: k for k, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
