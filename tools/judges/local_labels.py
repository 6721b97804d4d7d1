"""Labelled calls answered by a model in this process (llama_judge.py, hf_judge.py share this).

For a chunk of calls at a time (so a killed run keeps every finished chunk's labels):
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

from judges.labels import RESERVE, chain_probs, fit_call, label_position, option_paths, path_nodes, result_from_probs

CHUNK = 32  # calls per round of explanations + labels


def label_locally(calls, *, room: int, prompt_tokens, encode, generate, score_nodes, chunk: int = CHUNK):
    """Yield (call, result) for every call (labels.py's result records, or {"error"})."""
    for start in range(0, len(calls), chunk):
        yield from _label_chunk(calls[start:start + chunk], room, prompt_tokens, encode, generate, score_nodes)


def _label_chunk(calls, room, prompt_tokens, encode, generate, score_nodes):
    prepared = []  # (call, prompt tokens, truncated)
    for call in calls:
        reserve = RESERVE + (0 if call.fast else min(call.max_tokens, room // 2))
        try:
            shown, truncated = fit_call(call, lambda c: len(prompt_tokens(c.messages())), room - reserve)
            prepared.append((call, prompt_tokens(shown.messages()), truncated))
        except (ValueError, RuntimeError) as err:
            yield call, {"error": str(err)}
    replies: dict[int, dict] = {}
    todo = [(k, tokens) for k, (call, tokens, _) in enumerate(prepared) if not call.fast]
    if todo:
        max_tokens = max(prepared[k][0].max_tokens for k, _ in todo)
        replies = dict(generate(todo, max_tokens, room - RESERVE))
    plans, node_prompts = {}, []
    for k, (call, tokens, truncated) in enumerate(prepared):
        if call.fast:
            judgment, (prefix, source) = "", (call.cue, "fast")
        else:
            reply = replies.get(k) or {"error": "the judge gave no reply"}
            if "error" in reply:
                yield call, {"error": reply["error"]}
                continue
            judgment = reply["output"]
            prefix, source = label_position(call, judgment)
        head, paths = option_paths(encode, prefix, call.options, call.close)
        longest = max(len(path) for path in paths.values())
        over = len(tokens) + len(head) + longest + 1 - room
        if over > 0:  # the explanation filled the context: its start goes, its conclusion stays
            head = head[over:]
        context = tokens + head
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
