"""A GGUF judge, in-process on llama.cpp: each call's verdict from the logits at the prompt's end.

The model is loaded by the llama.cpp backend (tools/backends/llama_backend.py: its chat template,
or the `chat_template` override of models.toml, so base models can judge too), and every call
becomes one prompt: alpaca_eval's question with the two answers, then the generation prompt,
tokenized so that only the template's markup is control tokens: a `<|im_end|>` in an answer is
text (chat_tokens.py), and it can neither end the judge's turn nor write one of its own.
tools/backends/llama_score.py decodes all of them together, what they share once (the template's
head and the judge's instructions for all; the question for the two orders of a pair), and gives
the logits of `m` and `M` at each prompt's last position: P(first better) = softmax over those
two, exact, with no grammar, no top-20 cut, no server and no port. Answers too long for the
judge's n_ctx are cut to fit (the verdict is marked `truncated`). Sequences decoded together: the
model's `parallel` (0 = automatic, at most 16).
`label(calls)` answers labelled calls (judges/labels.py: a rating 1-10, Arena-Hard's verdicts) in
one decode each (backends/llama_label.py): the explanation written greedily, the label read from
the KV cells it left, shared prompt starts decoded once, each call yielded as its label is read.
LLMEVAL_LABEL_PATH=two-pass keeps the old path (explanations on llama_engine.py, then every
context decoded again by llama_score.py) for comparison (judges/local_labels.py).
Does not handle: verdict words that are more than one token in the judge's vocabulary (an error
naming the judge; labelled calls chain the tokens of longer options instead).
"""
from __future__ import annotations

import time

from judges.base import LocalJudge
from judges.prompt import fit, make_messages, prompt_template, verdict_from_logits

MAX_PARALLEL = 16
CTX_ROUND = 256


class LlamaJudge(LocalJudge):
    kind = "llama.cpp"

    def _open(self):
        from backends.llama_backend import LlamaBackend

        backend = LlamaBackend(self.spec)
        return backend, lambda word: backend.model.tokenize(word.encode("utf-8"), add_bos=False, special=False)

    def tokens(self, messages: list[dict]) -> list[int]:
        """The prompt's ids: the chat template's markup as control tokens, the messages' content
        (instructions, question, answers) as plain text (chat_tokens.py)."""
        return self._load().chat.ids(messages)

    def judge(self, calls):
        from backends.llama_score import context_size, score

        backend = self._load()
        self._verdict_ids()
        template = prompt_template()
        budget = self.spec.n_ctx - 1
        prompts, shown = [], {}
        for index, call in enumerate(calls):
            tokens = self.tokens(make_messages(call, template))
            truncated = len(tokens) > budget
            if truncated:
                try:
                    seen, _ = fit(call, lambda c: len(self.tokens(make_messages(c, template))),
                                  budget, self.name, self.spec.n_ctx)
                except ValueError as err:
                    yield call, {"error": str(err)}
                    continue
                tokens = self.tokens(make_messages(seen, template))
            prompts.append((index, tokens))
            shown[index] = truncated
        if not prompts:
            return
        n_ctx_seq = context_size([p for _, p in prompts], self.spec.n_ctx)
        n = self.spec.parallel or min(MAX_PARALLEL, backend.engine.auto_parallel(len(prompts), n_ctx_seq))
        started = time.perf_counter()
        stats: dict = {}
        for index, result in score(backend.engine, prompts, self.token_ids, n, n_ctx_seq, stats=stats):
            call = calls[index]
            if "error" in result:
                yield call, {"error": result["error"]}
                continue
            yield call, verdict_from_logits(*result["logits"], truncated=shown[index])
        self.last_stats = {**stats, "seconds": time.perf_counter() - started, "parallel": n}

    def label(self, calls):
        """(call, result) for labelled calls (judges/labels.py), in chunks of calls."""
        from backends.llama_engine import Settings
        from backends.llama_score import context_size, score
        from judges.local_labels import label_locally

        backend = self._load()
        engine = backend.engine

        def encode(text: str) -> list[int]:  # the judge's own text and the labels: never control tokens
            return backend.model.tokenize(text.encode("utf-8"), add_bos=False, special=False)

        def generate(prompts, max_tokens, limit):
            n = self.spec.parallel or min(MAX_PARALLEL, engine.auto_parallel(len(prompts), limit))
            n_ctx_seq = min(limit, max(len(t) for _, t in prompts) + max_tokens)
            yield from engine.run(prompts, Settings(max_tokens=max_tokens, temperature=0.0), min(n, len(prompts)),
                                  n_ctx_seq)

        def stream(jobs):
            from backends.llama_label import label_jobs
            from judges.labels import RESERVE

            room = self.spec.n_ctx
            need = max(len(tokens) + max_tokens for _, tokens, max_tokens, _ in jobs) + 2 * RESERVE
            n_ctx_seq = min(room, -(-need // CTX_ROUND) * CTX_ROUND)
            n = self.spec.parallel or min(MAX_PARALLEL, engine.auto_parallel(len(jobs), n_ctx_seq))
            yield from label_jobs(engine, jobs, n, n_ctx_seq, room - RESERVE, stats=stats)
            stats["parallel"] = n

        def score_nodes(prompts, token_ids, n_calls):
            n_ctx_seq = context_size([p for _, p in prompts], self.spec.n_ctx)
            # a slot per call at most: each slot then decodes its calls' text once, their paths after it
            n = min(self.spec.parallel or MAX_PARALLEL, n_calls, engine.auto_parallel(n_calls, n_ctx_seq))
            yield from score(engine, prompts, token_ids, n, n_ctx_seq, normalize=True)

        started = time.perf_counter()
        stats: dict = {}
        self.last_stats = stats
        yield from label_locally(calls, room=self.spec.n_ctx, prompt_tokens=self.tokens, encode=encode,
                                 generate=generate, score_nodes=score_nodes, stream=stream)
        stats["seconds"] = time.perf_counter() - started
