'''Skywork-Critic-Llama-3.1-8B's pairwise format: the verdict `[[A]]` or `[[B]]`, written at once.

Source: the model card of Skywork/Skywork-Critic-Llama-3.1-8B (huggingface.co, "Usage"), whose
example fills this `prompt_template` with `input`, `response_a`, `response_b` by str.format, sends
it as the only user message through the model's chat template (add_generation_prompt=True) and
reads the reply, "[[A]]" or "[[B]]", the model trained to answer with nothing else:

    Please act as an impartial judge and evaluate the quality of the responses provided by two AI
    assistants to the user question displayed below. You should choose the assistant that follows
    the user's instructions and answers the user's question better. (...)
    Please directly output your final verdict by strictly following this format: "[[A]]" if
    assistant A is better, "[[B]]" if assistant B is better.

    [User Question]
    {input}
    (...)

PROMPT below is that text byte for byte (two lines end in a space, as on the card). The label is
read where the reply starts: P(A) and P(B) after the generation prompt and "[[" (fast: the model
writes no explanation, so none is generated), chained with "]]". Not handled: the card's
multi-turn use, ties (the format has none).
'''
from __future__ import annotations

import re

from judges.labels import LabelledCall

VERSION = "v1"
PROMPT = """Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to the user question displayed below. You should choose the assistant that follows the user\'s instructions and answers the user\'s question better. 
Your evaluation should consider factors such as the helpfulness, relevance, accuracy, depth, creativity, and level of detail of their responses. Avoid any position biases and ensure that the order in which the responses were presented does not influence your decision. Do not allow the length of the responses to influence your evaluation. Do not favor certain names of the assistants. Be as objective as possible. 
Please directly output your final verdict by strictly following this format: "[[A]]" if assistant A is better, "[[B]]" if assistant B is better.

[User Question]
{input}

[The Start of Assistant A's Answer]
{response_a}
[The End of Assistant A's Answer]

[The Start of Assistant B's Answer]
{response_b}
[The End of Assistant B's Answer]
"""
VERDICT = re.compile(r"\[\[(A|B)\]\]")


def parse(text: str):
    """The written verdict, 'A' or 'B' (the first `[[A]]`/`[[B]]`), or None."""
    match = VERDICT.search(text)
    return match.group(1) if match else None


def pair_call(instruction: str, first: str, second: str) -> LabelledCall:
    return LabelledCall(system="", template=PROMPT,
                        fields=(("input", instruction), ("response_a", first), ("response_b", second)),
                        options=("A", "B"), protocol=f"skywork/pair-{VERSION}", cue="[[",
                        cut=("response_a", "response_b"), max_tokens=8, fast=True, parser=parse,
                        data=("response_a", "response_b"))
