"""The openai backend over real HTTP on 127.0.0.1: against `python -m llama_cpp.server` with the
embedded SmolLM2 (the judge server's code), and against a tiny http.server that answers 429/500
first (retries), always fails for one question (an error for that question only), counts the
requests in flight (concurrency), or refuses the key (which never shows in an error)."""
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from backends.load import load_backend
from backends.openai_backend import FatalAPIError, OpenAIBackend
from conftest import ROOT
from lib.registry import RegistryError, load_registry

SECRET = "sk-test-0123456789-do-not-print"


def spec_for(tmp_path, base_url, extra="", api_model="m"):
    toml = tmp_path / "models.toml"
    toml.write_text(f'[models.api]\nbackend = "openai"\nbase_url = "{base_url}"\napi_model = "{api_model}"\n'
                    f'max_tokens = 16\n{extra}\n', encoding="utf-8")
    return load_registry(toml).get("api")


def run(backend, questions):
    try:
        return dict(backend.answer(questions))
    finally:
        backend.close()


def test_llama_cpp_server_answers_with_usage(llama_server, tmp_path):
    spec = spec_for(tmp_path, llama_server, "concurrency = 3", api_model="smollm2_135m")
    questions = [{"instruction": q} for q in ("What is 2+2?", "Name a colour.", "Say hi.", "What is rain?")]
    results = run(load_backend(spec), questions)
    assert sorted(results) == [0, 1, 2, 3]
    for result in results.values():
        assert "error" not in result, result
        assert result["output"] and 0 < result["tokens"] <= 16  # usage.completion_tokens


class FakeAPI(BaseHTTPRequestHandler):
    """/v1/chat/completions with scripted failures; `server.script(question, attempt)` -> status."""

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        question = body["messages"][-1]["content"]
        server = self.server
        with server.lock:
            server.calls.append((question, self.headers.get("Authorization")))
            server.bodies.append(body)
            attempt = sum(1 for q, _ in server.calls if q == question)
            server.in_flight += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
        time.sleep(server.delay)
        status = server.script(question, attempt)
        with server.lock:
            server.in_flight -= 1
        if status == 200:
            reply = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                     "choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": f"answer to {question}"}}],
                     "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}
        else:
            reply = {"error": {"message": server.message or f"scripted {status}, key {self.headers.get('Authorization')}",
                               "type": "server_error", "code": status}}
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (server.headers or {"retry-after-ms": "5"}).items():  # 5 ms: a short backoff in tests
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeAPI)
    server.lock, server.calls, server.in_flight, server.max_in_flight = threading.Lock(), [], 0, 0
    server.bodies, server.message, server.headers = [], None, None
    server.delay, server.script = 0.0, lambda question, attempt: 200
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


QUESTIONS = [{"instruction": f"q{i}"} for i in range(6)]


def test_concurrency_requests_in_flight(fake_api, tmp_path):
    server, url = fake_api
    server.delay = 0.3
    results = run(load_backend(spec_for(tmp_path, url, "concurrency = 3")), QUESTIONS)
    assert [results[i]["output"] for i in range(6)] == [f"answer to q{i}" for i in range(6)]
    assert all(r["tokens"] == 3 for r in results.values())
    assert server.max_in_flight == 3


def test_429_and_500_are_retried(fake_api, tmp_path):
    server, url = fake_api
    server.script = lambda question, attempt: {1: 429, 2: 500}.get(attempt, 200)
    results = run(load_backend(spec_for(tmp_path, url)), QUESTIONS[:3])
    assert all("error" not in r for r in results.values()), results
    assert len(server.calls) == 9  # three tries for each question


def test_a_question_that_always_fails_fails_alone(fake_api, tmp_path):
    server, url = fake_api
    server.script = lambda question, attempt: 500 if question == "q2" else 200
    results = run(OpenAIBackend(spec_for(tmp_path, url), max_retries=2), QUESTIONS)
    assert "InternalServerError" in results[2]["error"]
    assert sum(1 for q, _ in server.calls if q == "q2") == 3  # tried, then retried twice
    assert all("error" not in results[i] for i in (0, 1, 3, 4, 5))


def test_a_refused_key_stops_the_model_and_is_never_shown(fake_api, tmp_path, monkeypatch):
    server, url = fake_api
    monkeypatch.setenv("LLMEVAL_TEST_KEY", SECRET)
    server.script = lambda question, attempt: 401
    backend = load_backend(spec_for(tmp_path, url, 'api_key_env = "LLMEVAL_TEST_KEY"'))
    with pytest.raises(FatalAPIError) as err:
        run(backend, QUESTIONS)
    assert server.calls[0][1] == f"Bearer {SECRET}"  # the key was sent...
    assert SECRET not in str(err.value) and "***" in str(err.value)  # ...and is masked in the error
    assert "LLMEVAL_TEST_KEY" in str(err.value)


def test_missing_key_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("LLMEVAL_TEST_KEY", raising=False)
    spec = spec_for(tmp_path, "http://127.0.0.1:9/v1", 'api_key_env = "LLMEVAL_TEST_KEY"')
    with pytest.raises(RuntimeError, match="export LLMEVAL_TEST_KEY="):
        load_backend(spec)


