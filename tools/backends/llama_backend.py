"""llama.cpp backend (llama-cpp-python) for GGUF weights, many questions decoded together.

The prompt is the model's own chat template from the GGUF metadata (or the `chat_template`
override) rendered with the same Jinja2 formatter llama-cpp-python uses, then tokenized by
chat_tokens.py: the template's markup as control tokens, the question and the system prompt as
plain text (a `<|im_end|>` typed in a question is text, not the end of its turn). The output is the generated text only, stripped of surrounding whitespace.

On a GPU build, `n_gpu_layers = -1` (the default) and `parallel = 0` are sized from the GPU's
free memory before the model loads (gpu_fit.py): all layers when they fit, else as many as fit
with the rest on the CPU (said in one line), and N from the memory left. A CPU build ignores
n_gpu_layers and sizes N from the free RAM (llama_engine.py).

Questions are decoded N at a time with continuous batching (llama_engine.py): N is the model's
`parallel` key (0 = automatic: up to 32, fewer when the KV cache would not fit). The model's
`n_ctx` is the context of each sequence. Greedy answers are those of one-at-a-time decoding up
to float rounding where llama.cpp's kernels for several rows round differently from those for
one, which can flip near-ties (measured on the CPU: SmolLM2-135M 32/32 answers identical over
64 tokens, Gemma-3-270M 12/32 over 32; see tests/test_llama_batched.py). A sampled answer
depends on its question and the seed, not on its batch neighbours (up to the same rounding).
A prompt longer than n_ctx is an error for that question only. A question's "history" (earlier
turns) goes through the chat template with it; questions whose "generation" settings differ are
decoded in groups of equal settings. A file that is not a GGUF, or a
truncated one, is reported as such (llama.cpp only says "Failed to load model").
"""
from __future__ import annotations

from pathlib import Path

from lib.messages import GENERATION_KEYS, chat_messages, generation

CTX_ROUND = 256  # llama.cpp pads a sequence's context to this many tokens anyway


def _cpu_has_amx() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return any(line.startswith("flags") and " amx_tile" in line for line in f)
    except OSError:
        return False


