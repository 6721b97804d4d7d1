"""LLMBar's own comparison prompts as a judging protocol (`make judge-check PROTOCOL=llmbar`).

    prompts = load_llmbar(prompt_files("llmbar"))        # the fetched files (never shipped)
    call = llmbar_call(prompts, "Vanilla_NoRules", instruction, output_a, output_b, api=False)

The prompt is LLMBar's (princeton-nlp/LLMBar@900616b, LLMEvaluator/evaluate.py): the template
file filled with `str.format_map(dict(input=..., output_1=..., output_2=...))` and split into
chat messages by its prompt_to_chatml (alpaca_eval's function, copied there: the same code). Here
the template is split first and each message's placeholders filled by str.format, which gives the
same bytes for every text without chatml markers in it, and keeps a `<|im_end|>` inside an answer
as text. Strategies: Vanilla_NoRules and Vanilla (rules).

The verdict:
- a local judge (llama.cpp, transformers): read from the logits where the prompt expects its
  whole answer, at the start of the assistant's reply: P("Output (a)") and P("Output (b)") as
  chains of the judge's tokens (judges/labels.py, fast mode, no explanation), normalized over
  the two; the higher is the choice (exactly equal: neither);
- an API judge: the reply (max_tokens 50, temperature 0, as LLMBar's GPT-4 config) parsed with
  LLMBar's own regexes from its config JSON, tried in its order ("1" first, as its
  completion_with_parsing does); a reply neither matches is a failed call: counted, not cached,
  retried by the next run, never guessed (LLMBar itself counted it wrong).
Differs from LLMBar: no logit_bias (its GPT-4 config favours "Output (a)"/"Output (b)" and bans
"Both", "Neither", ... through tiktoken ids of OpenAI's models: not portable to other APIs); the
messages are rendered by the judge's own chat template (LLMBar wrote Llama-2's and Falcon's by hand).
Not handled: LLMBar's other strategies (CoT, Metrics, Reference, Swap: several calls each).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from judges.labels import LabelledCall
from lib.records import InputError

STRATEGIES = ("Vanilla_NoRules", "Vanilla")
OPTIONS = ("Output (a)", "Output (b)")
MAX_TOKENS = 50  # LLMBar's GPT-4 config


def prompt_to_chatml(prompt: str, start_token: str = "<|im_start|>", end_token: str = "<|im_end|>") -> list[dict]:
    """LLMBar's (and alpaca_eval's) prompt_to_chatml, for prompts without `system name=` roles."""
    prompt = prompt.strip()
    if not (prompt.startswith(start_token) and prompt.endswith(end_token)):
        raise ValueError("not a chatml prompt")
    messages = []
    for part in prompt.split(start_token)[1:]:
        role, rest = part.split("\n", 1)
        messages.append({"content": rest.split(end_token, 1)[0].strip(), "role": role.strip()})
    return messages


def load_llmbar(files: dict[str, Path]) -> dict:
    """{"templates": {strategy: text}, "parsing": {"1": regex, "2": regex}} from the fetched files."""
    try:
        templates = {s: Path(files[s]).read_text(encoding="utf-8") for s in STRATEGIES}
        config = json.loads(Path(files["config"]).read_text(encoding="utf-8"))
        parsing = config[-1]["parsing"]
        patterns = {k: re.compile(v) for k, v in parsing.items()}
    except (KeyError, OSError, ValueError, TypeError, IndexError, re.error) as err:
        raise InputError(f"LLMBar's prompt files are not as pinned ({err}); remove them from the cache and fetch again") from None
    if set(patterns) != {"1", "2"}:
        raise InputError("LLMBar's config parses other labels than 1 and 2; fetch it again")
    return {"templates": templates, "parsing": parsing, "patterns": patterns}


def fill(template: str, instruction: str, output_1: str, output_2: str) -> str:
    """LLMBar's own filled prompt text (evaluate.py: module["prompt"].format_map(final_kwargs))."""
    return template.format_map({"input": instruction, "output_1": output_1, "output_2": output_2})


def parser(patterns: dict):
    """LLMBar's completion_with_parsing: the reply stripped, the first label whose regex is found."""
    def parse(text: str):
        text = text.strip()
        for label, pattern in patterns.items():
            if pattern.search(text):
                return OPTIONS[int(label) - 1]
        return None
    return parse


def llmbar_call(prompts: dict, strategy: str, instruction: str, output_a: str, output_b: str,
                api: bool = False) -> LabelledCall:
    """One order of one pair: output_a shown as Output (a). Local judges read the logits at the
    reply's start (fast); API judges write up to 50 tokens, parsed with LLMBar's regexes."""
    system, user = prompt_to_chatml(prompts["templates"][strategy])
    if system["role"] != "system" or user["role"] != "user":
        raise InputError(f"LLMBar's {strategy} prompt is not a system and a user message; fetch it again")
    fields = (("input", instruction), ("output_1", output_a), ("output_2", output_b))
    return LabelledCall(system=system["content"], template=user["content"], fields=fields, options=OPTIONS,
                        protocol=f"llmbar/{strategy}", cue="", close="", cut=("output_1", "output_2"),
                        max_tokens=MAX_TOKENS, fast=not api, parser=parser(prompts["patterns"]))


def choice(record: dict | None) -> str | None:
    """"1" (Output (a) chosen), "2", "tie" (the two exactly equally likely), None (failed)."""
    if not record:
        return None
    probs = record.get("probs")
    if probs:
        a, b = probs.get(OPTIONS[0], 0.0), probs.get(OPTIONS[1], 0.0)
        return "1" if a > b else "2" if b > a else "tie"
    return {OPTIONS[0]: "1", OPTIONS[1]: "2"}.get(record.get("label"))
