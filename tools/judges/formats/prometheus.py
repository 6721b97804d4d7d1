'''Prometheus-7B-v2.0's formats: relative grading "[RESULT] A/B", and absolute grading 1-5 with a rubric.

Source: github.com/prometheus-eval/prometheus-eval, libs/prometheus-eval/prometheus_eval/prompts.py
(commit dcfb442): REL_SYSTEM_PROMPT with RELATIVE_PROMPT_WO_REF, ABS_SYSTEM_PROMPT with
ABSOLUTE_PROMPT_WO_REF, and HELPFULNESS_RUBRIC; judge.py sends the system prompt and the filled
prompt through FastChat's "mistral" conversation, "[INST] {system}\\n{prompt} [/INST]" (after
the BOS), which models.toml's prometheus_7b entry reproduces as its chat_template. The relative
prompt ends "###Feedback: ", the model writes its feedback and "[RESULT] A" (or B); the absolute
one "... [RESULT] 4". The rubric: the relative prompt is given the first line of the rubric (its
criterion in brackets, as eval/run_evaluate.py does for its pairwise benchmarks), the absolute one
the whole rubric; HELPFULNESS_RUBRIC is the board's (its questions name no criterion).
The feedback is written greedily (at most MAX_TOKENS), then the options' probabilities are read
after its "[RESULT] " (appended when the reply wrote none). Not handled: the prompts with a
reference answer (the board's pairwise protocol has none), prometheus-eval's retries of a reply
that does not parse (a local judge always gives a label).
'''
from __future__ import annotations

import re

from judges.labels import LabelledCall

VERSION = "v1"
MAX_TOKENS = 512
REL_SYSTEM_PROMPT = "You are a fair judge assistant assigned to deliver insightful feedback that compares individual performances, highlighting how each stands relative to others within the same cohort."
ABS_SYSTEM_PROMPT = "You are a fair judge assistant tasked with providing clear, objective feedback based on specific criteria, ensuring each assessment reflects the absolute standards set for performance."
PROMPT = """###Task Description:
An instruction (might include an Input inside it), two responses to evaluate (denoted as Response A and Response B), and an evaluation criteria are given.
1. Write a detailed feedback that assess the quality of the two responses strictly based on the given evaluation criteria, not evaluating in general.
2. Make comparisons between Response A, Response B, and the Reference Answer. Instead of examining Response A and Response B separately, go straight to the point and mention about the commonalities and differences between them.
3. After writing the feedback, indicate the better response, either "A" or "B".
4. The output format should look as follows: "Feedback: (write a feedback for criteria) [RESULT] (Either "A" or "B")"
5. Please do not generate any other opening, closing, and explanations.

###Instruction:
{instruction}

###Response A:
{response_A}

###Response B:
{response_B}

###Score Rubric:
{rubric}

###Feedback: """
ABSOLUTE_PROMPT = """###Task Description:
An instruction (might include an Input inside it), a response to evaluate, and a score rubric representing a evaluation criteria are given.
1. Write a detailed feedback that assess the quality of the response strictly based on the given score rubric, not evaluating in general.
2. After writing a feedback, write a score that is an integer between 1 and 5. You should refer to the score rubric.
3. The output format should look as follows: "(write a feedback for criteria) [RESULT] (an integer number between 1 and 5)"
4. Please do not generate any other opening, closing, and explanations.

###The instruction to evaluate:
{instruction}

###Response to evaluate:
{response}

###Score Rubrics:
{rubric}

###Feedback: """
HELPFULNESS_RUBRIC = """[Does the model provide relevant and useful responses to the user's needs or questions?]
Score 1: The model's responses are irrelevant or unhelpful to the user's needs or queries.
Score 2: The model sometimes provides helpful information, but often fails to address the user's actual needs or questions.
Score 3: The model generally provides helpful responses that address the user's needs, though it may occasionally miss the mark.
Score 4: The model regularly provides helpful responses that are well-aligned with the user's inquiries, with only rare inaccuracies.
Score 5: The model consistently offers highly relevant and useful responses that perfectly cater to the user's needs and inquiries."""
OPEN = "[RESULT] "
SCORES = ("1", "2", "3", "4", "5")
RELATIVE = re.compile(r"\[RESULT\]\s*\(?\s*\"?(A|B)\b")
ABSOLUTE = re.compile(r"\[RESULT\]\s*\(?\s*([1-5])\b")


def parse_relative(text: str):
    """The written verdict after the last "[RESULT]", 'A' or 'B', or None."""
    found = RELATIVE.findall(text)
    return found[-1] if found else None


def parse_absolute(text: str):
    """The written score after the last "[RESULT]", 1-5, or None."""
    found = ABSOLUTE.findall(text)
    return int(found[-1]) if found else None


def pair_call(instruction: str, first: str, second: str, rubric: str = HELPFULNESS_RUBRIC) -> LabelledCall:
    return LabelledCall(system=REL_SYSTEM_PROMPT, template=PROMPT,
                        fields=(("instruction", instruction), ("response_A", first), ("response_B", second),
                                ("rubric", rubric.split("\n")[0])),
                        options=("A", "B"), protocol=f"prometheus/relative-{VERSION}", cue=" " + OPEN,
                        cut=("response_A", "response_B"), max_tokens=MAX_TOKENS, parser=parse_relative,
                        open=OPEN, close="", data=("response_A", "response_B"))


def absolute_call(instruction: str, response: str, rubric: str = HELPFULNESS_RUBRIC) -> LabelledCall:
    """One answer rated 1-5 against `rubric` (the record's `score` is the expected rating)."""
    return LabelledCall(system=ABS_SYSTEM_PROMPT, template=ABSOLUTE_PROMPT,
                        fields=(("instruction", instruction), ("response", response), ("rubric", rubric)),
                        options=SCORES, protocol=f"prometheus/absolute-{VERSION}", cue=" " + OPEN,
                        cut=("response",), max_tokens=MAX_TOKENS, parser=parse_absolute, open=OPEN, close="",
                        data=("response",))
