"""custom backend: answers from a Python function of your own, registered by name.

    # tools/custom/my_model.py
    from backends.custom_backend import register_llm_infer

    @register_llm_infer("my_model")
    def my_model(questions: list[str]) -> list[str]:
        return [call_my_system(q) for q in questions]

and in models.toml: `[models.my_model]` with `backend = "custom"` (`function = "..."` when the
registered name differs from the model's). Every tools/custom/*.py file (not starting with "_")
is imported when a custom model runs, so a new file is all it takes.

The function gets the questions as strings (instruction, then its input), up to CHUNK at a time
so each answer is saved as soon as its chunk is done, and returns one answer per question: a
string, or a dict {"output": str, "tokens": int}. With a parameter named `settings` it also gets
the model's generation settings (max_tokens, temperature, top_p, seed, stop, system_prompt; a
question set's per-category temperature or max_tokens where the model sets none, so a chunk holds
questions of equal settings). When a call raises, its questions are retried one by one, so one
bad question fails alone.

Conversations of several turns (MT-Bench): a function whose first parameter is named
`conversations` gets, per question, the whole conversation as chat messages instead of a string:
[{"role": "system" | "user" | "assistant", "content": str}, ...] (the system prompt, the earlier
turns with the model's own answers, the current user turn last):

    @register_llm_infer("my_chat")
    def my_chat(conversations: list[list[dict]]) -> list[str]:
        return [call_my_chat_api(messages) for messages in conversations]

A function that takes strings cannot answer a later turn: each such turn gets one error line
saying so (its first turns are answered).
Not handled: async functions, streaming; the function runs in this process, with its imports.
"""
from __future__ import annotations

import importlib.util
import inspect
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from lib.messages import GENERATION_KEYS, chat_messages, generation, user_message

CUSTOM_DIR = Path(__file__).resolve().parent.parent / "custom"
CHUNK = 16
_REGISTRY: dict[str, Callable] = {}


def register_llm_infer(name: str):
    """Decorator: make `fn(questions: list[str]) -> list[str]` the custom model `name`."""
    def decorate(fn: Callable) -> Callable:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            other = _REGISTRY[name]
            if (other.__module__, other.__qualname__) != (fn.__module__, fn.__qualname__):
                raise ValueError(f"custom function name '{name}' is registered twice "
                                 f"({other.__module__}.{other.__qualname__} and {fn.__module__}.{fn.__qualname__})")
        _REGISTRY[name] = fn
        return fn
    return decorate


def discover(folder: Path = CUSTOM_DIR) -> dict[str, Callable]:
    """Import every tools/custom/*.py once; returns the registered functions by name."""
    for path in sorted(folder.glob("*.py")):
        module_name = f"llmeval_custom_{path.stem}"
        if path.name.startswith("_") or module_name in sys.modules:
            continue
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as err:
            del sys.modules[module_name]
            raise RuntimeError(f"{path} failed to import: {type(err).__name__}: {err}") from None
    return dict(_REGISTRY)


class CustomBackend:
    def __init__(self, spec):
        functions = discover()
        if spec.function not in functions:
            known = ", ".join(sorted(functions)) or "none"
            raise LookupError(f"no function registered as '{spec.function}' with @register_llm_infer in "
                              f"{CUSTOM_DIR}/*.py (registered: {known})")
        self.spec = spec
        self.fn = functions[spec.function]
        parameters = list(inspect.signature(self.fn).parameters)
        self.wants_settings = "settings" in parameters
        self.takes_conversations = parameters[:1] == ["conversations"]
        self._stuck = ""  # why no more calls are made (a call that never returned)
        self.settings = {k: getattr(spec, k) for k in
                         ("max_tokens", "temperature", "top_p", "seed", "stop", "system_prompt")}

    def answer(self, questions: list[dict]):
        groups: dict[tuple, list[int]] = {}  # equal generation settings share a call
        for index, question in enumerate(questions):
            if question.get("history") and not self.takes_conversations:
                yield index, {"error": f"custom function '{self.spec.function}' takes questions as strings, so it "
                                       f"cannot answer turn {len(question['history']) + 1} of a conversation; name "
                                       "its first parameter `conversations` to get each one as chat messages"}
                continue
            gen = generation(self.spec, question)
            groups.setdefault(tuple(gen[k] for k in GENERATION_KEYS), []).append(index)
        for values, members in groups.items():
            settings = {**self.settings, **dict(zip(GENERATION_KEYS, values))}
            items = [chat_messages(questions[i], self.spec.system_prompt) if self.takes_conversations
                     else user_message(questions[i]) for i in members]
            for start in range(0, len(items), CHUNK):
                indices = members[start:start + CHUNK]
                chunk = items[start:start + CHUNK]
                results = self._call(chunk, settings)
                if results is None and not self._stuck:  # the chunk failed: one by one, so a bad question fails alone
                    results = [(self._call([item], settings) or [self._error])[0] for item in chunk]
                yield from zip(indices, results or [self._error] * len(indices))

    def _call(self, texts: list, settings: dict) -> list[dict] | None:
        """One result per text, or None (why: self._error) when the function failed or is stuck."""
        name = f"custom function '{self.spec.function}'"
        if self._stuck:
            self._error = {"error": f"not asked: {self._stuck}"}
            return None
        started, outcome = time.perf_counter(), {}

        def work():
            try:
                answers = self.fn(texts, settings=dict(settings)) if self.wants_settings else self.fn(texts)
                if isinstance(answers, (str, bytes, dict)):  # list("abc") would be three answers
                    raise TypeError(f"returned a {type(answers).__name__}, not a list of answers (one per question)")
                outcome["answers"] = list(answers)
            except BaseException as err:  # the function's own KeyboardInterrupt or SystemExit too: its failure
                outcome["error"] = err

        thread = threading.Thread(target=work, name=name, daemon=True)
        thread.start()
        thread.join(self.spec.timeout)  # a real Ctrl-C interrupts this wait, in the main thread
        if thread.is_alive():
            self._stuck = f"{name} did not return within {self.spec.timeout:g} s (`timeout` in models.toml)"
            self._error = {"error": self._stuck}
            return None
        answers, err = outcome.get("answers"), outcome.get("error")
        if err is None and len(answers) != len(texts):
            err = ValueError(f"returned {len(answers)} answers for {len(texts)} questions")
        if err is not None:
            self._error = {"error": f"{name}: {type(err).__name__}: {err}"}
            return None
        seconds = (time.perf_counter() - started) / len(texts)
        return [self._result(answer, seconds) for answer in answers]

    def _result(self, answer, seconds: float) -> dict:
        if isinstance(answer, dict) and isinstance(answer.get("output"), str):
            tokens = answer.get("tokens")
            return {"output": answer["output"].strip(),
                    "tokens": tokens if isinstance(tokens, int) else len(answer["output"].split()),
                    "seconds": seconds}
        if isinstance(answer, str):  # no token count from the function: words stand in
            return {"output": answer.strip(), "tokens": len(answer.split()), "seconds": seconds}
        return {"error": f"custom function '{self.spec.function}' returned {type(answer).__name__}, "
                         "not a string or {'output': ...}"}

    def close(self) -> None:
        pass
