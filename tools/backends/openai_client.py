"""The one client for OpenAI-compatible chat APIs, shared by the openai backend and the API judge.

    client = ChatClient(base_url, key, timeout=300, max_retries=6, url_for_messages=..., secrets=[...])
    reply = client.create(model=..., messages=..., max_tokens=...)   # the reply, a dict

The openai package sends the requests (its own retries off); this client adds:
- a total deadline per request (`timeout`, a per-model key of models.toml): every connect, send
  and read of one request, its retries and their waits included, ends by then. The package's
  timeout applies to each read, so a server that trickles a byte every few seconds (or sends its
  headers that way) would hold a request, and a slot of `concurrency`, forever;
- a 200 reply that is not a chat completion (a proxy's HTML page, HTML labelled as JSON, a body
  that is not UTF-8, JSON without `choices`) is retried like a 5xx, then is a ReplyError naming
  the endpoint, the content type and the first bytes;
- retries with exponential backoff (0.5 s doubling, at most 8 s, never past the deadline) on 408,
  409, 429, 5xx, timeouts and dropped connections, honouring Retry-After (and retry-after-ms).
The caller handles openai.AuthenticationError / PermissionDeniedError / NotFoundError /
BadRequestError (never retried) and ReplyError (what is left after the retries).
Not handled: streaming; the deadline reaches into the connection pool of httpx2 (`_pool`): a
release of httpx2 that renames it fails at start, with one line (the tests would show it).
"""
from __future__ import annotations

import json
import random
import threading
import time

RETRIED_STATUS = (408, 409, 429)  # and every 5xx
MAX_RETRY_AFTER = 120.0  # a longer Retry-After is not honoured (the request fails), as the openai package does
_local = threading.local()  # the deadline of the request this thread is making


class ReplyError(RuntimeError):
    """No usable reply for this request after the retries: this question's or call's error."""


class _Malformed(Exception):
    """A 200 reply that is not a chat completion (retried)."""


def _limit(timeout: float | None, error: type[Exception]) -> float | None:
    """The socket timeout for one network step: what is left of the request's deadline."""
    deadline = getattr(_local, "deadline", None)
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the request's total deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream:
    """A network stream whose every read and write ends by the request's deadline."""

    def __init__(self, inner):
        self.inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        import httpcore2
        return self.inner.read(max_bytes, _limit(timeout, httpcore2.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        import httpcore2
        self.inner.write(buffer, _limit(timeout, httpcore2.WriteTimeout))

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        import httpcore2
        return _DeadlineStream(self.inner.start_tls(ssl_context, server_hostname,
                                                    _limit(timeout, httpcore2.ConnectTimeout)))

    def close(self) -> None:
        self.inner.close()

    def get_extra_info(self, info: str):
        return self.inner.get_extra_info(info)


class _DeadlineBackend:
    """httpcore2's network backend, with its connections' streams bounded by the deadline."""

    def __init__(self, inner):
        self.inner = inner

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        import httpcore2
        return _DeadlineStream(self.inner.connect_tcp(host, port, _limit(timeout, httpcore2.ConnectTimeout),
                                                      local_address, socket_options))

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        import httpcore2
        return _DeadlineStream(self.inner.connect_unix_socket(path, _limit(timeout, httpcore2.ConnectTimeout),
                                                              socket_options))

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


def _http_client(timeout: float):
    import httpx2

    transport = httpx2.HTTPTransport()
    pool = transport._pool  # httpx2 has no parameter for the network backend
    pool._network_backend = _DeadlineBackend(pool._network_backend)
    return httpx2.Client(transport=transport, timeout=httpx2.Timeout(timeout, connect=min(timeout, 10.0)))


def describe(http_response, secrets: list[str]) -> str:
    """What came back, for a message: content type, size and the first bytes, with any secret
    masked before they are cut (a page that echoes the key must not show even part of it)."""
    kind = http_response.headers.get("content-type") or "no content type"
    body = http_response.content
    for secret in sorted(secrets, key=len, reverse=True):
        body = body.replace(secret.encode("utf-8"), b"***")
    return f"{kind}, {len(http_response.content)} bytes: {body[:40]!r}"


def parse_reply(http_response) -> dict:
    """A 200 reply as a chat completion dict, or _Malformed saying why not."""
    try:
        text = http_response.content.decode("utf-8")
    except UnicodeDecodeError:
        raise _Malformed("a body that is not UTF-8") from None
    try:
        reply = json.loads(text)
    except json.JSONDecodeError:
        raise _Malformed("a body that is not JSON") from None
    if not isinstance(reply, dict) or not isinstance(reply.get("choices"), list):
        raise _Malformed("JSON without a list of 'choices'")
    return reply


class ChatClient:
    def __init__(self, base_url: str, key: str, timeout: float, max_retries: int, url_for_messages: str,
                 secrets: list[str] = ()):
        import openai

        self.openai = openai
        self.timeout, self.max_retries, self.url = float(timeout), max_retries, url_for_messages
        self.secrets = list(secrets)
        # Local servers ignore the key, but the client wants a non-empty one.
        self.client = openai.OpenAI(base_url=base_url, api_key=key or "not-needed", max_retries=0,
                                    http_client=_http_client(self.timeout))
        self.base_url = str(self.client.base_url).rstrip("/")  # as the package resolved it

    def create(self, **request) -> dict:
        """POST /chat/completions with retries, all within the deadline: the reply as a dict."""
        openai = self.openai
        deadline = time.monotonic() + self.timeout
        endpoint = f"{self.url.rstrip('/')}/chat/completions"
        for attempt in range(self.max_retries + 1):
            headers = None
            _local.deadline = deadline
            try:
                raw = self.client.chat.completions.with_raw_response.create(**request)
                return parse_reply(raw.http_response)
            except _Malformed as err:
                headers = raw.http_response.headers
                failure = f"{endpoint} answered 200 with {err}", describe(raw.http_response, self.secrets)
            except openai.APIStatusError as err:
                if err.status_code not in RETRIED_STATUS and err.status_code < 500:
                    raise
                headers, failure = err.response.headers, err
            except openai.APIConnectionError as err:  # timeouts included
                if time.monotonic() >= deadline:
                    raise ReplyError(f"{endpoint}: no whole reply within the {self.timeout:g} s deadline "
                                     "(`timeout` in models.toml)") from None
                failure = err
            finally:
                _local.deadline = None
            wait = _retry_wait(headers, attempt)
            if attempt == self.max_retries or wait is None:
                break
            if time.monotonic() + wait >= deadline:
                last = f"{failure[0]} ({failure[1]})" if isinstance(failure, tuple) else f"{type(failure).__name__}: {failure}"
                raise ReplyError(f"{endpoint}: no usable reply within the {self.timeout:g} s deadline (`timeout` in "
                                 f"models.toml), {attempt + 1} tries; the last: {last}")
            time.sleep(wait)
        if isinstance(failure, tuple):
            raise ReplyError(f"{failure[0]} on {attempt + 1} tries; the last: {failure[1]}")
        raise failure

    def close(self) -> None:
        self.client.close()


def _retry_wait(headers, attempt: int) -> float | None:
    """Seconds to wait before the next try: the server's Retry-After, else the backoff; None when
    the server asks for more than MAX_RETRY_AFTER."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        try:
            value = float((headers or {}).get(name, ""))
        except ValueError:
            continue
        if value > MAX_RETRY_AFTER * scale:
            return None
        if value > 0:
            return value / scale
    return min(0.5 * 2 ** attempt, 8.0) * (1 - 0.25 * random.random())
