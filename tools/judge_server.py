"""A local OpenAI-compatible server for a GGUF judge: `python -m llama_cpp.server` on 127.0.0.1.

    with judge_server(spec) as base_url:   # e.g. http://127.0.0.1:41234/v1
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


@contextlib.contextmanager
def judge_server(spec, log_path: Path, n_ctx: int | None = None, timeout: float = 120.0):
    if not spec.path.is_file():
        raise FileNotFoundError(f"judge '{spec.name}': weights not found at {spec.path}; run: make models")
    from backends.gpu_fit import sized_layers  # on a GPU: the layers that fit its free memory
    n_gpu_layers, _ = sized_layers(spec.path, spec.name, n_ctx or spec.n_ctx, 1, spec.n_gpu_layers)
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(spec.path),
           "--model_alias", spec.name, "--host", "127.0.0.1", "--port", str(port),
           "--n_ctx", str(n_ctx or spec.n_ctx), "--n_gpu_layers", str(n_gpu_layers)]
    if spec.chat_template:
        raise ValueError(f"judge '{spec.name}': a chat_template override is not supported for the judge "
                         "server; pick a judge whose GGUF has its own template")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_ready(proc, base_url, timeout, log_path)
        yield base_url
    finally:
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
