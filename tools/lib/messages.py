"""What every backend shares about a question: the user turn, the chat messages (system prompt,
earlier turns, current turn) and the generation settings it is answered with.

A question dict may carry, besides `instruction` and `input`:
- "history": [[user_1, assistant_1], ...], the earlier turns of its conversation (the model's own
  answers), which `chat_messages` puts before the current turn;
- "generation": {"temperature", "max_tokens", "top_p"}, per-question settings (a set's per-category
  ones). infer.py passes only the keys the model's models.toml entry does not set, so a backend
  applies what it gets over the model's settings (`generation`).
Used by every backend (tools/backends/) and by conversations.py. Not handled: chat templates
(each backend applies its model's own).
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
