"""An OpenAI-compatible endpoint on 127.0.0.1 that misbehaves on request, for the fault tests.

    with faulty_api_server() as server: ...   # server.url: http://127.0.0.1:PORT/v1

POST /v1/chat/completions answers "answer to <last user message>" (with top log-probabilities
of `m` and `M`, so it also serves as an API judge that prefers `m`), unless a message contains
`FAULT:<mode>`, then it answers as that mode says:
  html        200, text/html, an error page (what a proxy or captive portal sends)
  html_json   200, application/json, the same HTML page
  utf16       200, application/json, a chat completion in UTF-16 (not UTF-8)
  null        200, a chat completion whose content is null
  surrogate   200, a chat completion whose content holds a lone surrogate ("\\ud800")
  huge        200, a chat completion of 5 MB
  trickle     200 and its headers, then the body one byte every 2 s
  trickle_head   the status line and headers themselves one byte every 2 s
A mode ending in `_once` misbehaves on the first request of that question only. Every reply
says `retry-after-ms: 5`, so a client's retries are quick. `server.requests` counts requests per
mode ("" for normal ones). Not a server for real use: no auth, no streaming.
"""
from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HTML = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>502</h1></body></html>"


def completion(model: str, content) -> dict:
    return {"id": "x", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content},
                         "logprobs": {"content": [{"token": "m", "logprob": -0.3, "top_logprobs": [
                             {"token": "m", "logprob": -0.3}, {"token": "M", "logprob": -1.4}]}]}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def _send(self, body: bytes, content_type: str = "application/json", trickle: str = "") -> None:
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                "retry-after-ms: 5\r\n\r\n").encode()
        try:
            if trickle == "trickle_head":
                body = head + body
            else:
                self.wfile.write(head)
            if trickle:
                for i in range(len(body)):  # one byte every 2 s: never a read timeout, never done
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
                    time.sleep(2)
            else:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up: what it should do
            self.close_connection = True

    def do_POST(self):  # noqa: N802 (http.server's naming)
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        text = " ".join(str(m.get("content", "")) for m in request.get("messages", []))
        found = re.search(r"FAULT:(\w+)", text)
        mode = found.group(1) if found else ""
        with self.server.lock:
            self.server.requests[mode] += 1
            first = self.server.requests[mode] == 1
        if mode.endswith("_once"):
            mode = mode[:-5] if first else ""
        model = request.get("model", "m")
        last = next((m.get("content", "") for m in reversed(request.get("messages", []))
                     if m.get("role") == "user"), "")
        if mode == "html":
            self._send(HTML, "text/html; charset=utf-8")
        elif mode == "html_json":
            self._send(HTML)
        elif mode == "utf16":
            self._send(json.dumps(completion(model, "café")).encode("utf-16"))
        elif mode in ("trickle", "trickle_head"):
            self._send(json.dumps(completion(model, "late " * 200)).encode(), trickle=mode)
        else:
            content = {"null": None, "surrogate": "half \ud800 a character", "huge": "x" * 5_000_000}.get(
                mode, f"answer to {last}")
            self._send(json.dumps(completion(model, content)).encode())  # ensure_ascii: \ud800 stays an escape


@contextlib.contextmanager
def faulty_api_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True  # a trickling reply must not hold the test's exit
    server.lock, server.requests = threading.Lock(), Counter()
    server.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
