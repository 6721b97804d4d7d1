"""Labelled judge calls: a reply that ends in one label of a fixed set, written as `[[label]]`.

Single-answer grading (MT-Bench's `[[8]]`, AlignBench's overall score) and Arena-Hard's verdicts
(`[[A>>B]]` ... `[[B>>A]]`) are all one kind of call. The API, for a prompt module:

    call = LabelledCall(system="...", template="... {question} ... {answer} ...",
                        fields=(("question", q), ("answer", a)), options=RATINGS,
                        protocol="mt_bench/single-v1", cue="\\n\\nRating: [[", cut=("answer",),
                        parser=fastchat_rating)
    records, stats = label_calls(judge, calls, out_dir)   # {call: record}; failed calls absent
    record["score"]     # the number the board uses (numeric options): expected rating, or the
                        #   written one when no probabilities exist (an API without logprobs)
    record["label"]     # the most likely option (or the written label, API without logprobs)
    record["probs"]     # {option: P} normalized over the options (absent without probabilities)
    record["expected"]  # sum of value(option) * P(option) (numeric options only)
    record["judgment"]  # the judge's full reply text ("" in fast mode)
    record["written"]   # what `parser` read from the reply text (None when nothing parses)
    record["source"]    # "logits": read at the judge's own "[["; "logits-cued": the judge wrote
                        #   no "[[", so `cue` was appended; "fast": no explanation, read right
                        #   after `cue`; "logprobs"/"text": an API judge
    record["mass"]      # local judges: the probability the judge gave the options at all
    record["several_labels"]  # only when the reply wrote different in-scale `[[label]]`s: all of
                        #   them in order (it is still read its protocol's way: FastChat's first)

`call.messages()` is the prompt as [{role, content}] (content = the template with its fields
filled by str.format, as FastChat and Arena-Hard fill theirs, the `data` fields (answers) with
the prompt's verdict syntax and section markers broken: judges/verdict_text.py); judges render the roles
themselves (interface 4): nothing here builds chat markup. `cut` names the fields a local judge may
shorten to fit its context (answers, never the instructions), marking the record `truncated`.

How a judge answers (`judge.label(calls)`, a generator of (call, result) like `judge.judge`):
- local judges (llama_judge.py, hf_judge.py) write the explanation greedily (at most
  `max_tokens`), then at the label position (just after the first `[[` that the reply follows
  with an option and `]]`, else its last `[[`, else after `cue` appended to the reply) read
  P(option) for every option from the logits: P(option + "]]" | text so far), chained over the
  tokens of options that are several tokens ("10" after "1"), normalized over the options.
  They never fail to give a label. `fast=True` skips the explanation: the label right after `cue`.
- API judges (api_judge.py) parse the text with `parser` (FastChat's `[[N]]` then `[N]` by
  default, read as a number: `[[07]]` is 7, where FastChat's ast.literal_eval raises); no label,
  a label outside the call's scale (`[[0]]`, `[[11]]`: `out_of_scale`) or a parser that cannot
  read the reply = the call failed (`{"error", "unparsed": True}`): counted, not cached,
  retried by the next run, never averaged in. With logprobs, the options' probabilities at the
  label position are used as above (single-token options, plus the chain the reply wrote).
Results are cached in OUT/judge/labels.jsonl keyed by the judge's weights/API identity, the
messages, options, cue, mode and this module's PROTOCOL: a new judge or prompt never reuses them.
Does not handle: labels without the `[[`/`]]` brackets; several labels per reply (a prompt
module's parser may refuse those: Arena-Hard's conflicting verdicts).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from judges.cache import CallStats, VerdictCache, judge_calls
from judges.identity import sha256_text
from judges.verdict_text import break_markup, template_markers

PROTOCOL = "label-v2"  # bump when the way a label is read changes: old records are not reused
OPEN, CLOSE = "[[", "]]"
RATINGS = tuple(str(k) for k in range(1, 11))
RESERVE = 32  # tokens kept free after the explanation: the cue and the label
CUT_MARK = "\n[... cut to fit the judge's context]"

# FastChat's llm_judge/common.py patterns, applied as its run_judge_single applies them.
ONE_SCORE = re.compile(r"\[\[(\d+\.?\d*)\]\]")
ONE_SCORE_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")


BRACKETED = re.compile(r"\[\[([^\[\]\n]{1,20}?)\]\]")  # every `[[...]]` a reply writes (13: flagged when they differ)


def number(text: str):
    """A written rating as a number: int for digits ("07" is 7), float for "8.5" or "7."; None
    when it is not one. FastChat reads it with ast.literal_eval, which raises on "07" (and would
    abort the whole board): here that is a 7, and anything else unreadable is no rating."""
    try:
        return int(text) if text.isdigit() else float(text)
    except ValueError:
        return None


def fastchat_rating(text: str):
    """FastChat's rating: `[[N]]`, else `[N]` (the first match), as a number (number());
    None where FastChat would write -1."""
    match = ONE_SCORE.search(text) or ONE_SCORE_BACKUP.search(text)
    return number(match.groups()[0]) if match else None


@dataclass(frozen=True)
class LabelledCall:
    """One prompt whose reply ends in `[[option]]`; hashable, the cache key is its content."""
    system: str
    template: str
    fields: tuple[tuple[str, str], ...]
    options: tuple[str, ...] = RATINGS
    protocol: str = ""          # the prompt module's name for this prompt (in the cache key)
    cue: str = "\n\nRating: [["  # appended where the judge wrote no "[["; must end with OPEN
    cut: tuple[str, ...] = ()   # fields a local judge may shorten to fit its context
    max_tokens: int = 1024      # the explanation's bound
    fast: bool = False          # read the label without an explanation
    parser: Callable[[str], object] = field(default=fastchat_rating, compare=False, hash=False, repr=False)
    # Where the label sits: after `open`, followed by `close` (a judge format's own markers, e.g.
    # "**Result:** " and nothing: judges/formats/); the cue must then end with `open`.
    open: str = OPEN
    close: str = CLOSE
    data: tuple[str, ...] = ()  # fields holding a model's text: shown with verdict syntax broken
    markers: tuple[str, ...] = ()  # section markers a prompt module puts in field values itself

    def shown_fields(self) -> dict[str, str]:
        """The fields as the judge sees them: the `data` ones without the prompt's verdict
        syntax or section markers (judges/verdict_text.py), the others as given."""
        own = (self.open.strip(),) if self.open != OPEN and len(self.open.strip()) > 2 else ()  # "[RESULT]"
        markers = template_markers(self.template, self.markers + own)
        numeric = self.values() is not None
        return {k: break_markup(v, markers, numeric) if k in self.data else v for k, v in self.fields}

    def carries_markup(self) -> bool:
        """Whether one of its answers held verdict syntax or a section marker (the board warns)."""
        return self.shown_fields() != dict(self.fields)

    def messages(self) -> list[dict]:
        content = self.template.format(**self.shown_fields())
        return ([{"role": "system", "content": self.system}] if self.system else []) + \
               [{"role": "user", "content": content}]

    def values(self) -> list[float] | None:
        """Each option as a number, or None when an option is not one (Arena-Hard's labels)."""
        try:
            return [float(o) for o in self.options]
        except ValueError:
            return None

    def key(self, judge_id: str) -> str:
        parts = [judge_id, PROTOCOL, self.protocol, self.messages(), self.options, self.cue, self.max_tokens, self.fast]
        if (self.open, self.close) != (OPEN, CLOSE):  # the brackets' calls keep the keys they had
            parts.append([self.open, self.close])
        blob = json.dumps(parts, ensure_ascii=False)
        return sha256_text(blob)[:32]

    def shortened(self, scale: float) -> "LabelledCall":
        """The call with its `cut` fields kept to `scale` of their length (marked where cut)."""
        from dataclasses import replace

        fields = tuple((name, cut_text(value, scale) if name in self.cut else value) for name, value in self.fields)
        return replace(self, fields=fields)


def cut_text(text: str, scale: float) -> str:
    keep = int(len(text) * min(scale, 1.0))
    if keep >= len(text):
        return text
    return text[:max(keep - len(CUT_MARK), 0)] + CUT_MARK


def fit_call(call: LabelledCall, count: Callable[[LabelledCall], int], budget: int) -> tuple[LabelledCall, bool]:
    """(call as shown, truncated?): its `cut` fields shortened until count(call) <= budget;
    ValueError when even empty fields do not fit."""
    n = count(call)
    if n <= budget:
        return call, False
    fixed = count(call.shortened(0.0)) if call.cut else n
    if fixed > budget:
        raise ValueError(f"the prompt without its answers is {fixed} tokens, more than the judge's room ({budget}); "
                         "raise the judge's n_ctx")
    scale = 1.0
    for _ in range(8):
        scale *= max(budget - fixed, 16) / max(n - fixed, 1) * 0.95
        shown = call.shortened(scale)
        n = count(shown)
        if n <= budget:
            return shown, True
    raise ValueError(f"the prompt does not fit the judge's room ({budget} tokens); raise the judge's n_ctx")


def label_position(call: LabelledCall, text: str) -> tuple[str, str]:
    """(the reply up to and including the label's open bracket, source): the first `[[` that
    the reply follows with an option and `]]`, else its last `[[`, else the reply + `cue`
    (`[[` and `]]`: the call's `open` and `close`)."""
    start = 0
    while (pos := text.find(call.open, start)) >= 0:
        after = text[pos + len(call.open):]
        if any(after.startswith(o + call.close) for o in call.options):
            return text[:pos + len(call.open)], "logits"
        start = pos + 1
    last = text.rfind(call.open)
    if last >= 0:
        return text[:last + len(call.open)], "logits"
    return text + call.cue, "logits-cued"


def option_paths(encode: Callable[[str], list[int]], prefix: str, options: tuple[str, ...], close: str = CLOSE):
    """(context tokens of `prefix`, {option: tokens after the context}): each option's tokens are
    those of prefix + option + `close` ("]]") past the context (the boundary re-tokenized when a token
    spans it), so P(option) = the product of those tokens' conditional probabilities."""
    base = encode(prefix)
    full = {o: encode(prefix + o + close) for o in options}
    keep = len(base)
    for tokens in full.values():
        k = 0
        while k < min(keep, len(tokens)) and tokens[k] == base[k]:
            k += 1
        keep = k
    return base[:keep], {o: tokens[keep:] for o, tokens in full.items()}


def path_nodes(paths: dict[str, list[int]]) -> list[tuple[int, ...]]:
    """Every prefix of every option's tokens whose next-token probabilities the chain needs."""
    nodes = {tuple(tokens[:j]) for tokens in paths.values() for j in range(len(tokens))}
    return sorted(nodes, key=lambda node: (len(node), node))


def chain_probs(paths: dict[str, list[int]], logprob: Callable[[tuple[int, ...], int], float]):
    """({option: P normalized over the options}, raw mass) from logprob(node, next token)."""
    raw = {}
    for option, tokens in paths.items():
        raw[option] = math.exp(sum(logprob(tuple(tokens[:j]), tokens[j]) for j in range(len(tokens))))
    mass = sum(raw.values())
    if mass <= 0:  # every option underflowed: uniform says "no information", honestly
        return {o: 1 / len(raw) for o in raw}, 0.0
    return {o: p / mass for o, p in raw.items()}, mass


def result_from_probs(call: LabelledCall, probs: dict[str, float], judgment: str, source: str,
                      mass: float | None = None, truncated: bool = False) -> dict:
    """A local (or logprobs) result: the most likely option, the expected value, the written one."""
    label = max(call.options, key=lambda o: probs.get(o, 0.0))
    result = {"label": label, "probs": {o: round(probs.get(o, 0.0), 6) for o in call.options},
              "judgment": judgment, "written": parse_written(call, judgment) if judgment else None, "source": source}
    several = written_labels(call, judgment)
    if len(several) > 1:
        result["several_labels"] = several
    values = call.values()
    if values is not None:
        result["expected"] = sum(v * probs.get(o, 0.0) for v, o in zip(values, call.options))
        result["score"] = result["expected"]
    if mass is not None:
        result["mass"] = round(mass, 6)
    if truncated:
        result["truncated"] = True
    return result


def parse_written(call: LabelledCall, text: str):
    """The call's parser on `text`; None (no label) when the parser cannot read it at all."""
    try:
        return call.parser(text)
    except (ValueError, SyntaxError, TypeError, ArithmeticError):  # a prompt module's parser, whatever it meets
        return None


def in_scale(call: LabelledCall, written) -> bool:
    """Whether a written label is one the call allows: a number within the numeric options'
    range (MT-Bench's 8.5 is; 0, 11 and 100 are not), else one of the options."""
    values = call.values()
    if values is None:
        return str(written) in call.options
    if isinstance(written, bool) or not isinstance(written, (int, float)):
        return False
    return min(values) <= written <= max(values)


def written_labels(call: LabelledCall, text: str) -> list:
    """Every different label the reply writes as `[[label]]` within the call's scale, in order
    (numbers as floats). More than one: the reply disagrees with itself (a judge quoting an
    answer's `[[10]]` before its own `[[2]]`); the parser still reads it its protocol's way
    (FastChat: the first), and the record is flagged `several_labels`."""
    found: list = []
    for raw in BRACKETED.findall(text or ""):
        raw = raw.strip()
        value = number(raw) if call.values() is not None else raw
        if value is None or not in_scale(call, value):
            continue
        value = float(value) if call.values() is not None else value
        if value not in found:
            found.append(value)
    return found


def result_from_text(call: LabelledCall, text: str) -> dict:
    """An API reply without probabilities: the parser's label, or a failed (unparsed) call, also
    when the label is outside the call's scale (`[[0]]`, `[[11]]`: never averaged in)."""
    written = parse_written(call, text)
    if written is None:
        return {"error": f"no label in the reply ({call.protocol}): {text[-80:]!r}", "unparsed": True,
                "judgment": text}
    if not in_scale(call, written):
        return {"error": f"label {written!r} outside the scale {call.options[0]}-{call.options[-1]} "
                         f"({call.protocol}): {text[-80:]!r}", "unparsed": True, "out_of_scale": True, "judgment": text}
    result = {"label": str(written), "judgment": text, "written": written, "source": "text"}
    several = written_labels(call, text)
    if len(several) > 1:
        result["several_labels"] = several
    if isinstance(written, (int, float)) and not isinstance(written, bool):
        result["score"] = float(written)
    return result


def result_from_logprobs(call: LabelledCall, text: str, content: list[dict]) -> dict:
    """An API reply with per-token top logprobs (OpenAI's `logprobs.content`): the options'
    probabilities at the label position, where the reply wrote `[[`; else the text alone."""
    written = result_from_text(call, text)
    if "error" in written or not content:
        return written
    pieces = [c.get("token") or "" for c in content]
    seen = ""
    for k, piece in enumerate(pieces):
        if seen.endswith(call.open) and (seen + piece).startswith(label_position(call, text)[0]):
            probs = _api_option_probs(call, content, k)
            if probs:
                result = result_from_probs(call, probs, text, "logprobs")
                result["written"] = written["written"]
                return result
            break
        seen += piece
    return written


def _api_option_probs(call: LabelledCall, content: list[dict], k: int) -> dict[str, float]:
    """P(option) at token k from its top logprobs: an option that is one token there, or the
    chain the reply itself wrote (its tokens k, k+1, ...) for a longer one."""
    top = {t.get("token"): math.exp(t.get("logprob", -math.inf)) for t in content[k].get("top_logprobs") or []}
    probs = {o: top[o] for o in call.options if o in top}
    written, p, j = "", 1.0, k
    while j < len(content) and len(written) < max(len(o) for o in call.options):
        step = {t.get("token"): math.exp(t.get("logprob", -math.inf)) for t in content[j].get("top_logprobs") or []}
        token = content[j].get("token") or ""
        p *= step.get(token, math.exp(content[j].get("logprob", -math.inf)))
        written += token
        if written in call.options and written not in probs:
            probs[written] = p
        j += 1
    total = sum(probs.values())
    return {o: v / total for o, v in probs.items()} if total > 0 else {}


class LabelCache(VerdictCache):
    """OUT/judge/labels.jsonl: one line per labelled call (VerdictCache's append-only file)."""

    def valid(self, record: dict) -> bool:
        return isinstance(record.get("label"), str)


def label_judge_id(judge) -> str:
    """The judge's identity without its pairwise prompt and protocol: weights or API endpoint."""
    identity = {k: v for k, v in judge.identity.items() if k not in ("prompt_sha256", "protocol")}
    return sha256_text(json.dumps(identity, sort_keys=True, ensure_ascii=False))[:16]


def label_calls(judge, calls: list[LabelledCall], out_dir: Path, progress=None, quiet: bool | None = None):
    """({call: record} for the calls with a label, CallStats), asking `judge.label` only for the
    calls the cache lacks; the same loop, progress bar and failure rules as judge_calls."""
    if not hasattr(judge, "label"):
        from judges.cache import JudgeError
        raise JudgeError(f"judge '{judge.name}' ({judge.kind or 'annotator'}) cannot grade: use a models.toml judge "
                         "(llama.cpp, transformers or openai)")
    path = Path(out_dir) / "judge" / "labels.jsonl"
    return judge_calls(judge, calls, out_dir, progress, quiet, cache=LabelCache(path), ask=judge.label,
                       judge_id=label_judge_id(judge), estimate=lambda n: expected_time(judge, calls, n, out_dir))


def expected_time(judge, calls: list[LabelledCall], n: int, out_dir: Path) -> str | None:
    """"about N min at the rate make bench-judge measured ...": from OUT/bench_judge.json's rows
    for labelled calls with this judge's weights (the row of the same benchmark when there is
    one); None when nothing was measured for it."""
    from judges.bench_rates import labelled_rate

    spec = getattr(judge, "spec", None)
    if spec is None or getattr(spec, "path", None) is None or not calls:
        return None
    row = labelled_rate(Path(out_dir) / "bench_judge.json", Path(spec.path).name, calls[0].protocol.split("/")[0])
    if row is None:
        return None
    seconds = n / row["calls_per_s"]
    when = f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"
    return (f"about {when} at the {row['calls_per_s']:.2f} calls/s make bench-judge measured for {row['set']} "
            f"({row['machine']}, {row['date']}, explanations up to {row['max_tokens']} tokens; these allow "
            f"{max(c.max_tokens for c in calls)})")


__all__ = ["LabelledCall", "RATINGS", "fastchat_rating", "label_calls", "CallStats"]
