"""Inference backends, picked by a model's `backend` key in models.toml.

Every backend takes a ModelSpec and answers a list of questions with `answer(questions)`, an
iterator of (question index, result) in the order answers finish; a result is
{"output", "tokens", "seconds"} or {"error"}. A failure in one question never stops the others.
`close()` frees what the backend holds. Backends: llama.cpp (GGUF), transformers (Hugging Face
folders, optionally in the model's own virtual environment), openai (any OpenAI-compatible
server) and custom (a Python function registered in tools/custom/).

A question dict may carry, besides `instruction` and `input`:
- "history": [[user_1, assistant_1], ...], the earlier turns of its conversation (the model's own
  answers), which `chat_messages` puts before the current turn;
- "generation": {"temperature", "max_tokens", "top_p"}, per-question settings (a set's per-category
  ones). infer.py passes only the keys the model's models.toml entry does not set, so a backend
  applies what it gets over the model's settings (`generation`).
"""
from __future__ import annotations

GENERATION_KEYS = ("temperature", "max_tokens", "top_p")


def user_message(question: dict) -> str:
    """The question as the user turn: the instruction, then its input if it has one."""
    extra = (question.get("input") or "").strip()
    return question["instruction"] + (f"\n\n{extra}" if extra else "")


def chat_messages(question: dict, system_prompt: str | None) -> list[dict]:
    """System prompt, the earlier turns as alternating user/assistant messages, the current turn."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for user, assistant in question.get("history") or []:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return messages + [{"role": "user", "content": user_message(question)}]


def generation(spec, question: dict) -> dict:
    """The temperature, max_tokens and top_p this question is answered with: the question's
    "generation" where it has them (already limited to what the model does not set), else the
    model's. Works on a ModelSpec or the transformers worker's plain namespace."""
    given = question.get("generation") or {}
    return {key: given.get(key, getattr(spec, key)) for key in GENERATION_KEYS}


def load_backend(spec):
    """The backend object for a model; imports only what that backend needs."""
    if spec.backend == "llama.cpp":
        from backends.llama_backend import LlamaBackend
        return LlamaBackend(spec)
    if spec.backend == "transformers":
        from backends.hf_backend import TransformersBackend
        return TransformersBackend(spec)
    if spec.backend == "openai":
        from backends.openai_backend import OpenAIBackend
        return OpenAIBackend(spec)
    if spec.backend == "custom":
        from backends.custom_backend import CustomBackend
        return CustomBackend(spec)
    raise ValueError(f"model '{spec.name}': unknown backend '{spec.backend}'")
