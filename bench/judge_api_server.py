"""A small OpenAI-compatible judge endpoint for tests and `make bench-judge`, on 127.0.0.1 only.

    with judge_api_server(model_path, latency=0.25, share_429=0.2) as base_url: ...

POST /v1/chat/completions answers one token with real top log-probabilities of `m` and `M`
from the embedded GGUF judge in-process (tools/judges/llama_judge.py; each distinct prompt
scored once, then remembered), after a fixed added latency per request, like a remote API.
Faults on purpose: `share_429` of the requests (deterministically, every k-th) get 429 with
Retry-After, and a request whose bearer key is `reject_key` gets 401 with the key echoed in the
error body, as some servers do. Threads answer requests concurrently; scoring is serialised.
Counts requests and 429s in `.stats`, and keeps each request's messages (`.stats["messages"]`). Not a server for real use: no auth, no streaming.
"""
from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace


class _Scorer:
    def __init__(self, model_path: Path):
        import tempfile

        from judges.llama_judge import LlamaJudge
        from lib.registry import load_registry

        with tempfile.TemporaryDirectory() as folder:  # the model as models.toml would declare it
            toml = Path(folder) / "models.toml"
            toml.write_text(f'[models.judge]\npath = "{Path(model_path).resolve()}"\nparallel = 1\n', encoding="utf-8")
            spec = load_registry(toml).models["judge"]
        self.judge = LlamaJudge(spec, {"kind": "llama.cpp"})
        self.lock = threading.Lock()
        self.memo: dict[str, tuple[float, float]] = {}

    def logprobs(self, messages: list[dict]) -> tuple[float, float]:
        from backends.llama_score import context_size, score

        key = json.dumps(messages, ensure_ascii=False)
        with self.lock:
            if key not in self.memo:
                tokens = self.judge.tokens(messages)
                engine = self.judge.model.engine
                (_, result), = score(engine, [(0, tokens)], self.judge.token_ids, 1, context_size([tokens], 4096))
                lm, lM = result["logits"]
                top = max(lm, lM)
                norm = top + math.log(math.exp(lm - top) + math.exp(lM - top))
                self.memo[key] = (lm - norm, lM - norm)
            return self.memo[key]


@contextlib.contextmanager
def judge_api_server(model_path: Path, latency: float = 0.0, share_429: float = 0.0, reject_key: str | None = None):
    scorer = _Scorer(model_path)
    stats = {"requests": 0, "429": 0, "messages": []}
    counter = threading.Lock()
    every = round(1 / share_429) if share_429 > 0 else 0

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _send(self, code: int, body: dict, headers: dict | None = None):
            data = json.dumps(body).encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            with counter:
                stats["requests"] += 1
                stats["messages"].append(body.get("messages"))
                n = stats["requests"]
            time.sleep(latency)
            auth = self.headers.get("Authorization", "")
            if reject_key and reject_key in auth:
                return self._send(401, {"error": {"message": f"Incorrect API key provided: {auth}", "type": "invalid_request_error"}})
            if every and n % every == 0:
                with counter:
                    stats["429"] += 1
                return self._send(429, {"error": {"message": "Rate limit reached, retry later"}}, {"Retry-After": "0.2"})
            lm, lM = scorer.logprobs(body["messages"])
            token = "m" if lm >= lM else "M"
            top = [{"token": "m", "logprob": lm, "bytes": None}, {"token": "M", "logprob": lM, "bytes": None}]
            self._send(200, {
                "id": "x", "object": "chat.completion", "created": int(time.time()), "model": body.get("model", "judge"),
                "choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": token},
                             "logprobs": {"content": [{"token": token, "logprob": max(lm, lM), "bytes": None,
                                                       "top_logprobs": top}]}}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 1, "total_tokens": 1}})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield SimpleNamespace(base_url=f"http://127.0.0.1:{server.server_address[1]}/v1", stats=stats, scorer=scorer)
    finally:
        server.shutdown()
        server.server_close()
        scorer.judge.close()
