"""Example custom models for `backend = "custom"` (see tools/backends/custom_backend.py).

Each function gets a list of questions (strings), or of conversations (chat messages, when its
first parameter is named `conversations`), and returns one answer per question. Copy this file,
register your own function under a new name, and declare it in models.toml:

    [models.parrot]
    backend = "custom"          # function = "parrot" is implied by the model's name

Anything Python can call works: a model in another framework, a company API, a rule system.
"""
from backends.custom_backend import register_llm_infer


@register_llm_infer("parrot")
def parrot(questions: list[str]) -> list[str]:
    """A floor for the board: answers every question by repeating it. Any real model should win."""
    return [f"You asked: {question}" for question in questions]


@register_llm_infer("first_line")
def first_line(questions: list[str], settings: dict) -> list[dict]:
    """Shows the optional `settings` (generation settings from models.toml) and dict answers."""
    answers = []
    for question in questions:
        words = question.splitlines()[0].split()[: settings["max_tokens"]]
        answers.append({"output": " ".join(words), "tokens": len(words)})
    return answers


@register_llm_infer("parrot_chat")
def parrot_chat(conversations: list[list[dict]]) -> list[str]:
    """Conversations of several turns (MT-Bench): a first parameter named `conversations` gets each
    one as chat messages, [{"role": "system" | "user" | "assistant", "content": ...}], the current
    user turn last. Repeats that turn, and says how many turns came before."""
    answers = []
    for messages in conversations:
        earlier = sum(1 for m in messages[:-1] if m["role"] == "user")
        answers.append(f"You asked: {messages[-1]['content']} ({earlier} earlier turns)")
    return answers
