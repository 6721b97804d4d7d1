"""Several questions in one transformers `generate` call: padding, penalties, cutting the answers.

Used by hf_backend.py, in this process and in a model's own environment (the worker, where the
transformers may be as old as 4.27, ChatGLM-6B's pin): nothing here needs a newer one.
- `left_pad(rows, pad_id)`: token id lists padded on the left, with the attention mask; generate
  derives each row's position ids from that mask (Llama-like models). ChatGLM-6B's own tokenizer
  pads itself, with its 2D position ids and its boolean mask (`chatglm_inputs`).
- `RepetitionPenalty`: transformers' repetition penalty (the same formula), blind to the padding:
  transformers' own counts the pad token as seen in padded rows only, which would make a padded
  row's answer differ from the same question alone.
- `cut(ids, width, eos, pad)`: a row's new tokens up to its first end-of-sequence token, without
  the padding generate adds after a row is done; `cut_at_stops(text, stops)`.
- `chatglm_prompt(messages)`: the prompt ChatGLM-6B's chat(query, history) builds, from
  lib.messages.chat_messages (system prompt put before the first user turn: chat() has no system turn).
- `is_memory_error(err)`: out of memory on the GPU or the CPU, or over LLMEVAL_KV_BUDGET.
Not handled: dropping a finished row from a running batch (generate keeps every row until the
last one ends or max_new_tokens; a finished row then costs its padding's work).
"""
from __future__ import annotations

import os


def left_pad(rows: list[list[int]], pad_id: int, device) -> tuple[dict, list[int]]:
    import torch

    width = max(len(r) for r in rows)
    pads = [width - len(r) for r in rows]
    ids = torch.tensor([[pad_id] * p + r for p, r in zip(pads, rows)], device=device)
    mask = torch.tensor([[0] * p + [1] * len(r) for p, r in zip(pads, rows)], device=device)
    return {"input_ids": ids, "attention_mask": mask}, pads


def repetition_penalty(penalty: float, pads: list[int]):
    """A LogitsProcessor applying `penalty` to every token seen in a row, its padding left out."""
    import torch
    from transformers import LogitsProcessor

    class RepetitionPenalty(LogitsProcessor):
        def __call__(self, input_ids, scores):
            width = input_ids.shape[1]
            real = (torch.arange(width, device=input_ids.device)[None, :] >=
                    torch.tensor(pads, device=input_ids.device)[:, None]).to(scores.dtype)
            seen = torch.zeros_like(scores).scatter_add_(1, input_ids, real) > 0
            penalized = torch.where(scores < 0, scores * penalty, scores / penalty)
            return torch.where(seen, penalized, scores)

    return RepetitionPenalty()


def cut(row: list[int], width: int, eos: set[int], pad: int | None) -> list[int]:
    """The new tokens of one output row: up to and with its first end token, padding dropped."""
    new = row[width:]
    for i, token in enumerate(new):
        if token in eos:
            return new[:i + 1]
    while new and pad is not None and new[-1] == pad:
        new = new[:-1]
    return new


def cut_at_stops(text: str, stops: list[str]) -> str:
    for stop in stops or []:
        text = text.split(stop)[0]
    return text


def eos_ids(model, tokenizer) -> set[int]:
    found = set()
    for value in (getattr(getattr(model, "generation_config", None), "eos_token_id", None),
                  getattr(model.config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            found.add(value)
        elif isinstance(value, (list, tuple)):
            found.update(v for v in value if isinstance(v, int))
    return found


def chat_turns(messages: list[dict]) -> tuple[str, list[tuple[str, str]]]:
    """(query, history) as chat(tokenizer, query, history) takes them, from chat_messages."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    turns = [m for m in messages if m["role"] != "system"]
    users = [m["content"] for m in turns if m["role"] == "user"]
    answers = [m["content"] for m in turns if m["role"] == "assistant"]
    if system:  # chat() has no system turn: the system prompt goes before the first user turn
        users[0] = f"{system}\n\n{users[0]}"
    return users[-1], list(zip(users[:-1], answers))


def chatglm_prompt(messages: list[dict]) -> str:
    """ChatGLM-6B's chat(): the query alone, or "[Round i]\\n问：...\\n答：..." rounds."""
    query, history = chat_turns(messages)
    if not history:
        return query
    prompt = "".join(f"[Round {i}]\n问：{q}\n答：{a}\n" for i, (q, a) in enumerate(history))
    return prompt + f"[Round {len(history)}]\n问：{query}\n答："


def is_chatglm_v1(model, tokenizer) -> bool:
    """ChatGLM-6B (v1): its own tokenizer pads on the left with 2D position ids; chat() builds
    the prompt of chatglm_prompt (ChatGLM2/3 have other formats and go through chat())."""
    import sys

    config = model.config
    module = sys.modules.get(type(model).__module__)
    return (getattr(config, "model_type", "") == "chatglm" and hasattr(config, "position_encoding_2d")
            and type(tokenizer).__name__ == "ChatGLMTokenizer" and hasattr(module, "InvalidScoreLogitsProcessor"))


def kv_budget() -> int | None:
    """LLMEVAL_KV_BUDGET (bytes, or with a K/M/G suffix): a batch whose KV cache would exceed it
    fails as out of memory (the llama.cpp engine reads the same variable). For tests of the halving
    on a machine whose memory would not run out."""
    value = os.environ.get("LLMEVAL_KV_BUDGET", "").strip().upper()
    if not value:
        return None
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(value[-1], 1)
    return int(float(value.rstrip("KMG")) * scale)


class BudgetExceeded(MemoryError):
    """A batch over LLMEVAL_KV_BUDGET: taken for out of memory."""


def is_memory_error(err: BaseException) -> bool:
    if isinstance(err, MemoryError):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text
                                              or "cublas_status_alloc_failed" in text)
