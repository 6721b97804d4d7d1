"""A transformers judge: the same verdict as the llama.cpp judge, from the logits of `m` and `M`.

The model is loaded by the transformers backend (tools/backends/hf_backend.py: a Hugging Face
folder, or a GGUF that transformers dequantizes; its chat template or the `chat_template` override),
in this process; the prompt is tokenized by chat_tokens.py, so only the template's markup is control
tokens (a `<|im_end|>` in an answer is text). P(first better) = softmax over the two verdict tokens'
logits at a prompt's last position (protocol logits-v2, like llama_judge.py). Prompts go through the
model `parallel` at a time (8 when 0), sorted by length and left-padded, with the position ids and
the attention mask that make each row's numbers those of the prompt alone (up to float rounding),
and only the last position's logits are computed. A batch that fails (out of memory, a model whose
forward takes no position ids) is judged one prompt at a time. Answers too long for n_ctx are cut to
fit (marked `truncated`).
`label(calls)` answers labelled calls (judges/labels.py) in one decode each: the explanation
generated greedily with generate(), the label read from the past key values it returned (cut
back to what the label's context shares with them, the context's tail run after them), then all
prefixes of the options' token paths in one forward pass over copies of that cache; each call
yielded as its label is read. LLMEVAL_LABEL_PATH=two-pass keeps the old path (every context run
again in left-padded batches, judges/local_labels.py).
Does not handle: models with `requirements` (their own virtual environment) or `model_chat`;
sharing prompt prefixes (use a GGUF judge for that).
"""
from __future__ import annotations

import inspect

from judges.base import LocalJudge
from judges.prompt import fit, make_messages, prompt_template, verdict_from_logits
from lib.records import InputError

BATCH = 8  # prompts per forward pass when the model's `parallel` is 0


