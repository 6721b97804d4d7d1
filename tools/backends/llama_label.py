"""Labelled judge calls on llama.cpp in one decode each: the explanation, then the label read from
the KV cells the explanation left behind (judges/local_labels.py builds the jobs).

    for index, result in label_jobs(engine, jobs, n_parallel, n_ctx_seq, gen_limit):
        result["judgment"], result["rows"][node][token], result["tokens"]   # or result["error"]

A job is (index, prompt tokens, max_tokens, plan): max_tokens 0 = no explanation (fast mode);
`plan(judgment text)` gives (context tokens, {node: child tokens}): the tokens the label is read
after (the prompt, then the judgment up to its label's `[[`, re-tokenized as one text, or with the
cue appended) and the option paths' prefixes whose next-token log-probabilities are wanted.
Continuous batching, as the answering engine (llama_engine.py): N slots, a finished slot refilled
at once, results yielded the moment each call's label is read. For each call:
1. its prompt starts from the KV cells of the sequence that shares the longest start with it (the
   template's head and system prompt for all; the question, reference and turn-1 conversation for
   every answer graded on that question: the jobs are sorted, so those are neighbours), copied
   with llama_memory_seq_cp; only the rest is decoded, alone (its arithmetic not its neighbours');
2. the explanation is written greedily, one token per step for every slot in one llama_decode;
3. the prompt's cells stay; the rest of the label's context (the explanation up to its `[[`,
   re-tokenized as one text, or with the cue appended) is decoded after them as one chunk:
   llama.cpp's CPU kernels round a sequence's one-token steps differently from a chunk of
   tokens (logits up to ~0.5 apart on SmolLM2), and the label is read after a chunk, as the
   two-pass path reads it, so the numbers are that path's exactly;
4. each option path's prefix is one more token per step in the same shared llama_decode, walked
   depth first, the cells cut back to the branch point between paths (one-token steps, as the
   two-pass scorer decodes them).
So the prompt is decoded once, and a label costs its explanation at prompt speed (a chunk) plus
its few path tokens, where the two-pass path decoded the whole prompt again. Calls' numbers do
not depend on their batch neighbours (tests/test_labels_stream.py: equal to the two-pass path).
LLMEVAL_LABEL_PATH=reuse keeps the explanation's own cells too (nothing decoded again but the
cue or a re-tokenized boundary): faster on long explanations, the probabilities then differ
from the two-pass path's by that rounding (up to ~0.05 measured on SmolLM2), labels rarely.
Does not handle: sampling (always greedy), stop strings, models whose KV cannot be cut mid-way
(a call then decodes its context whole, still once), recurrent models.
"""
from __future__ import annotations

import os
import time

import llama_cpp
import numpy as np

from backends.llama_score import common_prefix

MIN_SHARE = 8  # shorter shared starts are not worth a KV copy


class _Slot:
    __slots__ = ("index", "prompt", "max_tokens", "plan", "out", "n_gen", "last", "context",
                 "nodes", "children", "node_i", "rows", "started", "phase")

    def __init__(self, job):
        self.index, self.prompt, self.max_tokens, self.plan = job
        self.out = bytearray()
        self.n_gen = 0
        self.last = -1
        self.context: list[int] = []
        self.nodes: list[tuple[int, ...]] = []
        self.children: dict = {}
        self.node_i = 0
        self.rows: dict = {}
        self.started = time.perf_counter()
        self.phase = "gen"


def _logprobs(row: np.ndarray, tokens) -> dict[int, float]:
    """log P(token) for `tokens` from one logits row: logit - log-sum-exp over the vocabulary
    (float64, as llama_score.score computes it for the two-pass path)."""
    wide = row.astype(np.float64)
    top = wide.max()
    lse = float(top + np.log(np.exp(wide - top).sum()))
    return {t: float(row[t]) - lse for t in tokens}


