"""openai backend: any OpenAI-compatible chat API (OpenAI, vLLM, TGI, llama.cpp's server, Ollama).

Each question is one /chat/completions request: the model's system prompt, the question's earlier
turns ("history") as user/assistant messages, the question, and the generation settings
(`max_tokens`, `temperature`, `top_p`, `seed`, `stop`; a question's "generation" gives its own
temperature, max_tokens and top_p; `repetition_penalty`, `top_k`, `min_p` when models.toml sets
them, as extra body fields that vLLM and llama.cpp's servers read; the OpenAI API rejects them,
which stops the model with one line); `concurrency` requests are in flight at once (threads).
The client (openai_client.py, shared with the API judge) retries with
exponential backoff on 408, 409, 429, 5xx, timeouts, dropped connections and 200 replies that are
not a chat completion (an HTML page, a body not UTF-8), honouring Retry-After, all within the
model's `timeout` (seconds, a total deadline per question). A question that still fails gets an
error of its own, as does a reply whose `content` is null (never an empty answer); the others go
on. A wrong key, a missing model or a wrong URL stops the model at once with one clear line (every
other question would fail the same way).

The key is read from the environment variable named by `api_key_env` (OPENAI_API_KEY for the
OpenAI API), never from models.toml, and never appears in answers, errors or logs; nor does a
user:password in `base_url` (masked even when a server echoes it back, plain or base64).
Not handled: the legacy /completions endpoint, streaming, tool calls, a `chat_template` (the
server formats the prompt).
"""
from __future__ import annotations

import base64
import json
import os
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor, as_completed

from lib.messages import chat_messages, generation
from backends.openai_client import ChatClient, ReplyError
from lib.registry import redact_url

MAX_RETRIES = 6  # with openai_client.py's backoff (0.5 s doubling, at most 8 s): about half a minute


class FatalAPIError(RuntimeError):
    """An error every request would get (auth, unknown model, wrong URL): stop the model."""


class OpenAIBackend:
    def __init__(self, spec, max_retries: int = MAX_RETRIES):
        import openai

        if spec.chat_template:
            raise ValueError("chat_template does not apply to the openai backend (the server formats the "
                             "prompt); remove it from models.toml")
        self.key = os.environ.get(spec.api_key_env, "") if spec.api_key_env else ""
        if spec.api_key_env and not self.key:
            raise RuntimeError(f"{redact_url(spec.base_url)} needs an API key: export {spec.api_key_env}=... "
                               "(read from the environment only)")
        self.spec = spec
        self.openai = openai
        self.url = redact_url(spec.base_url)  # for messages
        userinfo = urllib.parse.urlsplit(spec.base_url).netloc.rpartition("@")[0]
        self.secrets = [s for s in (self.key, userinfo, userinfo.partition(":")[2],
                                    base64.b64encode(urllib.parse.unquote(userinfo).encode()).decode() if userinfo else "")
                        if len(s) >= 4]
        self.client = ChatClient(spec.base_url, self.key, spec.timeout, max_retries, self.url, self.secrets)

    def answer(self, questions: list[dict]):
        with ThreadPoolExecutor(max_workers=self.spec.concurrency) as pool:
            futures = {pool.submit(self._answer_one, q): i for i, q in enumerate(questions)}
            try:
                for future in as_completed(futures):
                    yield futures[future], future.result()
            except BaseException:  # FatalAPIError or Ctrl-C: don't send what is still queued
                for future in futures:
                    future.cancel()
                raise

    def _extra_body(self) -> dict:
        """Sampling fields outside OpenAI's API: vLLM reads repetition_penalty, llama.cpp's
        servers repeat_penalty; both read top_k and min_p."""
        spec, body = self.spec, {}
        if getattr(spec, "repetition_penalty", 1.0) != 1.0:
            body["repetition_penalty"] = body["repeat_penalty"] = spec.repetition_penalty
        for key in ("top_k", "min_p"):
            if getattr(spec, key, None) is not None:
                body[key] = getattr(spec, key)
        return body

    def _answer_one(self, question: dict) -> dict:
        spec, openai = self.spec, self.openai
        started = time.perf_counter()
        extra = {"stop": spec.stop} if spec.stop else {}
        body = self._extra_body()
        if body:
            extra["extra_body"] = body
        try:
            reply = self.client.create(
                model=spec.api_model, messages=chat_messages(question, spec.system_prompt),
                **generation(spec, question), seed=spec.seed, **extra,
            )
        except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as err:
            raise FatalAPIError(f"{self.url} refused model '{spec.api_model}': "
                                f"{self._clean(err)} (check api_model, base_url and {spec.api_key_env or 'the key'})") from None
        except openai.BadRequestError as err:
            rejected = [k for k in body if k in str(err)]
            if rejected:  # the OpenAI API: "Unrecognized request argument supplied: top_k"
                raise FatalAPIError(f"{self.url} does not accept {', '.join(rejected)} (not part of the "
                                    f"OpenAI API): remove it from [models.{spec.name}] for this endpoint") from None
            return {"error": f"{type(err).__name__}: {self._clean(err)}"}
        except ReplyError as err:  # malformed replies, or the deadline, after the retries
            return {"error": self._clean(err)}
        except openai.APIConnectionError as err:
            return {"error": f"no answer from {self.url} after {self.client.max_retries} retries: {self._clean(err)}"}
        except openai.APIError as err:  # 429 / 5xx after the retries, or a 400 for this question
            return {"error": f"{type(err).__name__}: {self._clean(err)}"}
        return self._result(reply, started)

    def _result(self, reply: dict, started: float) -> dict:
        choice = reply["choices"][0] if reply["choices"] else None
        if not isinstance(choice, dict):
            return {"error": "the server returned no choices"}
        text = (choice.get("message") or {}).get("content") if isinstance(choice.get("message"), dict) else None
        if not isinstance(text, str):  # content: null is no answer (a refusal, a tool call, a cut reasoning)
            return {"error": f"{self.url} answered without text (content: {json.dumps(text)}, "
                             f"finish_reason: {choice.get('finish_reason')})"}
        usage = reply.get("usage") if isinstance(reply.get("usage"), dict) else {}
        tokens = usage.get("completion_tokens")
        return {"output": text.strip(), "tokens": tokens if isinstance(tokens, int) else 0,
                "seconds": time.perf_counter() - started}

    def _clean(self, err: Exception) -> str:
        """The error's message on one line, with the key (if the server echoed it) masked."""
        text = " ".join(str(getattr(err, "message", None) or err).split())
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text[:300]

    def close(self) -> None:
        self.client.close()
