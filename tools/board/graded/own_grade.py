"""The project's own 1-10 grading prompt, for question files that declare no grading protocol
(`make board PROTOCOL=grade QUESTIONS=data/x.txt`), as labelled calls (judges/labels.py).

One call per answered turn: the question (and, for a later turn, the conversation before it)
and the answer; the judge explains, then rates 1-10 as `[[N]]`, read FastChat's way from text and
from the logits by local judges. A reference answer, when the question has one, is shown as the
answer a 10 would match. Written in our words; it is not MT-Bench's prompt, and its scores are
not MT-Bench scores (the board says which prompt made them).
Does not handle: per-dimension scores (see alignbench.py).
"""
from __future__ import annotations

from judges.labels import RATINGS, LabelledCall, fastchat_rating

PROTOCOL = "own-grade-v1"
SYSTEM = "You are a fair, strict judge of AI assistants' answers."
TEMPLATE = """Grade the assistant's answer to the user's last message below.
Judge how helpful, correct, relevant, complete and clear it is{reference_note}. A wrong or \
off-topic answer gets 1-2, a weak one 3-4, an acceptable one 5-6, a good one 7-8, an excellent \
one 9-10. Explain briefly first, then give the rating as "[[rating]]", for example: "Rating: [[6]]".

{conversation}[User]
{question}

[Assistant's answer]
{answer}
[End of the answer]{reference}"""


def grade_calls(question: dict, turn_outputs: list[str], max_tokens: int, fast: bool = False):
    """(turn, prompt name, call) for every turn of the question that has an answer slot."""
    turns = question.get("turns") or [question.get("instruction", "")]
    references = question.get("reference") or []
    out = []
    for t, user in enumerate(turns):
        answer = turn_outputs[t] if t < len(turn_outputs) else ""
        before = "".join(f"[User]\n{turns[k]}\n\n[Assistant]\n{turn_outputs[k] if k < len(turn_outputs) else ''}\n\n"
                         for k in range(t))
        ref = references[t] if t < len(references) and references[t] else ""
        fields = (("conversation", before), ("question", user), ("answer", answer),
                  ("reference_note", ", comparing it with the reference answer" if ref else ""),
                  ("reference", f"\n\n[Reference answer]\n{ref}\n[End of the reference]" if ref else ""))
        out.append((t + 1, PROTOCOL, LabelledCall(system=SYSTEM, template=TEMPLATE, fields=fields, options=RATINGS,
                                                   protocol=PROTOCOL, cue="\n\nRating: [[",
                                                   cut=("conversation", "answer", "reference"),
                                                   max_tokens=max_tokens, fast=fast, parser=fastchat_rating)))
    return out
