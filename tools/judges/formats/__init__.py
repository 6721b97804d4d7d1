"""Open judges asked in the prompt format they were trained on: `judge_format = "NAME"` in models.toml.

    judge = resolve_judge("skywork_critic_8b", registry, out)   # its table says judge_format = "skywork"
    for call, verdict in judge.judge(calls): ...               # the board's pairwise verdicts

One module per format, each with the prompt text of its model card or official repository (quoted
in the module's docstring) and a `pair_call(instruction, first, second)` that makes the labelled
call (judges/labels.py) asking which of two answers is better, the first shown as A:
- skywork.py: Skywork-Critic-Llama-3.1-8B, answers `[[A]]` / `[[B]]` at once (no explanation);
- selene.py: Atla Selene-1-Mini-Llama-3.1-8B, "**Reasoning:** ..." then "**Result:** A";
- prometheus.py: Prometheus-7B-v2.0, relative grading "Feedback: ... [RESULT] A"; its absolute
  grading (1-5 with a rubric) as `absolute_call` too.
FormatJudge wraps the model's local judge (llama.cpp or transformers: the label is read from the
logits, judges/local_labels.py): the explanation, when the format has one, is written greedily,
then P(A) and P(B) are read where the format puts the verdict; the verdict is the board's
preference, 1 + P(B) (1 = the first answer better, 2 = the second). Verdicts are cached under
the judge's identity, which names the format and its prompt's hash.
`label(calls)` (the graded protocols' calls, FastChat's or Arena-Hard's prompts) goes to the model
as it is: those protocols keep their own prompts. Not handled: API judges (an openai endpoint
serving one of these models: declare it without judge_format), ties (none of these formats'
pairwise verdicts has one).
"""
from __future__ import annotations

import importlib
import json

from judges.identity import sha256_text
from lib.registry import JUDGE_FORMATS as FORMATS  # the registry checks judge_format against these


def format_module(name: str):
    """The module of format `name` (models.toml's judge_format, checked by the registry)."""
    if name not in FORMATS:
        raise ValueError(f"judge_format '{name}' is unknown; use one of: {', '.join(FORMATS)}")
    return importlib.import_module(f"judges.formats.{name}")


class FormatJudge:
    """A local judge asked in its own format: the same `judge(calls)` as the board's judges."""

    def __init__(self, inner, format_name: str):
        self.inner, self.format = inner, format_module(format_name)
        inner.verdict_words = False  # its labels are the format's, not the board's m / M
        self.name, self.kind, self.concurrency = inner.name, inner.kind, inner.concurrency
        self.identity = {**inner.identity, "protocol": f"format:{format_name}-{self.format.VERSION}",
                         "prompt_sha256": sha256_text(self.format.PROMPT)}

    @property
    def judge_id(self) -> str:
        return sha256_text(json.dumps(self.identity, sort_keys=True, ensure_ascii=False))[:16]

    @property
    def protocol(self) -> str:
        return self.identity["protocol"]

    @property
    def last_stats(self) -> dict:
        return self.inner.last_stats

    @property
    def spec(self):
        return self.inner.spec

    def judge(self, calls):
        labelled: dict = {}  # labelled call -> the board's calls it answers (equal texts: one call)
        for call in calls:
            labelled.setdefault(self.format.pair_call(call.instruction, call.first, call.second), []).append(call)
        for lcall, result in self.inner.label(list(labelled)):
            verdict = {"error": result["error"]} if "error" in result else verdict_from_label(result)
            for call in labelled[lcall]:
                yield call, verdict

    def label(self, calls):
        yield from self.inner.label(calls)

    def secrets(self) -> list[str]:
        return self.inner.secrets()

    def close(self) -> None:
        self.inner.close()


def verdict_from_label(result: dict) -> dict:
    """The board's verdict from a pairwise label record: 1 + P(B), soft (P over A and B)."""
    p_b = result["probs"]["B"]
    verdict = {"preference": 1.0 + p_b, "soft": True, "probs": result["probs"], "label": result["label"],
               "source": result["source"]}
    if result.get("judgment"):
        verdict["judgment"] = result["judgment"]
    for key in ("mass", "truncated", "written"):
        if result.get(key) is not None:
            verdict[key] = result[key]
    return verdict
