"""A judge behind an OpenAI-compatible API (`backend = "openai"` in models.toml).

The client is the openai backend's (tools/backends/openai_backend.py, openai_client.py): the same
base URL resolution, key handling (from the variable named by `api_key_env`, never shown: masked in
every error), retries with backoff on 408/409/429/5xx, timeouts, dropped connections and 200
replies that are not a chat completion (an HTML page, a body not UTF-8), honouring Retry-After, and
the judge's `timeout` (a total deadline per call). `concurrency` calls are in flight at once (threads). Each
call asks for one token with its top-20 log-probabilities; the verdict is P(m) / (P(m) + P(M))
from them (protocol logprob-v1), or the token itself when neither is among them. A call that
still fails is not cached (the next run retries it); a refused key, an unknown model or a wrong
URL stops the judge at once with one line (JudgeError).
`label(calls)` answers labelled calls (judges/labels.py): the reply written in full (temperature 0,
the call's max_tokens), its label parsed from the text by the call's parser (FastChat's for
MT-Bench); with the endpoint's logprobs, the options' probabilities at the label position. A reply
without a label is a failed call (unparsed): not cached, retried by the next run.
Does not handle: APIs without logprobs for pairwise verdicts (use an alpaca_eval annotator config).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor, as_completed

from judges.base import Judge
from judges.cache import JudgeError
from judges.identity import public_url, sha256_text
from judges.prompt import make_messages, parse_logprob_reply, prompt_template
from lib.records import InputError

PROTOCOL = "logprob-v1"  # unchanged since the first API judge: its cached verdicts stay valid
TOP_LOGPROBS = 20


class ApiJudge(Judge):
    kind = "openai"

    def __init__(self, spec, max_retries: int | None = None):
        from backends.openai_backend import OpenAIBackend

        if spec.api_key_env and not os.environ.get(spec.api_key_env):
            raise InputError(f"judge '{spec.name}' needs {spec.api_key_env}; export it, or use a local judge")
        kwargs = {} if max_retries is None else {"max_retries": max_retries}
        try:
            self.backend = OpenAIBackend(spec, **kwargs)
        except (ValueError, RuntimeError) as err:
            raise InputError(f"judge '{spec.name}': {err}") from None
        self.spec = spec
        self.api_model = spec.api_model or spec.name
        self.concurrency = max(1, spec.concurrency)
        self.base_url = str(self.backend.client.base_url).rstrip("/")  # as the backend resolved it
        super().__init__(spec.name, {"kind": "openai", "base_url": public_url(self.base_url), "api_model": self.api_model,
                                     "protocol": PROTOCOL, "prompt_sha256": sha256_text(prompt_template())})

    def secrets(self) -> list[str]:
        return [self.backend.key] if self.backend.key else []

    def judge(self, calls):
        template = prompt_template()
        yield from self._in_flight(calls, lambda call: self._ask(call, template))

    def label(self, calls):
        """(call, result) for labelled calls, `concurrency` in flight."""
        yield from self._in_flight(calls, self._ask_label)

    def _in_flight(self, calls, ask):
        from backends.openai_backend import FatalAPIError

        pool = ThreadPoolExecutor(max_workers=self.concurrency)
        futures = {pool.submit(ask, call): call for call in calls}
        try:
            for future in as_completed(futures):
                try:
                    yield futures[future], future.result()
                except FatalAPIError as err:
                    raise JudgeError(f"judge '{self.name}': {err}") from None
        finally:  # stopped early (failures, Ctrl-C, kill): don't send what is still queued
            for future in futures:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    def _ask(self, call, template: str) -> dict:
        import time

        started = time.perf_counter()
        reply = self._create(messages=make_messages(call, template), max_tokens=1, temperature=0,
                             logprobs=True, top_logprobs=TOP_LOGPROBS)
        if "error" in reply:
            return reply
        result = parse_logprob_reply(reply)
        result["seconds"] = round(time.perf_counter() - started, 3)
        return result

    def _ask_label(self, call) -> dict:
        import time

        from judges.labels import result_from_logprobs

        started = time.perf_counter()
        reply = self._create(messages=call.messages(), max_tokens=call.max_tokens, temperature=0,
                             logprobs=True, top_logprobs=TOP_LOGPROBS)
        if "error" in reply:
            return reply
        try:
            choice = reply["choices"][0]
            text = (choice.get("message") or {}).get("content") or ""
            content = (choice.get("logprobs") or {}).get("content") or []
        except (KeyError, IndexError, TypeError, AttributeError):
            return {"error": f"unexpected reply: {str(reply)[:200]}"}
        result = result_from_logprobs(call, text, content)
        result["seconds"] = round(time.perf_counter() - started, 3)
        return result

    def _create(self, **kwargs) -> dict:
        """One chat completion as a dict, or {"error"} for this call; FatalAPIError when the
        endpoint refuses the model or the key (no other call would fare better)."""
        from backends.openai_backend import FatalAPIError
        from backends.openai_client import ReplyError

        openai, spec = self.backend.openai, self.spec
        try:
            return self.backend.client.create(model=self.api_model, **kwargs)
        except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as err:
            raise FatalAPIError(f"{public_url(self.base_url)} refused model '{self.api_model}': {self.backend._clean(err)} "
                                f"(check api_model, base_url and {spec.api_key_env or 'the key'})") from None
        except ReplyError as err:  # malformed replies, or the deadline, after the retries
            return {"error": f"judge '{self.name}': {self.backend._clean(err)}"}
        except openai.APIConnectionError as err:
            return {"error": f"cannot reach the judge at {public_url(self.base_url)} after "
                             f"{self.backend.client.max_retries} retries: {self.backend._clean(err)}"}
        except openai.APIError as err:  # 429 / 5xx after the retries, or a 400 for this call
            return {"error": f"{type(err).__name__}: {self.backend._clean(err)}"}

    def close(self) -> None:
        self.backend.close()
