"""Continuous batching on llama.cpp's low-level API (llama-cpp-python 0.3.36 ctypes bindings).

`BatchedEngine.run(prompts, settings, n_parallel, n_ctx_seq)` decodes many token prompts
together (continuous batching): N sequences (sequence id = slot), each with its own sampler
chain; a finished slot is refilled with the next prompt at once (its KV cleared with
`llama_memory_seq_rm`). Results are yielded in finish order, the moment each sequence ends.

Each step: every new prompt is decoded alone (in n_batch chunks, logits only on its last
token), so its arithmetic does not depend on its neighbours; then one `llama_decode` for all
running sequences. A prompt start shared by all questions (a chat template's system prompt) is
decoded once and copied into each sequence (`llama_memory_seq_cp`). When llama.cpp cannot
create the context (out of memory), N is halved down to 1 (said once on stderr); if one
sequence does not fit either, ContextError says what to set.
Handles: stop on end-of-generation tokens, stop strings, max_tokens or a full per-sequence
context; UTF-8 split over tokens (bytes are gathered and decoded once, at the end); greedy
(temperature 0) or sampled decoding with a seed per sequence, so an answer does not depend on
which other questions share its batch (up to float rounding, see llama_backend.py); a repetition
penalty over the last 64 generated tokens (llama-cpp-python's window), greedy or sampled, and
top_k / min_p (llama-cpp-python's 40 / 0.05 unless set).
Does not handle: chat templates or tokenizing text (see llama_backend.py), prompt prefixes
shared by only some questions, grammars, frequency/presence penalties, embeddings,
encoder-decoder or recurrent models.
"""
from __future__ import annotations

import ctypes
import logging
import os
import sys
import time
from dataclasses import dataclass, field

import llama_cpp
import numpy as np

from backends.hf_fit import mem_available

# llama-cpp-python's log callback prints every llama.cpp line unless its logger says otherwise,
# and 0.3.36 reads ggml's levels one off (a WARN as ERROR, an ERROR as DEBUG): at CRITICAL,
# llama.cpp's warnings (Gemma 3's "using full-size SWA cache" on every context) stay off the
# screen too. What fails is said by our own one-line errors.
logging.getLogger("llama-cpp-python").setLevel(logging.CRITICAL)
llama_cpp.llama_backend_init()

MAX_AUTO_PARALLEL = 32
PENALTY_LAST_N = 64  # llama-cpp-python's last_n_tokens_size: the window a repetition penalty sees
MIN_SHARED_PREFIX = 8  # shorter common prompt starts are not worth a KV copy per question
GPU_KV_BUDGET = 8 << 30  # bytes of KV cache an automatic N may use on a GPU (fits a 24 GB card)


class ContextError(RuntimeError):
    """llama.cpp could not create a context even for one sequence."""


@dataclass
class Settings:
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: list[str] = field(default_factory=list)
    repetition_penalty: float = 1.0  # 1.0 = off
    top_k: int = 40  # llama-cpp-python's defaults (sampled decoding only)
    min_p: float = 0.05
    ignore_eog: bool = False  # benchmarks only: keep going past end-of-generation tokens


class _Slot:
    """One sequence in flight: a question being fed or answered."""
    __slots__ = ("index", "prompt", "fed", "pos", "last", "n_gen", "out", "sampler", "started")

    def __init__(self, index: int, prompt: list[int], sampler):
        self.index, self.prompt, self.sampler = index, prompt, sampler
        self.fed = 0          # prompt tokens decoded so far
        self.pos = 0          # tokens in this sequence's KV cache
        self.last = -1        # the sampled token to decode next
        self.n_gen = 0
        self.out = bytearray()
        self.started = time.perf_counter()


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask where the system has one (Linux)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


