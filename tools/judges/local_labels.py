"""Labelled calls answered by a model in this process (llama_judge.py, hf_judge.py share this).

One decode per call (`stream` given, the default): the judge's engine writes each explanation
and reads the label from the state it left behind (backends/llama_label.py, hf_judge.py's past
key values), yielding each call the moment its label is read, so a killed run loses only the
calls in flight. `plan` below turns the judgment's text into the label's context and the option
paths' prefixes (the same context as the two-pass path, so the same numbers).

The two-pass path (LLMEVAL_LABEL_PATH=two-pass, kept for comparison and for make bench-judge),
for a chunk of calls at a time:
1. each call's prompt is tokenized by the judge's own chat template (`prompt_tokens(messages)`),
   its `cut` fields shortened first when the prompt and the explanation would not fit `room`;
2. the judge writes its explanations greedily, all of the chunk decoded together
   (`generate(prompts, max_tokens, limit)`; none in fast mode);
3. the label position is found (labels.label_position) and, for every option, the tokens of
   option + "]]" after it (labels.option_paths); every prefix of those paths is one prompt
   `score_nodes(prompts, token_ids, n_calls)` gives the logits (and log-sum-exp) at the end of:
   the paths of one call share all but a few tokens, so a scorer with at most n_calls slots
   decodes each call's text about once;
4. P(option) is the chain of those conditional probabilities, normalized over the options.
A call that fails (its prompt cannot fit, decoding fails) is {"error"}; the rest go on.
Does not handle: sampling the explanation (always greedy, as FastChat asks its judges at
temperature 0), stop strings (the judge stops at its end-of-turn token or max_tokens).
"""
from __future__ import annotations

import os

from judges.labels import RESERVE, chain_probs, fit_call, label_position, option_paths, path_nodes, result_from_probs

CHUNK = 32  # calls per round of explanations + labels (the two-pass path)


def two_pass() -> bool:
    """LLMEVAL_LABEL_PATH=two-pass: decode each prompt again to read its label (the old path)."""
    return os.environ.get("LLMEVAL_LABEL_PATH", "").strip().lower() == "two-pass"  # "reuse": llama_label.py


def label_locally(calls, *, room: int, prompt_tokens, encode, generate=None, score_nodes=None, stream=None,
                  chunk: int = CHUNK):
    """Yield (call, result) for every call (labels.py's result records, or {"error"}).
    `stream(jobs)`: the one-decode engine (module docstring); else `generate` + `score_nodes`."""
    if stream is not None and not two_pass():
        yield from _label_streamed(calls, room, prompt_tokens, encode, stream)
        return
    for start in range(0, len(calls), chunk):
        yield from _label_chunk(calls[start:start + chunk], room, prompt_tokens, encode, generate, score_nodes)


def _prepare(calls, room, prompt_tokens, prepared):
    """Fill `prepared` with (call, prompt tokens, truncated); yield the calls that cannot fit."""
    for call in calls:
        reserve = RESERVE + (0 if call.fast else min(call.max_tokens, room // 2))
        try:
            shown, truncated = fit_call(call, lambda c: len(prompt_tokens(c.messages())), room - reserve)
            prepared.append((call, prompt_tokens(shown.messages()), truncated))
        except (ValueError, RuntimeError) as err:
            yield call, {"error": str(err)}


def label_context(call, tokens: list[int], judgment: str, encode, room: int):
    """(context tokens, {option: path tokens}, source): where the label is read after the
    judgment, as both paths read it (the explanation's start dropped when it filled the room)."""
    if call.fast:
        prefix, source = call.cue, "fast"
    else:
        prefix, source = label_position(call, judgment)
    head, paths = option_paths(encode, prefix, call.options, call.close)
    longest = max(len(path) for path in paths.values())
    over = len(tokens) + len(head) + longest + 1 - room
    if over > 0:  # the explanation filled the context: its start goes, its conclusion stays
        head = head[over:]
    return tokens + head, paths, source


def _label_streamed(calls, room, prompt_tokens, encode, stream):
    prepared = []
    yield from _prepare(calls, room, prompt_tokens, prepared)
    plans = {}

    def planner(k):
        call, tokens, _ = prepared[k]

        def plan(judgment: str):
            context, paths, source = label_context(call, tokens, judgment, encode, room)
            plans[k] = (paths, source)
            children: dict[tuple, set] = {}
            for path in paths.values():
                for j in range(len(path)):
                    children.setdefault(tuple(path[:j]), set()).add(path[j])
            return context, children
        return plan

    jobs = [(k, tokens, 0 if call.fast else call.max_tokens, planner(k))
            for k, (call, tokens, _) in enumerate(prepared)]
    for k, result in stream(jobs):
        call, _, truncated = prepared[k]
        if "error" in result:
            yield call, {"error": result["error"]}
            continue
        paths, source = plans.pop(k)
        rows = result["rows"]
        probs, mass = chain_probs(paths, lambda node, token: rows[node][token])
        judgment = "" if call.fast else result["judgment"]
        record = result_from_probs(call, probs, judgment, source, mass, truncated)
        record["_generated"] = result.get("tokens", 0)  # for the progress bar; not cached
        yield call, record


def _label_chunk(calls, room, prompt_tokens, encode, generate, score_nodes):
    prepared = []  # (call, prompt tokens, truncated)
    yield from _prepare(calls, room, prompt_tokens, prepared)
    replies: dict[int, dict] = {}
    todo = [(k, tokens) for k, (call, tokens, _) in enumerate(prepared) if not call.fast]
    if todo:
        max_tokens = max(prepared[k][0].max_tokens for k, _ in todo)
        replies = dict(generate(todo, max_tokens, room - RESERVE))
    plans, node_prompts = {}, []
    for k, (call, tokens, truncated) in enumerate(prepared):
        if call.fast:
            judgment = ""
        else:
            reply = replies.get(k) or {"error": "the judge gave no reply"}
            if "error" in reply:
                yield call, {"error": reply["error"]}
                continue
            judgment = reply["output"]
        context, paths, source = label_context(call, tokens, judgment, encode, room)
        first = len(node_prompts)
        nodes = path_nodes(paths)
        node_prompts += [(first + j, context + list(node)) for j, node in enumerate(nodes)]
        plans[k] = (first, nodes, paths, judgment, source)
    token_ids = sorted({t for _, _, paths, _, _ in plans.values() for path in paths.values() for t in path})
    column = {t: j for j, t in enumerate(token_ids)}
    scored = dict(score_nodes(node_prompts, token_ids, len(plans))) if node_prompts else {}
    for k, (first, nodes, paths, judgment, source) in plans.items():
        call, _, truncated = prepared[k]
        rows = {node: scored.get(first + j, {"error": "not scored"}) for j, node in enumerate(nodes)}
        failed = next((row["error"] for row in rows.values() if "error" in row), None)
        if failed:
            yield call, {"error": failed}
            continue

        def logprob(node, token, rows=rows):
            row = rows[node]
            return row["logits"][column[token]] - row["logsumexp"]

        probs, mass = chain_probs(paths, logprob)
        yield call, result_from_probs(call, probs, judgment, source, mass, truncated)
