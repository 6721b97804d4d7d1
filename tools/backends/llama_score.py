"""Score prompts in-process on llama.cpp: the logits at each prompt's last position, for a few tokens.

    for index, result in score(engine, prompts, token_ids, n_parallel, n_ctx_seq):
        result["logits"]   # one float per token id, or result["error"]

This is what a judge needs (tools/judges/llama_judge.py): no sampling, no grammar, no server,
just the two verdict tokens' logits after the prompt, exact. The work is the prompts' tokens, so
what prompts share is decoded once:
- the start every prompt has (a chat template's head and the judge's instructions) is decoded
  once into its own sequence and copied into each slot (llama_memory_seq_cp);
- the prompts are sorted, so those that share a start (the two orders of one judge pair share
  the question) are neighbours, and each of the N slots takes a contiguous run of them: a slot
  keeps the previous prompt's KV cells and decodes only what follows their common start (what
  llama_cpp.server does for the previous request, done here for every slot).
Each step decodes the next chunk (up to n_batch tokens) of every busy slot, one llama_decode per
slot, logits only at prompts' last tokens. The context comes from BatchedEngine._context (N halved
when llama.cpp cannot make room, as for answering).
Does not handle: generation (llama_engine.py does), recurrent models whose KV cannot be cut
mid-sequence (a slot then decodes each prompt whole), prompts longer than n_ctx_seq (an error for
that prompt: the caller cuts them to fit first).
"""
from __future__ import annotations

import llama_cpp
import numpy as np

CTX_ROUND = 256


class _Slot:
    __slots__ = ("queue", "kv", "current", "fed")

    def __init__(self):
        self.queue: list[tuple[int, list[int]]] = []  # (index, tokens), in order
        self.kv: list[int] = []  # the tokens in this sequence's KV cells, positions 0..len-1
        self.current: tuple[int, list[int]] | None = None
        self.fed = 0  # tokens of `current` in the KV cells


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    k = 0
    while k < n and a[k] == b[k]:
        k += 1
    return k


def context_size(prompts: list[list[int]], n_ctx: int) -> int:
    """Cells per sequence: the longest prompt, rounded up, never more than n_ctx."""
    need = max((len(p) for p in prompts), default=1) + 1
    return min(n_ctx, -(-need // CTX_ROUND) * CTX_ROUND)


def score(engine, prompts: list[tuple[int, list[int]]], token_ids: list[int], n_parallel: int,
          n_ctx_seq: int, n_batch: int = 512, stats: dict | None = None, normalize: bool = False):
    """Yield (index, {"logits": [logit of each of token_ids]} or {"error"}) as prompts finish.
    `stats` (a dict) gets the tokens decoded and the tokens saved by sharing. `normalize` adds
    "logsumexp" over the whole vocabulary, so logit - logsumexp is a token's log-probability
    (labelled calls chain them over the tokens of a label, judges/labels.py)."""
    stats = stats if stats is not None else {}
    stats.update(prompt_tokens=0, decoded_tokens=0)
    todo = []
    for index, tokens in prompts:
        if not tokens:
            yield index, {"error": "the prompt is empty after tokenizing"}
        elif len(tokens) > n_ctx_seq:
            yield index, {"error": f"prompt is {len(tokens)} tokens, more than the context ({n_ctx_seq})"}
        else:
            todo.append((index, tokens))
            stats["prompt_tokens"] += len(tokens)
    if not todo:
        return
    todo.sort(key=lambda item: item[1])  # shared starts become neighbours
    n_parallel = max(1, min(n_parallel, len(todo)))
    head = todo[0][1]
    n_head = min(len(t) for _, t in todo) - 1  # each prompt keeps its last token: its logits
    for _, tokens in todo[1:]:
        n_head = min(n_head, common_prefix(head, tokens))
    # (one prompt alone is decoded whole: nothing to share, and its numbers stay those of one pass)
    head = head[:n_head] if n_head >= 8 and len(todo) > 1 else []
    ctx, n_parallel, head = engine._context(n_parallel, n_ctx_seq, n_batch, head)
    slots = [_Slot() for _ in range(n_parallel)]
    per_slot = -(-len(todo) // n_parallel)
    for i, slot in enumerate(slots):
        slot.queue = todo[i * per_slot:(i + 1) * per_slot][::-1]  # pop() from the end
    head_seq = n_parallel
    batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
    try:
        mem = llama_cpp.llama_get_memory(ctx)
        if head:
            if engine._decode_tokens(ctx, batch, head, 0, head_seq, n_batch) != 0:
                llama_cpp.llama_memory_seq_rm(mem, head_seq, -1, -1)
                head = []
            stats["decoded_tokens"] += len(head)

        def reset(i: int) -> None:
            """Empty slot i's cells, then give it the shared head again."""
            llama_cpp.llama_memory_seq_rm(mem, i, -1, -1)
            slots[i].kv = []
            if head:
                llama_cpp.llama_memory_seq_cp(mem, head_seq, i, -1, -1)
                slots[i].kv = list(head)

        for i in range(n_parallel):
            reset(i)
        while True:
            for i, slot in enumerate(slots):  # each idle slot takes its next prompt
                if slot.current is None and slot.queue:
                    slot.current = slot.queue.pop()
                    tokens = slot.current[1]
                    keep = min(common_prefix(slot.kv, tokens), len(tokens) - 1)
                    if keep < len(slot.kv) and not llama_cpp.llama_memory_seq_rm(mem, i, keep, -1):
                        reset(i)  # this model's KV cannot be cut mid-way: start over
                        keep = min(common_prefix(slot.kv, tokens), len(tokens) - 1)
                    slot.kv = slot.kv[:keep]
                    slot.fed = keep
            busy = [(i, s) for i, s in enumerate(slots) if s.current is not None]
            if not busy:
                break
            # One llama_decode per slot: a batch of one sequence stays one micro-batch (llama.cpp
            # splits a batch of several sequences of unequal lengths into many small ones: measured
            # 3x slower on the CPU), and a prompt's arithmetic does not depend on its neighbours.
            for i, slot in busy:
                tokens = slot.current[1]
                take = min(len(tokens) - slot.fed, n_batch)
                for k in range(take):
                    batch.token[k], batch.pos[k] = tokens[slot.fed + k], slot.fed + k
                    batch.seq_id[k][0], batch.n_seq_id[k], batch.logits[k] = i, 1, 0
                done = slot.fed + take == len(tokens)
                batch.logits[take - 1] = done
                batch.n_tokens = take
                stats["decoded_tokens"] += take
                rc = llama_cpp.llama_decode(ctx, batch)
                if rc != 0:
                    yield slot.current[0], {"error": f"llama_decode failed with code {rc} (out of memory?)"}
                    slot.current = None
                    reset(i)
                    continue
                slot.kv.extend(tokens[slot.fed:slot.fed + take])
                slot.fed += take
                if done:
                    logits = llama_cpp.llama_get_logits_ith(ctx, take - 1)
                    result = {"logits": [float(logits[t]) for t in token_ids]}
                    if normalize:
                        row = np.ctypeslib.as_array(logits, shape=(engine.n_vocab,)).astype(np.float64)
                        top = row.max()
                        result["logsumexp"] = float(top + np.log(np.exp(row - top).sum()))
                    yield slot.current[0], result
                    slot.current = None
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)