class BatchedEngine:
    def __init__(self, model, n_gpu_layers: int, n_threads: int | None = None):
        """`model` is a llama_cpp._internals.LlamaModel (owned by the caller)."""
        logging.getLogger("llama-cpp-python").setLevel(logging.CRITICAL)  # again: a Llama() resets it
        self.model = model.model
        self.vocab = model.vocab
        self.offload = n_gpu_layers != 0 and llama_cpp.llama_supports_gpu_offload()
        # llama-cpp-python's defaults, so the two paths compare on the same threads; counted on the
        # CPUs this process may use (taskset, a container's cpuset), not the machine's.
        cpus = usable_cpus()
        self.n_threads = n_threads or max(cpus // 2, 1)
        self.n_threads_batch = n_threads or cpus
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        # Every token's bytes and end-of-generation flag, looked up once instead of per step.
        self.pieces = [self._piece(t) for t in range(self.n_vocab)]
        self.eog = {t for t in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(self.vocab, t)}
        self.last_stats: dict = {}

    def _piece(self, token: int) -> bytes:
        size = 64
        while True:
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, size, 0, False)
            if n >= 0:
                return buf.raw[:n]
            size = -n

    def kv_bytes_per_token(self) -> int:
        """A rough K+V size per token in f16 (exact for plain multi-head / grouped-query attention)."""
        n_layer = llama_cpp.llama_model_n_layer(self.model)
        n_embd = llama_cpp.llama_model_n_embd(self.model)
        n_head = max(llama_cpp.llama_model_n_head(self.model), 1)
        n_head_kv = llama_cpp.llama_model_n_head_kv(self.model)
        return 2 * n_layer * (n_embd // n_head) * n_head_kv * 2

    def auto_parallel(self, n_prompts: int, n_ctx_seq: int) -> int:
        """N for `parallel = 0`: up to 32 sequences, as many as a KV-cache budget allows."""
        if self.offload:
            budget = GPU_KV_BUDGET
        else:  # a quarter of the free RAM
            budget = mem_available() // 4
        fits = budget // max(n_ctx_seq * self.kv_bytes_per_token(), 1)
        return max(1, min(MAX_AUTO_PARALLEL, n_prompts, fits))

    @staticmethod
    def _plain_greedy(s: Settings) -> bool:
        """Greedy without a penalty: an argmax for all rows at once, no sampler chain."""
        return s.temperature == 0 and s.repetition_penalty == 1.0

    def _sampler(self, s: Settings):
        """A sampler chain for one sequence, or None for plain greedy (done for all rows at once)."""
        if self._plain_greedy(s):
            return None
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        # The same chain as llama-cpp-python's create_completion: penalties first (they see the
        # tokens this chain sampled, accepted by llama_sampler_sample), then greedy, or top_k,
        # top_p, min_p, temperature and a seeded draw; the seed is per question.
        steps = []
        if s.repetition_penalty != 1.0:
            steps.append(llama_cpp.llama_sampler_init_penalties(
                self.n_vocab, PENALTY_LAST_N, s.repetition_penalty, 0.0, 0.0))
        if s.temperature == 0:
            steps.append(llama_cpp.llama_sampler_init_greedy())
        else:
            steps += [llama_cpp.llama_sampler_init_top_k(s.top_k),
                      llama_cpp.llama_sampler_init_top_p(s.top_p, 1),
                      llama_cpp.llama_sampler_init_min_p(s.min_p, 1),
                      llama_cpp.llama_sampler_init_temp(s.temperature),
                      llama_cpp.llama_sampler_init_dist(s.seed & 0xFFFFFFFF)]
        for smpl in steps:
            llama_cpp.llama_sampler_chain_add(chain, smpl)
        return chain

    def run(self, prompts: list[tuple[int, list[int]]], s: Settings, n_parallel: int,
            n_ctx_seq: int, n_batch: int = 512):
        """Decode (index, tokens) prompts; yield (index, result) as each sequence finishes.

        The context holds n_parallel sequences of n_ctx_seq tokens each: llama.cpp gets
        n_seq_max = N and n_ctx = N * n_ctx_seq, and with a non-unified KV cache every sequence
        has its own n_ctx_seq cells (the model's n_ctx in models.toml is this per-sequence size).
        When all prompts start alike (a chat template's system prompt), that start is decoded
        once into one more sequence (N + 1 of them then) and copied into each new one
        (llama_memory_seq_cp).
        """
        n_batch = max(n_batch, n_parallel)
        prefix = _shared_prefix([tokens for _, tokens in prompts])
        ctx, n_parallel, prefix = self._context(n_parallel, n_ctx_seq, n_batch, prefix)
        batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        slots: list[_Slot | None] = [None] * n_parallel
        try:
            limit = min(n_ctx_seq, llama_cpp.llama_n_ctx_seq(ctx))
            if prefix and not self._decode_prefix(ctx, batch, prefix, n_parallel, n_batch):
                prefix = []  # decode each prompt whole instead
            yield from self._loop(ctx, batch, slots, list(prompts), s, n_batch, limit,
                                  len(prefix), n_parallel)
        finally:
            for slot in slots:
                if slot is not None and slot.sampler is not None:
                    llama_cpp.llama_sampler_free(slot.sampler)
            llama_cpp.llama_batch_free(batch)
            llama_cpp.llama_free(ctx)

    def _context(self, n_parallel: int, n_ctx_seq: int, n_batch: int, prefix: list[int]):
        """A llama.cpp context for n_parallel sequences (+1 for a shared prefix); when llama.cpp
        cannot make it (out of memory), N is halved and tried again down to 1, said once.
        Returns (ctx, N, prefix); raises ContextError when even one sequence does not fit."""
        wanted = n_parallel
        budget = _kv_budget()
        while True:
            n_seq = n_parallel + (1 if prefix else 0)  # the prefix lives in sequence n_parallel
            ctx = None
            if budget is None or n_seq * n_ctx_seq * self.kv_bytes_per_token() <= budget:
                ctx = llama_cpp.llama_init_from_model(self.model, self._params(n_seq, n_ctx_seq, n_batch))
            if ctx:
                if n_parallel < wanted:
                    print(f"note: llama.cpp could not make room for {wanted} sequences of {n_ctx_seq} "
                          f"tokens (out of memory); decoding {n_parallel} together", file=sys.stderr)
                return ctx, n_parallel, prefix
            if prefix and n_parallel == 1:
                prefix = []  # one sequence without the shared prefix's extra one
            elif n_parallel > 1:
                n_parallel //= 2
            else:
                raise ContextError(f"llama.cpp could not create a context for one sequence of {n_ctx_seq} "
                                   f"tokens (out of memory): set a smaller n_ctx, or fewer n_gpu_layers")

    def _params(self, n_seq: int, n_ctx_seq: int, n_batch: int):
        """The context holds n_seq sequences of n_ctx_seq tokens each: llama.cpp gets
        n_seq_max = n_seq and n_ctx = n_seq * n_ctx_seq, and with a non-unified KV cache every
        sequence has its own n_ctx_seq cells."""
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_seq * n_ctx_seq
        params.n_seq_max = n_seq
        params.n_batch = n_batch
        params.n_ubatch = min(n_batch, 512)
        params.n_threads = self.n_threads
        params.n_threads_batch = self.n_threads_batch
        params.kv_unified = False  # a stream per sequence: attention reads only its own cells
        # Flash attention on the CPU sums in f16 and its result depends on the micro-batch's
        # shape (measured: SmolLM2's logits move by 0.6 when a prompt shares a batch), so
        # batched greedy answers drift from one-at-a-time ones (30/32 kept); without it
        # SmolLM2's match bit for bit (32/32), as does llama-cpp-python's default (off), for
        # ~15% of CPU speed. On a GPU it stays on (llama.cpp's default, what
        # llama-batched-bench runs): there it is the speed.
        params.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO if self.offload
                                  else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        params.no_perf = True
        return params

    @staticmethod
    def _decode_tokens(ctx, batch, tokens: list[int], pos0: int, seq_id: int, n_batch: int) -> int:
        """Decode one sequence's tokens in n_batch chunks, logits for the last token only."""
        for start in range(0, len(tokens), n_batch):
            chunk = tokens[start:start + n_batch]
            for k, token in enumerate(chunk):
                batch.token[k], batch.pos[k], batch.seq_id[k][0] = token, pos0 + start + k, seq_id
                batch.n_seq_id[k], batch.logits[k] = 1, 0
            batch.logits[len(chunk) - 1] = start + len(chunk) == len(tokens)
            batch.n_tokens = len(chunk)
            rc = llama_cpp.llama_decode(ctx, batch)
            if rc != 0:
                return rc
        return 0

    def _decode_prefix(self, ctx, batch, prefix: list[int], seq_id: int, n_batch: int) -> bool:
        if self._decode_tokens(ctx, batch, prefix, 0, seq_id, n_batch) == 0:
            return True
        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(ctx), seq_id, -1, -1)
        return False

    def _loop(self, ctx, batch, slots, pending, s: Settings, n_batch: int, limit: int,
              n_prefix: int, prefix_seq: int):
        """Each step: new prompts, one sequence per llama_decode (so a prompt's arithmetic never
        depends on its neighbours), then one llama_decode for every running sequence."""
        mem = llama_cpp.llama_get_memory(ctx)
        stops = [x.encode("utf-8") for x in s.stop]
        longest_stop = max((len(x) for x in stops), default=0)
        pending.reverse()  # pop() from the end keeps the questions' order
        stats = {"steps": 0, "generated": 0, "gen_steps_seconds": 0.0, "gen_steps_tokens": 0,
                 "prompt_seconds": 0.0, "prompt_tokens": 0}
        started = time.perf_counter()
        tok, pos, seq, nseq, logits = batch.token, batch.pos, batch.seq_id, batch.n_seq_id, batch.logits

        def finish(i: int, error: str | None = None):
            slot = slots[i]
            slots[i] = None
            llama_cpp.llama_memory_seq_rm(mem, i, -1, -1)
            if slot.sampler is not None:
                llama_cpp.llama_sampler_free(slot.sampler)
            if error:
                return slot.index, {"error": error}
            stats["generated"] += slot.n_gen
            # errors="ignore" like llama-cpp-python: drops a character cut off by max_tokens.
            text = slot.out.decode("utf-8", errors="ignore")
            return slot.index, {"output": text.strip(), "tokens": slot.n_gen,
                                "seconds": time.perf_counter() - slot.started}

        def take(i: int, slot: _Slot, token: int):
            """Add a sampled token to sequence i; its result if that ended it, else None."""
            slot.n_gen += 1
            if token in self.eog and not s.ignore_eog:
                slot.n_gen -= 1  # the end marker is not part of the answer
                return finish(i)
            before = len(slot.out)
            slot.out += self.pieces[token]
            if stops:
                find = slot.out.find
                hits = [p for p in (find(x, max(0, before - longest_stop)) for x in stops) if p >= 0]
                if hits:
                    del slot.out[min(hits):]
                    return finish(i)
            # max_tokens, or the context is full: prompt + answer = its n_ctx_seq cells
            if slot.n_gen >= s.max_tokens or len(slot.prompt) + slot.n_gen >= limit:
                return finish(i)
            slot.last = token
            return None

        while True:
            for i in range(len(slots)):  # refill free slots, lowest id first
                if slots[i] is None and pending:
                    index, prompt = pending.pop()
                    slots[i] = _Slot(index, prompt, self._sampler(s))
                    if n_prefix:  # start from the shared prefix's KV cells
                        llama_cpp.llama_memory_seq_cp(mem, prefix_seq, i, -1, -1)
                        slots[i].fed = slots[i].pos = n_prefix
            if not pending:
                self._compact(mem, slots)
            if all(slot is None for slot in slots):
                break

            for i, slot in enumerate(slots):  # new prompts, each alone
                if slot is None or slot.fed == len(slot.prompt):
                    continue
                prompt_started = time.perf_counter()
                rc = self._decode_tokens(ctx, batch, slot.prompt[slot.fed:], slot.pos, i, n_batch)
                stats["prompt_seconds"] += time.perf_counter() - prompt_started
                stats["prompt_tokens"] += len(slot.prompt) - slot.fed
                if rc != 0:
                    yield finish(i, f"llama_decode failed with code {rc} on the prompt (out of memory?)")
                    continue
                slot.pos = slot.fed = len(slot.prompt)
                if slot.sampler is None:
                    token = int(np.ctypeslib.as_array(llama_cpp.llama_get_logits(ctx),
                                                      shape=(self.n_vocab,)).argmax())
                else:
                    token = llama_cpp.llama_sampler_sample(slot.sampler, ctx, -1)
                result = take(i, slot, token)
                if result:
                    yield result
            if not pending:  # sequences that ended on their first token left gaps
                self._compact(mem, slots)

            # One generation step, ordered by sequence id: llama.cpp splits a non-unified batch
            # into micro-batches of consecutive sequence ids, so order and no gaps keep it to one.
            step_started = time.perf_counter()
            rows = [(i, slot) for i, slot in enumerate(slots) if slot is not None]
            if not rows:
                continue
            for n, (i, slot) in enumerate(rows):
                tok[n], pos[n], seq[n][0], nseq[n], logits[n] = slot.last, slot.pos, i, 1, 1
            batch.n_tokens = len(rows)
            rc = llama_cpp.llama_decode(ctx, batch)
            if rc != 0:  # which sequence broke is unknown: fail those in this step, go on
                for i, _ in rows:
                    yield finish(i, f"llama_decode failed with code {rc} (out of memory?)")
                continue
            if self._plain_greedy(s):
                # Greedy for all sequences at once: the first maximum, as llama.cpp's greedy
                # sampler picks, without copying the vocabulary once per sequence.
                out = np.ctypeslib.as_array(llama_cpp.llama_get_logits(ctx),
                                            shape=(len(rows), self.n_vocab))
                picked = out.argmax(axis=1).tolist()
            else:
                picked = [llama_cpp.llama_sampler_sample(slot.sampler, ctx, n)
                          for n, (_, slot) in enumerate(rows)]
            for (i, slot), token in zip(rows, picked):
                slot.pos += 1  # the token decoded in this step is now in the KV cache
                result = take(i, slot, token)
                if result:
                    yield result
            stats["steps"] += 1
            stats["gen_steps_seconds"] += time.perf_counter() - step_started
            stats["gen_steps_tokens"] += len(rows)
        stats["wall_seconds"] = time.perf_counter() - started
        self.last_stats = stats

    @staticmethod
    def _compact(mem, slots) -> None:
        """Move the highest sequences into free lower slots once no question is waiting.

        Without it the tail of a run leaves gaps in the sequence ids, and each gap costs a
        micro-batch (a full pass over the weights) per step. The KV cells are copied as they
        are (llama.cpp applies the copy at the next decode), so answers do not change.
        """
        while True:
            free = [i for i, x in enumerate(slots) if x is None]
            used = [i for i, x in enumerate(slots) if x is not None]
            if not free or not used or free[0] > used[-1]:
                return
            dst, src = free[0], used[-1]
            llama_cpp.llama_memory_seq_cp(mem, src, dst, -1, -1)
            llama_cpp.llama_memory_seq_rm(mem, src, -1, -1)
            slots[dst], slots[src] = slots[src], None


def _shared_prefix(prompts: list[list[int]]) -> list[int]:
    """The tokens every prompt starts with, leaving each at least one of its own (its logits
    begin the answer); empty when short or when there is only one prompt."""
    if len(prompts) < 2:
        return []
    n = min(len(p) for p in prompts) - 1
    first = prompts[0]
    for p in prompts[1:]:
        k = 0
        while k < n and p[k] == first[k]:
            k += 1
        n = k
    return first[:n] if n >= MIN_SHARED_PREFIX else []


def _kv_budget() -> int | None:
    """LLMEVAL_KV_BUDGET (bytes, or with a K/M/G suffix): the most KV cache a context may hold,
    a context over it counting as one llama.cpp could not create. For tests of the halving on a
    machine whose real memory would not run out."""
    value = os.environ.get("LLMEVAL_KV_BUDGET", "").strip().upper()
    if not value:
        return None
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(value[-1], 1)
    return int(float(value.rstrip("KMG")) * scale)
