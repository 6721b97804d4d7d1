"""The judge's question and how its answer is read.

Every judge of ours (llama.cpp, transformers, an OpenAI-compatible API) asks alpaca_eval's
weighted_alpaca_eval_gpt4_turbo question: which output is better, `m` (shown first) or `M`
(shown second), for one token. The verdict is alpaca_eval's preference: 1 = the first is better,
2 = the second, in between for a soft verdict: 2 - P(m) / (P(m) + P(M)).
The question and the answers are data: make_messages fills them into the template's own messages
(split first), so they are never its markup; judges tokenize the messages with chat_tokens.py.
neutralise() breaks markers and placeholders in texts for prompt builders we cannot change
(alpaca_eval's annotators). Answers too long for a local judge's context are cut (both, the
longer more) until the prompt fits, and the verdict is marked `truncated`.
Does not handle: multi-turn questions.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Callable

CUT_MARK = "\n[... cut to fit the judge's context]"
VERDICT_TOKENS = ("m", "M")
CHATML_MARKERS = ("<|im_start|>", "<|im_end|>")  # what alpaca_eval's prompt_to_chatml splits on
ZWSP = "\u200b"
PLACEHOLDER = re.compile(r"{([^ \s]+?)}")  # alpaca_eval's make_prompts


def alpaca_eval_configs_dir() -> Path:
    from lib.benchsets import alpaca_eval_dir

    return alpaca_eval_dir() / "evaluators_configs"


def prompt_template() -> str:
    """alpaca_eval's prompt for weighted_alpaca_eval_gpt4_turbo: 'which is better, m or M?'."""
    path = alpaca_eval_configs_dir() / "alpaca_eval_clf_gpt4_turbo" / "alpaca_eval_clf.txt"
    return path.read_text(encoding="utf-8")


def make_messages(call, template: str) -> list[dict]:
    """alpaca_eval's chat messages for one call, with the data only ever as content.

    The template alone is split into its messages on its own chatml markers (alpaca_eval's
    prompt_to_chatml), then each message's placeholders are filled, the first occurrence of each
    in the template as alpaca_eval's make_prompts does, in one pass: so a `<|im_end|>` or an
    `{output_2}` in a question or an answer stays text in its message and can neither end a
    message, start one, nor be filled; an output's triple quotes or `## Task` are broken by a zero-width
    space (verdict_text.break_pairwise), so it cannot close its quotes or open a section. For data
    without those strings the messages are exactly alpaca_eval's (fill, then split)."""
    from alpaca_eval.utils import prompt_to_chatml

    from judges.verdict_text import break_pairwise

    # the outputs with the template's section markers broken (verdict_text.py): none can close its quotes
    values = {"instruction": call.instruction, "output_1": break_pairwise(call.first),
              "output_2": break_pairwise(call.second)}
    unfilled = dict(values)

    def fill(match: re.Match) -> str:
        name = match.group(1)
        return unfilled.pop(name) if name in unfilled else match.group(0)
    messages = []
    for message in prompt_to_chatml(template):
        # .strip(): alpaca_eval strips each message after filling it
        messages.append({**message, "content": PLACEHOLDER.sub(fill, message["content"]).strip()})
    return messages


def neutralise(text: str, names=("instruction", "output_1", "output_2")) -> str:
    """`text` for a prompt builder we cannot change (alpaca_eval's annotators fill the template with
    str.replace and split the result on chatml markers): a zero-width space after the `<` of
    `<|im_start|>` / `<|im_end|>` and after the `{` of a placeholder `{name}`, so neither is found
    in it. The text reads the same; the judge sees one invisible character more per marker."""
    for marker in CHATML_MARKERS:
        text = text.replace(marker, marker[0] + ZWSP + marker[1:])
    for name in names:
        text = text.replace("{" + name + "}", "{" + ZWSP + name + "}")
    return text


