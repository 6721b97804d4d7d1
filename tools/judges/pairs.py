"""Pairs of answers judged in both orders, and how the two verdicts combine.

A *pair* (a model's answer and the reference's to one question) is judged twice, the model's
answer shown first and then second, and the two are combined: soft verdicts averaged, so
discrete verdicts that disagree make a tie. Identical answers are a tie without a call.
Does not handle: pairs of two models (only model vs reference), several judges.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from judges.cache import Call, judge_calls


@dataclass
class Pair:
    """A model's answer and the reference's to one question."""
    model: str
    instruction: str
    model_output: str
    reference_output: str
    question_id: int = 0

    @property
    def identical(self) -> bool:
        return self.model_output.strip() == self.reference_output.strip()

    def calls(self) -> tuple[Call, Call]:
        return (Call(self.instruction, self.model_output, self.reference_output),  # model first
                Call(self.instruction, self.reference_output, self.model_output))  # reference first


def combine(pref_model_first: float, pref_reference_first: float) -> tuple[float, bool]:
    """Both orders -> (alpaca_eval preference with the reference as output_1 and the model as
    output_2: 1 reference better, 2 model better, 1.5 tie; whether the two orders agree)."""
    won_a = 2 - as_pref(pref_model_first)  # P(model better), model shown first
    won_b = as_pref(pref_reference_first) - 1  # P(model better), model shown second
    agree = _side(won_a) == _side(won_b)
    return 1 + (won_a + won_b) / 2, agree


def as_pref(value: float) -> float:
    return 1.5 if value == 0 else float(value)  # alpaca_eval writes 0 for a draw


def _side(p_model: float) -> int:
    return 0 if abs(p_model - 0.5) < 1e-9 else (1 if p_model > 0.5 else -1)


def judge_pairs(judge, pairs: list[Pair], out_dir: Path, progress=None):
    """One result per pair: both verdicts, the combined preference (None when a call failed),
    and whether the orders agree (None for identical answers); and the CallStats."""
    calls = [c for p in pairs if not p.identical for c in p.calls()]
    verdicts, stats = judge_calls(judge, calls, out_dir, progress)
    results = []
    for pair in pairs:
        result = {"model": pair.model, "question_id": pair.question_id, "instruction": pair.instruction,
                  "model_output": pair.model_output, "reference_output": pair.reference_output,
                  "identical": pair.identical, "pref_model_first": None, "pref_reference_first": None,
                  "preference": None, "consistent": None, "n_calls": 0, "n_failed": 0}
        if pair.identical:
            result["preference"] = 1.5
        else:
            got = [verdicts.get(c) for c in pair.calls()]
            result["n_calls"] = 2
            result["n_failed"] = sum(v is None for v in got)
            result["n_text"] = sum(1 for v in got if v and v.get("source") == "text")  # no logprobs: m/M as written
            if got[0]:
                result["pref_model_first"] = got[0]["preference"]
            if got[1]:
                result["pref_reference_first"] = got[1]["preference"]
            if all(got):
                result["preference"], result["consistent"] = combine(got[0]["preference"], got[1]["preference"])
        results.append(result)
    return results, stats