class HFJudge(LocalJudge):
    kind = "transformers"

    def __init__(self, spec, identity: dict):
        if spec.requirements or spec.model_chat:
            raise InputError(f"judge '{spec.name}': a transformers judge cannot use `requirements` or "
                             "`model_chat` (it needs the logits in this process); pick another JUDGE")
        super().__init__(spec, identity)

    def _open(self):
        from backends.hf_backend import LocalModel

        model = LocalModel(self.spec)
        return model, lambda word: model.tokenizer.encode(word, add_special_tokens=False)

    def ids(self, call, template: str) -> list[int]:
        """The prompt's ids: the chat template's markup as control tokens, the messages' content
        (instructions, question, answers) as plain text (chat_tokens.py)."""
        model = self._load()
        if getattr(self, "chat", None) is None:
            from lib.chat_tokens import for_hf
            self.chat = for_hf(model.tokenizer)
        return self.chat.ids(make_messages(call, template))

    def judge(self, calls):
        self._verdict_ids()
        template = prompt_template()
        prompts = []  # (call, token ids, truncated)
        for call in calls:
            try:
                shown, truncated = fit(call, lambda c: len(self.ids(c, template)), self.spec.n_ctx, self.name,
                                       self.spec.n_ctx)
                prompts.append((call, self.ids(shown, template), truncated))
            except (ValueError, RuntimeError) as err:
                yield call, {"error": f"{type(err).__name__}: {err}"}
        prompts.sort(key=lambda p: len(p[1]))  # neighbours of similar length: little padding
        size = self.spec.parallel or BATCH
        self.last_stats = {"prompts": len(prompts), "forward_passes": 0, "parallel": size}
        for start in range(0, len(prompts), size):
            chunk = prompts[start:start + size]
            try:
                logits = self._last_logits([ids for _, ids, _ in chunk])
            except (RuntimeError, TypeError, ValueError):
                logits = None  # out of memory, or a forward without position ids: one at a time
            for k, (call, ids, truncated) in enumerate(chunk):
                try:
                    lm, lM = logits[k] if logits else self._last_logits([ids])[0]
                except (ValueError, RuntimeError) as err:
                    yield call, {"error": f"{type(err).__name__}: {err}"}
                    continue
                yield call, verdict_from_logits(lm, lM, truncated)

    def label(self, calls):
        """(call, result) for labelled calls (judges/labels.py)."""
        from judges.local_labels import label_locally

        model = self._load()
        torch, tok = model.torch, model.tokenizer

        def prompt_tokens(messages):  # the template's markup as control tokens, content as text
            if getattr(self, "chat", None) is None:
                from lib.chat_tokens import for_hf
                self.chat = for_hf(tok)
            return self.chat.ids(messages)

        def generate(prompts, max_tokens, limit):
            pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
            for k, ids in prompts:
                try:
                    with torch.no_grad():
                        out = model.model.generate(input_ids=torch.tensor([ids], device=model.model.device),
                                                   attention_mask=torch.ones(1, len(ids), dtype=torch.long,
                                                                             device=model.model.device),
                                                   max_new_tokens=max(1, min(max_tokens, limit - len(ids))),
                                                   do_sample=False, pad_token_id=pad)
                    yield k, {"output": tok.decode(out[0][len(ids):], skip_special_tokens=True).strip()}
                except (RuntimeError, ValueError) as err:
                    yield k, {"error": f"{type(err).__name__}: {err}"}

        def score_nodes(prompts, token_ids, n_calls):
            size = self.spec.parallel or BATCH
            for start in range(0, len(prompts), size):
                chunk = prompts[start:start + size]
                try:
                    rows = self._last_rows([ids for _, ids in chunk])
                except (RuntimeError, TypeError, ValueError) as err:
                    for index, _ in chunk:
                        yield index, {"error": f"{type(err).__name__}: {err}"}
                    continue
                for (index, _), row in zip(chunk, rows):
                    yield index, {"logits": [float(row[t]) for t in token_ids],
                                  "logsumexp": float(torch.logsumexp(row.double(), dim=-1))}

        def stream(jobs):
            from judges.labels import RESERVE

            for k, ids, max_tokens, plan in jobs:
                try:
                    yield k, self._label_one(ids, max_tokens, plan, self.spec.n_ctx - RESERVE)
                except (RuntimeError, ValueError, TypeError, IndexError) as err:
                    yield k, {"error": f"{type(err).__name__}: {err}"}

        yield from label_locally(calls, room=self.spec.n_ctx, prompt_tokens=prompt_tokens,
                                 encode=lambda text: tok.encode(text, add_special_tokens=False),
                                 generate=generate, score_nodes=score_nodes, stream=stream)

    def _label_one(self, ids: list[int], max_tokens: int, plan, limit: int) -> dict:
        """One labelled call on the past key values its explanation left (label() above)."""
        model = self.model
        torch, tok, device = model.torch, model.tokenizer, model.model.device
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        past, gen, text = None, [], ""
        with torch.no_grad():
            if max_tokens > 0:
                out = model.model.generate(input_ids=torch.tensor([ids], device=device),
                                           attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=device),
                                           max_new_tokens=max(1, min(max_tokens, limit - len(ids))),
                                           do_sample=False, pad_token_id=pad, return_dict_in_generate=True)
                gen = out.sequences[0][len(ids):].tolist()
                past = out.past_key_values
                text = tok.decode(gen, skip_special_tokens=True).strip()
            context, children = plan(text)
            keep = 0
            if past is not None:
                have = (ids + gen)[:past.get_seq_length()]
                keep = min(_common(have, context), len(context) - 1)
                try:
                    past.crop(keep)
                except (AttributeError, ValueError, RuntimeError):  # a cache that cannot be cut: run it all
                    past, keep = None, 0
            tail = torch.tensor([context[keep:]], device=device)
            kwargs = {"past_key_values": past} if past is not None else {}
            out = model.model(input_ids=tail, use_cache=True, **kwargs)
            rows = {(): _logprobs(torch, out.logits[0, -1], children[()])}
            nodes = [node for node in sorted(children) if node]
            if nodes:
                cache = out.past_key_values
                cache.batch_repeat_interleave(len(nodes))
                width = max(len(node) for node in nodes)
                n = len(context)
                mask = torch.tensor([[1] * (n + len(node)) + [0] * (width - len(node)) for node in nodes], device=device)
                tokens = torch.tensor([list(node) + [pad] * (width - len(node)) for node in nodes], device=device)
                positions = torch.arange(n, n + width, device=device).expand(len(nodes), width)
                logits = model.model(input_ids=tokens, attention_mask=mask, position_ids=positions,
                                     past_key_values=cache, use_cache=True).logits
                for j, node in enumerate(nodes):
                    rows[node] = _logprobs(torch, logits[j, len(node) - 1], children[node])
        return {"judgment": text, "rows": rows, "tokens": len(gen)}

    def _last_logits(self, batch: list[list[int]]) -> list[tuple[float, float]]:
        """The two verdict tokens' logits at each prompt's last position, in one forward pass."""
        return [(float(row[self.token_ids[0]]), float(row[self.token_ids[1]])) for row in self._last_rows(batch)]

    def _last_rows(self, batch: list[list[int]]):
        """The vocabulary-wide logits at each prompt's last position, in one forward pass."""
        model = self.model
        torch, device = model.torch, model.model.device
        kwargs = {"input_ids": torch.tensor([batch[0]], device=device)}
        if len(batch) > 1:  # left padding, masked, each row's positions counted from its first token
            width = max(len(ids) for ids in batch)
            pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
            mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch], device=device)
            kwargs = {"input_ids": torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch], device=device),
                      "attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp(min=0)}
        if "logits_to_keep" in inspect.signature(model.model.forward).parameters:
            kwargs["logits_to_keep"] = 1  # not a vocabulary-wide row for every prompt token
        with torch.no_grad():
            last = model.model(**kwargs).logits[:, -1].float()
        self.last_stats["forward_passes"] = self.last_stats.get("forward_passes", 0) + 1
        return list(last)


def _common(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    k = 0
    while k < n and a[k] == b[k]:
        k += 1
    return k


def _logprobs(torch, row, tokens) -> dict[int, float]:
    """log P(token) = logit - log-sum-exp over the vocabulary (float64, as the two-pass path)."""
    lse = float(torch.logsumexp(row.double(), dim=-1))
    return {t: float(row[t].float()) - lse for t in tokens}
