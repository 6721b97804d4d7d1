"""A local OpenAI-compatible server for a GGUF model: `python -m llama_cpp.server` on 127.0.0.1.

Judges no longer need it (tools/judges/ runs them in-process): what still does is the
benchmark's "before" path (bench/bench_judge.py) and the tests that check an OpenAI-compatible
judge, the openai backend and alpaca_eval's annotators against a real local server.

    with judge_server(spec, log) as base_url:   # one models.toml model, e.g. http://127.0.0.1:41234/v1
        ...
    with llama_cpp_server(lambda port: ["--config_file", ...], log) as base_url:  # any arguments
        ...

It binds to 127.0.0.1 only, on a free port, waits until /v1/models answers, and is always
stopped on leaving the block (on errors and Ctrl-C too); on Linux it also dies with its parent,
so a judging run killed with SIGKILL leaves no server behind. Its log goes to a file, not the
screen. It serves one request at a time (llama_cpp.server does).
"""
from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_threads() -> dict:
    """A server model's n_threads and n_threads_batch as the in-process engine picks them, on the
    CPUs this process may use (the server's own defaults count the machine's)."""
    from backends.llama_engine import usable_cpus

    cpus = usable_cpus()
    return {"n_threads": max(cpus // 2, 1), "n_threads_batch": cpus}


@contextlib.contextmanager
def judge_server(spec, log_path: Path, n_ctx: int | None = None, timeout: float = 120.0):
    if not spec.path.is_file():
        raise FileNotFoundError(f"judge '{spec.name}': weights not found at {spec.path}; run: make models")
    from backends.gpu_fit import sized_layers  # on a GPU: the layers that fit its free memory
    n_gpu_layers, _ = sized_layers(spec.path, spec.name, n_ctx or spec.n_ctx, 1, spec.n_gpu_layers)
    if spec.chat_template:
        raise ValueError(f"'{spec.name}': llama_cpp.server cannot take a chat_template override")
    threads = [w for k, v in server_threads().items() for w in (f"--{k}", str(v))]

    def args(port: int) -> list[str]:
        return ["--model", str(spec.path), "--model_alias", spec.name, "--host", "127.0.0.1", "--port", str(port),
                "--n_ctx", str(n_ctx or spec.n_ctx), "--n_gpu_layers", str(n_gpu_layers), *threads]
    with llama_cpp_server(args, log_path, timeout) as base_url:
        yield base_url


@contextlib.contextmanager
def llama_cpp_server(args_for_port, log_path: Path, timeout: float = 120.0):
    """`python -m llama_cpp.server *args_for_port(port)` on a free port of 127.0.0.1 (the arguments,
    or the config file they name, must bind there); yields its base URL once /v1/models answers."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):  # the free port may be taken between choosing and binding: try another
        port = free_port()
        with log_path.open("wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", *args_for_port(port)],
                                    stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        base_url = f"http://127.0.0.1:{port}/v1"
        try:
            _wait_ready(proc, base_url, timeout, log_path)
            break
        except RuntimeError:
            _stop(proc)
            if attempt == 2 or "address already in use" not in log_path.read_text(errors="replace"):
                raise
    try:
        yield base_url
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _die_with_parent() -> None:
    """In the server's process, before it starts: ask Linux to SIGTERM it when its parent dies."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the server is still stopped on any normal exit


def _wait_ready(proc: subprocess.Popen, base_url: str, timeout: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise RuntimeError(f"judge server exited with code {proc.returncode}: {tail[0]} (log: {log_path})")
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=2) as reply:
                if json.load(reply).get("data"):
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"judge server did not answer within {timeout:.0f} s (log: {log_path})")