def label_jobs(engine, jobs, n_parallel: int, n_ctx_seq: int, gen_limit: int, n_batch: int = 512,
               stats: dict | None = None):
    """Yield (index, result) as each job's label is read (module docstring). `gen_limit`: an
    explanation stops when prompt + explanation reach it (the room left for the label)."""
    stats = stats if stats is not None else {}
    stats.update(calls=0, prompt_tokens=0, prompt_decoded=0, context_tokens=0, context_decoded=0,
                 generated=0, path_tokens=0, steps=0, copies=0, chunks=0)
    pending = sorted(jobs, key=lambda job: job[1])  # calls that share a start become neighbours
    if not pending:
        return
    n_parallel = max(1, min(n_parallel, len(pending)))
    ctx, n_parallel, _ = engine._context(n_parallel, n_ctx_seq, max(n_batch, n_parallel), [])
    n_batch = max(n_batch, n_parallel)
    batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
    mem = llama_cpp.llama_get_memory(ctx)
    limit = min(n_ctx_seq, llama_cpp.llama_n_ctx_seq(ctx))
    slots: list[_Slot | None] = [None] * n_parallel
    cells: list[list[int]] = [[] for _ in range(n_parallel)]  # the tokens in each sequence's KV cells
    pending.reverse()  # pop() from the end keeps the sorted order
    n_vocab = engine.n_vocab
    started = time.perf_counter()
    reuse = os.environ.get("LLMEVAL_LABEL_PATH", "").strip().lower() == "reuse"

    def cut(i: int, keep: int) -> int:
        """Keep sequence i's first `keep` cells; all go when this model's KV cannot be cut there."""
        if keep < len(cells[i]) and not llama_cpp.llama_memory_seq_rm(mem, i, keep, -1):
            llama_cpp.llama_memory_seq_rm(mem, i, -1, -1)
            keep = 0
        del cells[i][keep:]
        return keep

    def solo(i: int, tokens: list[int]) -> np.ndarray | None:
        """Decode tokens after sequence i's cells, alone, in chunks of at least two tokens where
        there are two (a one-token chunk takes other kernels); the last one's logits row (a copy)."""
        step = n_batch - 1 if len(tokens) % n_batch == 1 else n_batch
        for start in range(0, len(tokens), step):
            chunk = tokens[start:start + step]
            rc = engine._decode_tokens(ctx, batch, chunk, len(cells[i]), i, n_batch)
            if rc != 0:
                return None
            cells[i].extend(chunk)
            stats["chunks"] += 1
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(n_vocab,)).copy()

    def finish(i: int, error: str | None = None):
        slot = slots[i]
        slots[i] = None
        if error:
            cut(i, 0)
            return slot.index, {"error": error}
        stats["calls"] += 1
        stats["generated"] += slot.n_gen
        return slot.index, {"judgment": slot.out.decode("utf-8", errors="ignore").strip(), "rows": slot.rows,
                            "tokens": slot.n_gen, "seconds": time.perf_counter() - slot.started}

    def start(i: int, job) -> tuple | None:
        """Slot i takes a job: the longest shared start copied in, the rest of its prompt decoded."""
        slot = slots[i] = _Slot(job)
        prompt = slot.prompt
        stats["prompt_tokens"] += len(prompt)
        own = common_prefix(cells[i], prompt)
        best, src = own, i
        for j in range(n_parallel):
            if j != i and cells[j]:
                c = common_prefix(cells[j], prompt)
                if c > best:
                    best, src = c, j
        if src != i and best >= MIN_SHARE:
            llama_cpp.llama_memory_seq_rm(mem, i, -1, -1)
            llama_cpp.llama_memory_seq_cp(mem, src, i, -1, -1)  # applied at the next decode
            cells[i] = list(cells[src])
            stats["copies"] += 1
        else:
            best = own
        if slot.max_tokens <= 0:  # fast: the label right after the cue, no explanation
            cut(i, best)
            return to_label(i)
        keep = cut(i, max(0, min(best, len(prompt) - 2)))  # two tokens at least: a chunk, not a single step
        stats["prompt_decoded"] += len(prompt) - keep
        row = solo(i, prompt[keep:])
        if row is None:
            return finish(i, "llama_decode failed on the prompt (out of memory?)")
        return take(i, int(row.argmax()))

    def take(i: int, token: int) -> tuple | None:
        slot = slots[i]
        slot.n_gen += 1
        if token in engine.eog:
            slot.n_gen -= 1  # the end marker is not part of the reply
            return to_label(i)
        slot.out += engine.pieces[token]
        if slot.n_gen >= slot.max_tokens or len(slot.prompt) + slot.n_gen >= gen_limit or \
                len(slot.prompt) + slot.n_gen >= limit:
            return to_label(i)
        slot.last = token
        return None

    def to_label(i: int) -> tuple | None:
        """The explanation is written: bring the cells to the label's context, read its first row."""
        slot = slots[i]
        slot.phase = "nodes"
        text = slot.out.decode("utf-8", errors="ignore").strip()
        try:
            context, children = slot.plan(text)
        except (ValueError, RuntimeError) as err:
            return finish(i, str(err))
        depth = max((len(node) for node in children), default=0)
        if len(context) + depth + 1 > limit:
            return finish(i, f"the label's context is {len(context)} tokens, more than the sequence's {limit}")
        slot.context, slot.children = context, children
        slot.nodes = sorted(children)  # preorder: a node's parent is always on the path just decoded
        stats["context_tokens"] += len(context)
        # The prompt's cells stay; the explanation's are decoded again as one chunk: llama.cpp's
        # CPU kernels round a sequence's single-token steps differently from a chunk of tokens
        # (logits up to ~0.5 apart on SmolLM2), and the two-pass path reads the label after a chunk.
        reach = len(slot.prompt) if slot.max_tokens > 0 and not reuse else len(context)
        keep = cut(i, max(0, min(common_prefix(cells[i], context), reach, len(context) - 2)))
        stats["context_decoded"] += len(context) - keep
        row = solo(i, context[keep:])
        if row is None:
            return finish(i, "llama_decode failed on the label's context (out of memory?)")
        slot.rows[()] = _logprobs(row, children[()])
        slot.node_i = 1
        return next_node(i)

    def next_node(i: int) -> tuple | None:
        slot = slots[i]
        if slot.node_i >= len(slot.nodes):
            return finish(i)
        node = slot.nodes[slot.node_i]
        base = len(slot.context)
        shared = common_prefix(cells[i][base:], list(node[:-1]))
        if cut(i, base + shared) < base + shared:  # this model's cells cannot be cut: the context again
            if solo(i, slot.context + list(node[:-1])[:shared]) is None:
                return finish(i, "llama_decode failed on the label's context (out of memory?)")
        if shared < len(node) - 1:  # not reached in preorder; kept for safety
            if solo(i, list(node[shared:-1])) is None:
                return finish(i, "llama_decode failed on a label path (out of memory?)")
        slot.last = node[-1]
        return None

    try:
        while True:
            for i in range(n_parallel):  # refill free slots, lowest id first
                while slots[i] is None and pending:
                    result = start(i, pending.pop())
                    if result:
                        yield result
            if not pending:
                _compact(mem, slots, cells)
            rows = [(i, slot) for i, slot in enumerate(slots) if slot is not None]
            if not rows:
                break
            tok, pos, seq, nseq, logits = batch.token, batch.pos, batch.seq_id, batch.n_seq_id, batch.logits
            for n, (i, slot) in enumerate(rows):  # one token per slot: the reply's next, or a path's
                tok[n], pos[n], seq[n][0], nseq[n], logits[n] = slot.last, len(cells[i]), i, 1, 1
            batch.n_tokens = len(rows)
            rc = llama_cpp.llama_decode(ctx, batch)
            if rc != 0:  # which sequence broke is unknown: fail those in this step, go on
                for i, _ in rows:
                    yield finish(i, f"llama_decode failed with code {rc} (out of memory?)")
                continue
            stats["steps"] += 1
            out = np.ctypeslib.as_array(llama_cpp.llama_get_logits(ctx), shape=(len(rows), n_vocab))
            picked = out.argmax(axis=1).tolist()
            for n, (i, slot) in enumerate(rows):  # read this step's rows before any other decode
                cells[i].append(slot.last)
                if slot.phase == "nodes":
                    node = slot.nodes[slot.node_i]
                    slot.rows[node] = _logprobs(out[n], slot.children[node])
                    stats["path_tokens"] += 1
            for n, (i, slot) in enumerate(rows):
                if slot.phase == "nodes":
                    slot.node_i += 1
                    result = next_node(i)
                else:
                    result = take(i, picked[n])
                if result:
                    yield result
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)
        stats["seconds"] = time.perf_counter() - started
        stats["prompt_tokens_saved"] = stats["prompt_tokens"] - stats["prompt_decoded"]
        stats["context_tokens_saved"] = stats["context_tokens"] - stats["context_decoded"]


def _compact(mem, slots, cells) -> None:
    """Move the highest sequences into free lower slots once no call is waiting: each gap in the
    sequence ids costs a micro-batch (a pass over the weights) per step (llama_engine._compact)."""
    while True:
        free = [i for i, x in enumerate(slots) if x is None]
        used = [i for i, x in enumerate(slots) if x is not None]
        if not free or not used or free[0] > used[-1]:
            return
        dst, src = free[0], used[-1]
        llama_cpp.llama_memory_seq_rm(mem, dst, -1, -1)
        llama_cpp.llama_memory_seq_cp(mem, src, dst, -1, -1)
        llama_cpp.llama_memory_seq_rm(mem, src, -1, -1)
        slots[dst], slots[src] = slots[src], None
        cells[dst], cells[src] = cells[src], []
