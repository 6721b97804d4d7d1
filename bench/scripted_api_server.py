"""An OpenAI-compatible endpoint on 127.0.0.1 that replies with scripted texts, for the judge tests.

    endpoint = ScriptedEndpoint({"Q-clear": ["Mine... [[B>>A]]"], "Q-late": ["no label", "[[A>B]]"]})
    endpoint.base_url          # http://127.0.0.1:PORT/v1
    endpoint.requests          # every request body, in order
    endpoint.server.shutdown()

POST /v1/chat/completions: the reply is the first script whose key is in the user message
(messages[1], after the system prompt), its entry chosen by the attempt (the number of assistant
messages in the conversation; the last entry once they run out). Replies carry no logprobs, as
many endpoints give none (reasoning models, gateways, proxies to other APIs). With
`refuse_logprobs`, a request that asks for logprobs gets 400, as endpoints without them answer.
Not a server for real use: no auth, no streaming, no tokens counted.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ScriptedEndpoint:
    """POST /v1/chat/completions on 127.0.0.1: the reply for a prompt is chosen by the question's
    text (and the attempt); every request is kept."""

    def __init__(self, replies: dict[str, list[str]], refuse_logprobs: bool = False):
        self.replies, self.requests = replies, []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                endpoint.requests.append(body)
                if refuse_logprobs and body.get("logprobs"):
                    return self._send(400, {"error": {"message": "logprobs is not supported with this model",
                                                      "type": "invalid_request_error", "param": "logprobs"}})
                user = body["messages"][1]["content"]
                key = next(k for k in endpoint.replies if k in user)
                attempt = sum(1 for m in body["messages"] if m["role"] == "assistant")
                text = endpoint.replies[key][min(attempt, len(endpoint.replies[key]) - 1)]
                self._send(200, {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": text}}]})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
