"""MT-Bench single-answer grading, exactly as FastChat's llm_judge builds it (gen_judgment.py +
common.py at lm-sys/FastChat@0e6d3e4), as labelled calls (judges/labels.py).

    prompts = load_judge_prompts(path)       # the set's judge_prompts.jsonl, as fetched
    for turn, name, call in single_calls(prompts, question, turn_outputs, max_tokens): ...

- turn 1: `single-v1`; questions of math, reasoning and coding (FastChat's NEED_REF_CATS) get
  `single-math-v1` with the GPT-4 reference answer (`ref_answer_1`);
- turn 2 (questions with two turns): `single-v1-multi-turn` / `single-math-v1-multi-turn`, the
  whole conversation shown (question_1, answer_1, question_2, answer_2, ref_answer_1/2), the
  judge rating the second answer;
- messages: the prompt's system_prompt as the system message and its prompt_template filled with
  str.format as the user message (FastChat's conversation for an API judge); the rating is read
  from `[[N]]` (FastChat's patterns, labels.fastchat_rating) or, for local judges, the logits.
`pair_calls` builds the pairwise mode (pair-v2, pair-math-v1 and their multi-turn prompts) for
two answers, in both orders: labels A, B and C (tie), combined as FastChat's `both orders,
inconsistent = tie` (board/graded/pairs.py, `make board VERSUS=all`). The prompts themselves are
never shipped: they come from the fetched file.
Does not handle: a math/reasoning/coding question without a reference answer (FastChat stops;
here it is graded with the general prompt and said in `notes`).
"""
from __future__ import annotations

import json
from pathlib import Path

from judges.labels import RATINGS, LabelledCall, fastchat_rating
from lib.records import InputError

NEED_REF_CATS = ("math", "reasoning", "coding", "arena-hard-200")  # FastChat's common.py
SINGLE = {(False, False): "single-v1", (True, False): "single-math-v1",
          (False, True): "single-v1-multi-turn", (True, True): "single-math-v1-multi-turn"}
PAIR = {(False, False): "pair-v2", (True, False): "pair-math-v1",
        (False, True): "pair-v2-multi-turn", (True, True): "pair-math-v1-multi-turn"}
API_MAX_TOKENS = 2048  # FastChat asks its OpenAI judges for up to 2048 tokens


def load_judge_prompts(path: str | Path) -> dict[str, dict]:
    """FastChat's load_judge_prompts: name -> prompt record; InputError when a prompt is missing."""
    path = Path(path)
    try:
        prompts = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                prompts[record["name"]] = record
    except (OSError, ValueError, KeyError) as err:
        raise InputError(f"{path}: not MT-Bench's judge_prompts.jsonl ({err}); fetch it again: make data QUESTIONS=mt_bench") from None
    missing = [name for name in (*SINGLE.values(), *PAIR.values()) if name not in prompts]
    if missing:
        raise InputError(f"{path}: judge prompts {', '.join(missing)} missing; fetch it again: make data QUESTIONS=mt_bench")
    return prompts


def needs_reference(question: dict) -> bool:
    return question.get("category") in NEED_REF_CATS


def _fields(question: dict, answers: list[str], multi_turn: bool, with_ref: bool, prefix: str = "answer"):
    turns = question.get("turns") or [question["instruction"]]
    if multi_turn:
        fields = [("question_1", turns[0]), ("question_2", turns[1]),
                  (f"{prefix}_1", answers[0]), (f"{prefix}_2", answers[1])]
    else:
        fields = [("question", turns[0]), (prefix, answers[0])]
    if with_ref:
        reference = question["reference"]
        fields.append(("ref_answer_1", reference[0]))
        if multi_turn:
            fields.append(("ref_answer_2", reference[1] if len(reference) > 1 else ""))
    return fields


def _with_ref(question: dict, multi_turn: bool) -> bool:
    reference = question.get("reference") or []
    return needs_reference(question) and len(reference) >= (2 if multi_turn else 1)


def single_calls(prompts: dict, question: dict, turn_outputs: list[str], max_tokens: int,
                 fast: bool = False) -> list[tuple[int, str, LabelledCall]]:
    """(turn, prompt name, call) for each turn FastChat grades: 1, and 2 for two-turn questions.
    A turn whose answer is missing ("") is still graded, as FastChat grades an empty answer."""
    turns = question.get("turns") or [question["instruction"]]
    out = []
    for multi_turn in (False, True):
        if multi_turn and len(turns) != 2:
            continue
        answers = list(turn_outputs[:2]) + [""] * (2 - len(turn_outputs[:2]))
        with_ref = _with_ref(question, multi_turn)
        name = SINGLE[(with_ref, multi_turn)]
        record = prompts[name]
        fields = tuple(_fields(question, answers, multi_turn, with_ref))
        call = LabelledCall(system=record["system_prompt"], template=record["prompt_template"], fields=fields,
                            options=RATINGS, protocol=f"mt_bench/{name}", cue="\n\nRating: [[",
                            cut=tuple(k for k, _ in fields if k.startswith(("answer", "ref_answer"))),
                            max_tokens=max_tokens, fast=fast, parser=fastchat_rating)
        out.append((2 if multi_turn else 1, name, call))
    return out


def pair_label(text: str):
    """FastChat's run_judge_pair for `[[A]]` prompts: A, B, C (tie), else None (its "error")."""
    if "[[A]]" in text:
        return "A"
    if "[[B]]" in text:
        return "B"
    if "[[C]]" in text:
        return "C"
    return None


def pair_calls(prompts: dict, question: dict, answers_a: list[str], answers_b: list[str], max_tokens: int,
               fast: bool = False):
    """(turn, prompt name, order, call) for the pairwise mode: both orders ("AB": model a shown
    as Assistant A, "BA": swapped), turn 1 and turn 2. FastChat's pair prompts fill answer_a/b."""
    turns = question.get("turns") or [question["instruction"]]
    out = []
    for multi_turn in (False, True):
        if multi_turn and len(turns) != 2:
            continue
        with_ref = _with_ref(question, multi_turn)
        name = PAIR[(with_ref, multi_turn)]
        record = prompts[name]
        for order, (first, second) in (("AB", (answers_a, answers_b)), ("BA", (answers_b, answers_a))):
            first = list(first[:2]) + [""] * (2 - len(first[:2]))
            second = list(second[:2]) + [""] * (2 - len(second[:2]))
            if multi_turn:
                fields = [("question_1", turns[0]), ("question_2", turns[1]), ("answer_a_1", first[0]),
                          ("answer_a_2", first[1]), ("answer_b_1", second[0]), ("answer_b_2", second[1])]
            else:
                fields = [("question", turns[0]), ("answer_a", first[0]), ("answer_b", second[0])]
            if with_ref:
                fields.append(("ref_answer_1", question["reference"][0]))
                if multi_turn:
                    fields.append(("ref_answer_2", question["reference"][1]))
            call = LabelledCall(system=record["system_prompt"], template=record["prompt_template"],
                                fields=tuple(fields), options=("A", "B", "C"), protocol=f"mt_bench/{name}",
                                cue='\n\nFinal verdict: [[', cut=tuple(k for k, _ in fields if k.startswith(("answer", "ref"))),
                                max_tokens=max_tokens, fast=fast, parser=pair_label)
            out.append((2 if multi_turn else 1, name, order, call))
    return out