def preference_from_logits(logit_m: float, logit_M: float) -> float:
    """2 - P(m) with P(m) = softmax over the two tokens; no overflow for any gap."""
    p_m = 1 / (1 + math.exp(max(min(logit_M - logit_m, 700), -700)))
    return 2 - p_m


def verdict_token_ids(encode: Callable[[str], list[int]]) -> list[int]:
    """The token id of `m` and of `M` in a local judge's vocabulary (`encode`: word -> ids);
    ValueError when one is not a single token (the verdict needs exactly one logit each)."""
    ids = []
    for word in VERDICT_TOKENS:
        got = encode(word)
        if len(got) != 1:
            raise ValueError(f"'{word}' is {len(got)} tokens in its vocabulary, not one; pick another judge")
        ids.append(got[0])
    return ids


def verdict_from_logits(logit_m: float, logit_M: float, truncated: bool) -> dict:
    """A local judge's verdict (protocol logits-v2) from the two verdict tokens' logits."""
    verdict = {"preference": preference_from_logits(logit_m, logit_M), "soft": True,
               "logits": {"m": round(logit_m, 4), "M": round(logit_M, 4)}}
    if truncated:
        verdict["truncated"] = True
    return verdict


def written_verdict(text: str) -> str | None:
    """The identifier a reply wrote: `m` or `M`, alone but for spaces, quotes, backticks, bold
    stars or a full stop around it (`**M**`, `"m".`); None for anything else."""
    word = text.strip().strip("\"'`*.:").strip()
    return word if word in VERDICT_TOKENS else None


def parse_logprob_reply(reply: dict) -> dict:
    """A chat completion with top logprobs -> {"preference", "soft", "source"}, or {"error"}.
    With the verdict tokens among the logprobs, the soft verdict (`source: logprobs`); without
    them (an endpoint that gives no logprobs: reasoning models, gateways, proxies to other APIs),
    the label written in the reply, `m` or `M`, as a hard verdict (`source: text`)."""
    try:
        choice = reply["choices"][0]
        text = (choice.get("message") or {}).get("content") or ""
        content = ((choice.get("logprobs") or {}).get("content") or [{}])
        top = content[0].get("top_logprobs") or []
    except (KeyError, IndexError, TypeError, AttributeError):
        return {"error": f"unexpected reply: {json.dumps(reply)[:200]}"}
    logprobs = {t.get("token"): t.get("logprob") for t in top if t.get("token") in VERDICT_TOKENS}
    if logprobs:
        lm, lM = logprobs.get("m", -math.inf), logprobs.get("M", -math.inf)
        pref = preference_from_logits(lm, lM) if lm > -math.inf else 2.0
        return {"preference": pref, "soft": True, "logprobs": logprobs, "source": "logprobs"}
    written = written_verdict(text)
    if written:  # no logprobs of either: the label the reply wrote
        return {"preference": 1.0 if written == "m" else 2.0, "soft": False, "text": written, "source": "text"}
    return {"error": f"reply is neither 'm' nor 'M': {text[:40]!r}"}


def fit(call, count: Callable[[object], int], budget: int, judge_name: str, n_ctx: int):
    """(call as shown, truncated?): both answers cut (the longer more) until count(call) <= budget."""
    from judges.cache import Call

    n = count(call)
    if n <= budget:
        return call, False
    fixed = count(Call(call.instruction, "", ""))
    scale = 1.0
    for _ in range(8):
        scale *= max(budget - fixed, 16) / max(n - fixed, 1) * 0.95
        shown = Call(call.instruction, cut(call.first, scale), cut(call.second, scale))
        n = count(shown)
        if n <= budget:
            return shown, True
    raise ValueError(f"the question alone does not fit the judge's n_ctx={n_ctx}; raise n_ctx of judge '{judge_name}'")


def cut(text: str, scale: float) -> str:
    keep = int(len(text) * min(scale, 1.0))
    if keep >= len(text):
        return text
    return text[:max(keep - len(CUT_MARK), 0)] + CUT_MARK