def test_unreachable_server_is_an_error_per_question(tmp_path):
    results = run(OpenAIBackend(spec_for(tmp_path, "http://127.0.0.1:9/v1"), max_retries=0), QUESTIONS[:2])
    assert all("no answer from http://127.0.0.1:9/v1" in r["error"] for r in results.values())


def test_reference_gpt35_without_key_stops_before_any_work():
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "stamps.py"), "preflight", "smollm2_135m", "gpt35",
                           "--models-toml", str(ROOT / "models.toml")], capture_output=True, text=True, env=env)
    assert done.returncode == 2
    assert "model 'gpt35'" in done.stderr and "export OPENAI_API_KEY=" in done.stderr
    env["OPENAI_API_KEY"] = SECRET
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "stamps.py"), "preflight", "gpt35",
                           "--models-toml", str(ROOT / "models.toml")], capture_output=True, text=True, env=env)
    assert (done.returncode, done.stderr) == (0, "")


def test_llama_cpp_server_takes_the_penalty_fields(llama_server, tmp_path):
    spec = spec_for(tmp_path, llama_server, "repetition_penalty = 1.1\ntop_k = 20\nmin_p = 0.1",
                    api_model="smollm2_135m")
    results = run(load_backend(spec), [{"instruction": "Name a colour."}])
    assert "error" not in results[0] and results[0]["output"], results


def test_penalty_fields_go_in_the_body_only_when_set(fake_api, tmp_path):
    server, url = fake_api
    run(load_backend(spec_for(tmp_path, url)), QUESTIONS[:1])
    assert not {"repetition_penalty", "repeat_penalty", "top_k", "min_p"} & set(server.bodies[-1])
    run(load_backend(spec_for(tmp_path, url, "repetition_penalty = 1.1\ntop_k = 20\nmin_p = 0.1")), QUESTIONS[:1])
    body = server.bodies[-1]
    assert (body["repetition_penalty"], body["repeat_penalty"], body["top_k"], body["min_p"]) == (1.1, 1.1, 20, 0.1)


def test_an_api_that_rejects_the_penalty_stops_with_one_line(fake_api, tmp_path):
    server, url = fake_api
    server.script = lambda question, attempt: 400
    server.message = "Unrecognized request argument supplied: repetition_penalty"  # what OpenAI answers
    with pytest.raises(FatalAPIError, match="does not accept repetition_penalty.*remove it from \\[models.api\\]"):
        run(load_backend(spec_for(tmp_path, url, "repetition_penalty = 1.1")), QUESTIONS)


@pytest.mark.parametrize("variable", ["OPENAI_BASE_URL", "OPENAI_API_BASE"])
def test_openai_base_url_from_the_environment(fake_api, tmp_path, monkeypatch, variable):
    """A model without base_url (gpt35) goes where OPENAI_BASE_URL (the openai package's variable) or
    OPENAI_API_BASE (alpaca_eval's) points: a relay or proxy. Its own base_url still wins."""
    server, url = fake_api
    for name in ("OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, url)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    gpt35 = load_registry(ROOT / "models.toml").get("gpt35")
    assert gpt35.base_url == url and gpt35.api_key_env == "OPENAI_API_KEY"
    results = run(load_backend(gpt35), QUESTIONS[:2])
    assert [results[i]["output"] for i in (0, 1)] == ["answer to q0", "answer to q1"]
    assert server.bodies[-1]["model"] == "gpt-3.5-turbo" and server.calls[-1][1] == f"Bearer {SECRET}"
    assert load_registry(ROOT / "models.toml").get("qwen25_7b_vllm").base_url == "http://127.0.0.1:8000/v1"
    monkeypatch.setenv(variable, "api.example.com/v1")
    with pytest.raises(RegistryError, match=f"{variable}='api.example.com/v1' is not an http"):
        load_registry(ROOT / "models.toml")


def test_a_retry_after_over_two_minutes_is_not_waited_for(fake_api, tmp_path):
    server, url = fake_api
    server.script = lambda question, attempt: 429
    server.headers = {"retry-after": "600"}
    results = run(load_backend(spec_for(tmp_path, url)), QUESTIONS[:1])
    assert "RateLimitError" in results[0]["error"] and len(server.calls) == 1


def test_the_deadline_covers_the_retries(fake_api, tmp_path):
    """timeout = 2.5 s and a server that asks to wait 1 s after each 503: the question ends after
    the tries that fit in the deadline, not after all seven."""
    server, url = fake_api
    server.script = lambda question, attempt: 503
    server.headers = {"retry-after": "1"}
    results = run(load_backend(spec_for(tmp_path, url, "timeout = 2.5")), QUESTIONS[:1])
    assert "InternalServerError" in results[0]["error"] or "503" in results[0]["error"], results
    assert 2 <= len(server.calls) <= 3


def test_timeout_is_an_openai_and_custom_key(tmp_path):
    assert spec_for(tmp_path, "http://127.0.0.1:9/v1", "timeout = 12").timeout == 12.0
    assert spec_for(tmp_path, "http://127.0.0.1:9/v1").timeout == 300.0