class LlamaBackend:
    def __init__(self, spec, *, ignore_eog: bool = False, n_threads: int | None = None):
        """`ignore_eog` (benchmarks only) keeps decoding past end-of-generation tokens."""
        import llama_cpp
        from llama_cpp._internals import LlamaModel
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        from backends import gpu_fit
        from backends.llama_engine import BatchedEngine
        from lib.chat_tokens import for_llama

        if not spec.path.is_file():
            raise FileNotFoundError(f"weights not found at {spec.path}; run: make models")
        self.spec = spec
        self.ignore_eog = ignore_eog
        params = llama_cpp.llama_model_default_params()
        # On a GPU: layers sized from the free memory; self.gpu = (ModelShape, free bytes) then.
        try:
            self.n_gpu_layers, self.gpu = gpu_fit.sized_layers(spec.path, spec.name, spec.n_ctx,
                                                               spec.parallel, spec.n_gpu_layers)
        except (ValueError, OSError):  # an unreadable GGUF: llama.cpp's load below says why
            self.n_gpu_layers, self.gpu = spec.n_gpu_layers, None
        params.n_gpu_layers = self.n_gpu_layers
        if _cpu_has_amx():
            # llama.cpp's AMX matmul (an "extra buffer type" of the CPU backend) crashes the
            # process (SIGSEGV in ggml_backend_amx_mul_mat) on batched decodes of SmolLM2's Q4_1
            # with llama-cpp-python 0.3.36 on CPUs with AMX (Sapphire Rapids and later): off there.
            params.use_extra_bufts = False
        try:
            self.model = LlamaModel(path_model=str(spec.path), params=params, verbose=False)
        except ValueError as err:
            raise ValueError(gguf_problem(spec.path) or f"llama.cpp could not load {spec.path}: {err}") from None
        template = spec.chat_template or self.model.metadata().get("tokenizer.chat_template")
        if not template:
            self.model.close()
            raise ValueError("the GGUF has no chat template; set chat_template in models.toml")
        eos_id, bos_id = self.model.token_eos(), self.model.token_bos()
        self.formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=self.model.token_get_text(eos_id) if eos_id != -1 else "",
            bos_token=self.model.token_get_text(bos_id) if bos_id != -1 else "",
        )
        self.chat = for_llama(self.model, self.formatter)  # messages -> ids, content never markup
        self.engine = BatchedEngine(self.model, params.n_gpu_layers, n_threads)

    def prompt_tokens(self, question: dict) -> list[int]:
        # The template writes its own BOS and special tokens, so no extra BOS here.
        return self.chat.ids(chat_messages(question, self.spec.system_prompt))

    def answer(self, questions: list[dict], parallel: int | None = None):
        """Yield (index, result) in finish order; `parallel` overrides spec.parallel.

        Questions with different generation settings (a set's per-category temperature or
        max_tokens) are decoded in groups of equal settings, one group after another."""
        spec = self.spec
        groups: dict[tuple, list[tuple[int, list[int]]]] = {}
        for index, question in enumerate(questions):
            try:
                tokens = self.prompt_tokens(question)
            except Exception as err:  # one question's failure is recorded, the run goes on
                yield index, {"error": f"{type(err).__name__}: {err}"}
                continue
            if not tokens:
                yield index, {"error": "the prompt is empty after tokenizing"}
            elif len(tokens) >= spec.n_ctx:
                yield index, {"error": f"prompt is {len(tokens)} tokens, more than n_ctx={spec.n_ctx}"}
            else:
                gen = generation(spec, question)
                groups.setdefault(tuple(gen[k] for k in GENERATION_KEYS), []).append((index, tokens))
        for values, prompts in groups.items():
            yield from self._decode(prompts, dict(zip(GENERATION_KEYS, values)), parallel)

    def _decode(self, prompts: list[tuple[int, list[int]]], gen: dict, parallel: int | None):
        from backends.llama_engine import ContextError, Settings

        spec = self.spec
        # Each sequence gets the cells its longest prompt plus max_tokens can use, never more
        # than n_ctx: the same answers as n_ctx cells, in less memory.
        need = max(len(tokens) for _, tokens in prompts) + gen["max_tokens"]
        n_ctx_seq = min(spec.n_ctx, -(-need // CTX_ROUND) * CTX_ROUND)
        n = spec.parallel if parallel is None else parallel
        if n <= 0 and self.gpu:
            n = self._gpu_fit(n_ctx_seq, len(prompts)).n_parallel or 1  # 0: let llama.cpp say
        elif n <= 0:
            n = self.engine.auto_parallel(len(prompts), n_ctx_seq)
        n = min(n, len(prompts))
        settings = Settings(max_tokens=gen["max_tokens"], temperature=gen["temperature"],
                            top_p=gen["top_p"], seed=spec.seed, stop=list(spec.stop),
                            repetition_penalty=spec.repetition_penalty,
                            **{k: getattr(spec, k) for k in ("top_k", "min_p") if getattr(spec, k) is not None},
                            ignore_eog=self.ignore_eog)
        try:
            yield from self.engine.run(prompts, settings, n, n_ctx_seq)
        except ContextError as err:
            if not self.gpu:
                raise
            from backends import gpu_fit  # what would fit, in numbers
            shape, free = self.gpu
            layers = self._gpu_fit(n_ctx_seq, 1).gpu_layers
            raise ContextError(gpu_fit.advice(shape, free, n_ctx_seq, layers)) from None

    def _gpu_fit(self, n_ctx_seq: int, n_prompts: int):
        from backends import gpu_fit
        from backends.hf_fit import mem_available
        shape, free = self.gpu
        return gpu_fit.fit(shape, free, n_ctx_seq, n_prompts=n_prompts,
                           n_gpu_layers=self.n_gpu_layers, ram_free=mem_available())

    def close(self) -> None:
        self.model.close()


def gguf_problem(path: Path) -> str | None:
    """Why llama.cpp could not load `path`, when the file itself says so: not a GGUF, or cut short."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        return (f"{path} is not a GGUF file (it starts with {magic!r}, not b'GGUF'); point 'path' at a "
                ".gguf file, or at a Hugging Face folder to convert")
    size = Path(path).stat().st_size
    try:
        from backends.gguf_file import read_gguf

        need = max((t.data_offset + t.n_bytes for t in read_gguf(path)[1]), default=0)
    except Exception:  # the header or tensor table itself is cut
        need = None
    if need is None or need > size:
        return (f"{path} is truncated or damaged ({size:,} bytes" + (f", {need:,} needed" if need else "") +
                "): delete it and fetch it again (make models, or make download)")
    return None
