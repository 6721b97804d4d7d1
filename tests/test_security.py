"""Security, through make: a fake key set in the environment, and echoed back by a local server
in its error bodies, appears in no file under OUT or models/, no log and no terminal output, for
every backend and judge kind; a user:password in a base_url is scrubbed the same way; every server
our runs start listens on 127.0.0.1 only and is gone after the run and after kill -9 of make;
nothing is written outside OUT, models/ and the Hugging Face cache; a model's own Python code
(trust_remote_code) runs only for a model that declares it; and with the models on disk the whole
board, judge included, runs with no network at all (a network namespace with none); every file
written under OUT honours the umask (0600 under `umask 077`); and `make clean` removes only what
the project wrote in OUT, never a file of yours (OUT=/, the project, HOME: tests/test_bad_input.py).
"""
import base64
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import ROOT, SMOLLM2, needs_smollm2, slow
pytestmark = [slow, needs_smollm2]

KEY = "sk-fake-0123456789abcdef-never-print-me"
PASSWORD = "pw-NeverPrintThisPassword42"
# Every form a server could echo: the key, the password, and HTTP Basic auth of user:password.
SECRETS = [KEY, PASSWORD, base64.b64encode(f"user:{PASSWORD}".encode()).decode()]


class Echo(BaseHTTPRequestHandler):
    """An OpenAI-compatible server that puts every request header in its error bodies.

    The first path segment says how it answers: /401/v1 refuses the key, /400/v1 fails each
    question, /ok/v1 answers, /html/v1 answers 200 with an HTML page that starts with the headers."""

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self._reply(200, {"object": "list", "data": [{"id": "m", "object": "model"}]})

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        mode = self.path.strip("/").split("/")[0]
        headers = "; ".join(f"{k}: {v}" for k, v in self.headers.items())
        if mode == "html":  # a proxy's error page, quoting the request (the key first)
            page = (f"Authorization: {self.headers.get('Authorization')}; {headers}"
                    "<html><body>bad gateway</body></html>").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.send_header("retry-after-ms", "5")  # quick retries
            self.end_headers()
            self.wfile.write(page)
        elif mode == "ok":
            self._reply(200, {"id": "x", "object": "chat.completion", "created": 0, "model": body.get("model", "m"),
                              "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                           "message": {"role": "assistant", "content": "M"}}],
                              "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
        else:
            self._reply(int(mode), {"error": {"message": f"rejected request with headers {headers}",
                                              "type": "invalid_request_error"}})

    def log_message(self, *args):  # keep the test's output clean
        pass


@pytest.fixture(scope="module")
def echo():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def models_toml(host: str, extra: str = "") -> str:
    return f"""
[defaults]
models = ["tiny", "parrot", "api_400", "api_creds"]
reference = "tiny"
judge = "judge"

[models.tiny]
path = "{SMOLLM2}"
max_tokens = 4
n_ctx = 512

[models.judge]
path = "{SMOLLM2}"
n_ctx = 1024

[models.parrot]
backend = "custom"

[models.api_400]
backend = "openai"
base_url = "http://{host}/400/v1"
api_model = "m"
api_key_env = "LLMEVAL_FAKE_KEY"
concurrency = 2

[models.api_401]
backend = "openai"
base_url = "http://{host}/401/v1"
api_model = "m"
api_key_env = "LLMEVAL_FAKE_KEY"

[models.api_creds]
backend = "openai"
base_url = "http://user:{PASSWORD}@{host}/400/v1"
api_model = "m"

[models.api_ok]
backend = "openai"
base_url = "http://user:{PASSWORD}@{host}/ok/v1"
api_model = "m"
api_key_env = "LLMEVAL_FAKE_KEY"

[models.judge_401]
backend = "openai"
base_url = "http://{host}/401/v1"
api_model = "m"
api_key_env = "LLMEVAL_FAKE_KEY"

[models.judge_creds]
backend = "openai"
base_url = "http://user:{PASSWORD}@{host}/400/v1"
api_model = "m"
api_key_env = "LLMEVAL_FAKE_KEY"
{extra}"""


def secret_env(tmp_path: Path, host: str) -> dict:
    """The fake key under every name a backend or judge could read, and private HOME/TMPDIR/caches
    so that anything written outside OUT shows."""
    env = {**os.environ, "LLMEVAL_FAKE_KEY": KEY, "OPENAI_API_KEY": KEY, "ANTHROPIC_API_KEY": KEY,
           "HF_TOKEN": KEY, "OPENAI_API_BASE": f"http://{host}/401/v1", "OPENAI_BASE_URL": f"http://{host}/401/v1"}
    for var in ("HOME", "TMPDIR", "XDG_CACHE_HOME", "HF_HOME"):
        env[var] = str(tmp_path / var.lower())
        Path(env[var]).mkdir(exist_ok=True)
    env.pop("MPLCONFIGDIR", None)
    return env


def make(tmp_path: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    cmd = ["make", "--no-print-directory", "-C", str(ROOT), *args, f"OUT={tmp_path / 'out'}",
           f"MODELS_TOML={tmp_path / 'models.toml'}", f"QUESTIONS={tmp_path / 'q.txt'}"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


def assert_no_secret(tmp_path: Path, *results: subprocess.CompletedProcess) -> None:
    for result in results:
        for secret in SECRETS:
            assert secret not in result.stdout + result.stderr, f"secret on the terminal:\n{result.stderr}"
    # Every file we write (OUT, models/, the private HOME and caches); not models.toml, the user's own.
    folders = [tmp_path / "out", ROOT / "models", *(tmp_path / d for d in ("home", "tmpdir", "xdg_cache_home", "hf_home"))]
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink() and path.suffix != ".gguf":
                data = path.read_bytes()
                for secret in SECRETS:
                    assert secret.encode() not in data, f"secret in {path}"


def tree(folder: Path, skip: tuple[str, ...]) -> dict:
    """path -> mtime of every file under `folder`, outside the `skip` folders."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if d not in skip]
        for name in filenames:
            path = Path(dirpath) / name
            found[str(path)] = path.lstat().st_mtime_ns
    return found


def test_no_key_or_password_anywhere_for_every_backend(tmp_path, echo):
    (tmp_path / "models.toml").write_text(models_toml(echo), encoding="utf-8")
    (tmp_path / "q.txt").write_text("What is 2+2?\nName a colour.\n", encoding="utf-8")
    env = secret_env(tmp_path, echo)
    repo_before = tree(ROOT, skip=(".venv", "models", "__pycache__", ".pytest_cache", ".git"))
    # llama.cpp and custom answer; the API models fail every question (their server echoes the key,
    # the password, the Basic auth header) and the one refusing the key stops at once.
    infer = make(tmp_path, env, "-k", "infer", "MODELS=tiny parrot api_400 api_creds")
    assert infer.returncode != 0 and "Traceback" not in infer.stderr  # api_400 answered nothing
    refused = make(tmp_path, env, "infer", "MODELS=api_401")
    assert refused.returncode != 0 and "refused model 'm'" in refused.stderr, refused.stderr
    errors = json.loads((tmp_path / "out" / "api_creds.json").read_text(encoding="utf-8"))
    assert errors[0]["error"] and "***" in errors[0]["error"]  # the echoed secrets, masked
    ok = make(tmp_path, env, "infer", "MODELS=api_ok tiny parrot")
    assert ok.returncode == 0, ok.stderr
    assert "://***@" in (tmp_path / "out" / "stamps" / "api_ok.json").read_text(encoding="utf-8")
    assert_no_secret(tmp_path, infer, refused, ok)
    # Nothing written outside OUT, models/ and the (private) HF cache: not the repo, HOME or TMPDIR.
    assert tree(ROOT, skip=(".venv", "models", "__pycache__", ".pytest_cache", ".git")) == repo_before
    for folder in ("home", "tmpdir", "xdg_cache_home"):
        assert not list((tmp_path / folder).rglob("*")), list((tmp_path / folder).rglob("*"))


def test_no_key_or_password_anywhere_for_every_judge_kind(tmp_path, echo):
    (tmp_path / "models.toml").write_text(models_toml(echo), encoding="utf-8")
    (tmp_path / "q.txt").write_text("What is 2+2?\n", encoding="utf-8")
    env = secret_env(tmp_path, echo)
    base = ["MODELS=tiny parrot", "REFERENCE=tiny"]
    results = [make(tmp_path, env, "board", *base)]  # the local llama.cpp judge, the key in the environment
    assert results[0].returncode == 0, results[0].stderr
    for judge in ("judge_401", "judge_creds", "chatgpt_fn"):  # openai endpoint; alpaca_eval annotator
        results.append(make(tmp_path, env, "board", *base, f"JUDGE={judge}"))
        assert "Traceback" not in results[-1].stderr, results[-1].stderr
        assert results[-1].returncode != 0, results[-1].stdout  # every call failed: not a success
        results.append(make(tmp_path, env, "judge-check", f"JUDGE={judge}"))
        assert "Traceback" not in results[-1].stderr, results[-1].stderr
    assert_no_secret(tmp_path, *results)
    for folder in ("home", "tmpdir", "xdg_cache_home"):
        assert not list((tmp_path / folder).rglob("*")), list((tmp_path / folder).rglob("*"))


def test_a_200_page_echoing_the_key_shows_none_of_it(tmp_path, echo):
    """Issue 16, item 5: the line naming what came back quotes the page's first bytes; a page that
    starts with the request's Authorization header shows neither the key nor any part of it."""
    extra = (f'[models.api_html]\nbackend = "openai"\nbase_url = "http://{echo}/html/v1"\n'
             'api_model = "m"\napi_key_env = "LLMEVAL_FAKE_KEY"\n')
    (tmp_path / "models.toml").write_text(models_toml(echo, extra), encoding="utf-8")
    (tmp_path / "q.txt").write_text("What is 2+2?\n", encoding="utf-8")
    result = make(tmp_path, secret_env(tmp_path, echo), "infer", "MODELS=api_html")
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    record, = json.loads((tmp_path / "out" / "api_html.json").read_text(encoding="utf-8"))
    assert "answered 200 with a body that is not JSON on 7 tries" in record["error"], record
    assert "text/html" in record["error"] and "Bearer ***" in record["error"], record
    assert_no_secret(tmp_path, result)
    for path in [*(tmp_path / "out").rglob("*.json*")]:
        assert KEY[:8].encode() not in path.read_bytes(), path  # not even the start of the key
    assert KEY[:8] not in result.stderr


def process_group(pgid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # the fifth field of /proc/PID/stat: the process group
            pids.append(int(stat.parent.name))
    return pids


def listening(pids: list[int]) -> list[str]:
    """host:port of every TCP socket these processes listen on (from /proc/net/tcp{,6})."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                address, port = fields[1].split(":")
                raw = bytes.fromhex(address)
                if len(raw) == 4:
                    host = ".".join(str(b) for b in raw[::-1])
                else:  # IPv6 in four little-endian words
                    words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]
                    host = ":".join(b"".join(words).hex()[i:i + 4] for i in range(0, 32, 4))
                found.append(f"{host}:{int(port, 16)}")
    return found


LOOPBACK = ("127.0.0.1", "0000:0000:0000:0000:0000:0000:0000:0001")


@pytest.mark.parametrize("kill", [False, True], ids=["run", "kill-9"])
def test_servers_listen_on_loopback_and_are_gone_after(tmp_path, echo, kill):
    (tmp_path / "models.toml").write_text(models_toml(echo), encoding="utf-8")
    (tmp_path / "q.txt").write_text("What is 2+2?\nWhy is the sky blue?\n", encoding="utf-8")
    env = secret_env(tmp_path, echo)
    cmd = ["make", "--no-print-directory", "-C", str(ROOT), "board", "MODELS=tiny api_ok", "REFERENCE=tiny",
           f"OUT={tmp_path / 'out'}", f"MODELS_TOML={tmp_path / 'models.toml'}", f"QUESTIONS={tmp_path / 'q.txt'}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    seen, started = set(), time.time()
    while proc.poll() is None and time.time() - started < 600:
        seen.update(listening(process_group(proc.pid)))
        if kill and (tmp_path / "out" / "judge").exists():  # judging has begun: kill make and all it runs
            seen.update(listening(process_group(proc.pid)))
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.communicate(timeout=600)
    assert all(address.rsplit(":", 1)[0] in LOOPBACK for address in seen), seen
    deadline = time.time() + 30
    while process_group(proc.pid) and time.time() < deadline:
        time.sleep(0.1)
    assert not process_group(proc.pid), "a process of the run outlived it"
    if not kill:
        assert proc.returncode == 0


def no_network_available() -> bool:
    return bool(shutil.which("unshare")) and subprocess.run(["unshare", "-rn", "true"]).returncode == 0


@pytest.mark.skipif(not no_network_available(), reason="this kernel does not allow network namespaces (unshare -rn)")
def test_the_whole_board_runs_with_no_network(tmp_path):
    """Offline first: with .venv and the models on disk, `make board` (inference, reference, the
    local judge, every view) in a network namespace with no interface up, not even loopback."""
    (tmp_path / "models.toml").write_text(
        f'[defaults]\nmodels = ["greedy", "sampled"]\nreference = "greedy"\njudge = "greedy"\n\n'
        f'[models.greedy]\npath = "{SMOLLM2}"\nmax_tokens = 16\n\n'
        f'[models.sampled]\npath = "{SMOLLM2}"\nmax_tokens = 16\ntemperature = 0.8\nseed = 3\n', encoding="utf-8")
    (tmp_path / "q.txt").write_text("What is the capital of France?\n为什么天空是蓝色的？\n", encoding="utf-8")
    cmd = ["unshare", "-rn", "make", "--no-print-directory", "-C", str(ROOT), "board", f"OUT={tmp_path / 'out'}",
           f"MODELS_TOML={tmp_path / 'models.toml'}", f"QUESTIONS={tmp_path / 'q.txt'}"]
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["judge_calls"]["made"] == 4 and manifest["judge_calls"]["failed"] == 0
    assert (tmp_path / "out" / "board.html").is_file() and "Traceback" not in run.stderr


REMOTE_CODE_MARKER = '''
import os as _os
from pathlib import Path as _Path
_marker = _os.environ.get("LLMEVAL_REMOTE_CODE_MARKER")
if _marker:
    _Path(_marker).write_text("the model's own code ran")
'''


def test_remote_code_runs_only_for_a_model_that_declares_it(tiny_chat_llama, tmp_path):
    folder = tmp_path / "chat-model"
    shutil.copytree(tiny_chat_llama, folder)
    with (folder / "modeling_tinychat.py").open("a", encoding="utf-8") as f:
        f.write(REMOTE_CODE_MARKER)
    (tmp_path / "models.toml").write_text(
        f'[models.plain]\npath = "{folder}"\nbackend = "transformers"\nmax_tokens = 3\n\n'
        f'[models.trusted]\npath = "{folder}"\nbackend = "transformers"\nmax_tokens = 3\n'
        'trust_remote_code = true\nmodel_chat = true\n', encoding="utf-8")
    (tmp_path / "q.txt").write_text("Hello?\n", encoding="utf-8")
    marker = tmp_path / "marker"
    env = {**os.environ, "LLMEVAL_REMOTE_CODE_MARKER": str(marker), "HF_HOME": str(tmp_path / "hf")}
    plain = make(tmp_path, env, "infer", "MODELS=plain")
    assert "Traceback" not in plain.stderr, plain.stderr
    assert not marker.exists(), "remote code ran for a model without trust_remote_code"
    trusted = make(tmp_path, env, "infer", "MODELS=trusted")
    assert trusted.returncode == 0, trusted.stderr
    assert marker.exists()


TWO_MODELS = (f'[defaults]\nmodels = ["greedy", "sampled"]\nreference = "greedy"\njudge = "greedy"\n\n'
              f'[models.greedy]\npath = "{SMOLLM2}"\nmax_tokens = 8\nn_ctx = 1024\n\n'
              f'[models.sampled]\npath = "{SMOLLM2}"\nmax_tokens = 8\ntemperature = 0.8\nseed = 3\nn_ctx = 1024\n')


def test_every_output_honours_the_umask(tmp_path):
    """Under `umask 077` no file of the board (answers, caches, views, manifest, verdicts) is
    readable by others; under 022 the answers are 0644, as any file the user makes."""
    (tmp_path / "models.toml").write_text(TWO_MODELS, encoding="utf-8")
    (tmp_path / "q.txt").write_text("What is 2+2?\nName a colour.\n", encoding="utf-8")
    for umask, target, out in (("077", "board", tmp_path / "out"), ("022", "infer", tmp_path / "out022")):
        cmd = " ".join(f"'{w}'" for w in ["make", "--no-print-directory", "-C", str(ROOT), target, f"OUT={out}",
                                          f"MODELS_TOML={tmp_path / 'models.toml'}", f"QUESTIONS={tmp_path / 'q.txt'}"])
        run = subprocess.run(["bash", "-c", f"umask {umask} && {cmd}"], capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, run.stderr
        files = [p for p in out.rglob("*") if p.is_file()]
        assert (out / "greedy.json") in files and (out / "cache" / "greedy.jsonl") in files
        if umask == "077":
            assert (out / "board.html") in files and (out / "manifest.json") in files
            shared = {str(p.relative_to(out)): oct(p.stat().st_mode & 0o777) for p in files if p.stat().st_mode & 0o077}
            assert not shared, f"readable by others under umask 077: {shared}"
        else:
            assert (out / "greedy.json").stat().st_mode & 0o777 == 0o644


def test_make_clean_removes_only_what_llmeval_wrote(tmp_path):
    """`make clean` removes the answers, caches, stamps and the marker it knows, says each, and
    keeps a file and a folder of the user's in OUT (the old rule was rm -rf OUT/*)."""
    (tmp_path / "models.toml").write_text(TWO_MODELS, encoding="utf-8")
    (tmp_path / "q.txt").write_text("What is 2+2?\n", encoding="utf-8")
    out = tmp_path / "out"
    (out / "mine").mkdir(parents=True)
    (out / "notes.txt").write_text("my notes", encoding="utf-8")
    (out / "mine" / "keep.json").write_text("[]", encoding="utf-8")
    (out / "config.json").write_text('{"mine": true}', encoding="utf-8")  # JSON, but not answers
    env = {**os.environ}
    assert make(tmp_path, env, "merge", "MODELS=greedy").returncode == 0
    assert (out / "greedy.json").is_file() and (out / ".llmeval").is_file()
    clean = make(tmp_path, env, "clean")
    assert clean.returncode == 0 and "Traceback" not in clean.stderr, clean.stderr
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "mine", "notes.txt"]
    assert (out / "notes.txt").read_text(encoding="utf-8") == "my notes" and (out / "mine" / "keep.json").is_file()
    for name in ("cache/", "stamps/", "greedy.json", "output.json", ".llmeval"):
        assert f"removed {out / name.rstrip('/')}{'/' if name.endswith('/') else ''}" in clean.stdout, clean.stdout
    assert f"kept {out / 'notes.txt'}: not something llmeval writes" in clean.stdout
    again = make(tmp_path, env, "clean")
    assert again.returncode == 0 and "has no .llmeval marker and nothing llmeval writes" in again.stdout, again.stdout


@pytest.mark.parametrize("var", ["OUT", "MODELS", "JUDGE", "REFERENCE", "QUESTIONS", "MODELS_TOML"])
def test_shell_code_in_a_make_variable_never_runs(tmp_path, var):
    """A quote, $(...) or backticks in a variable would run as shell code in the Makefile's
    $(shell ...) lines and in recipes (make help echoes them all): refused in one line, first."""
    pwned = tmp_path / "pwned"
    for payload in (f"x';{{touch,{pwned}}};'", f"$$(touch {pwned})", f"`touch {pwned}`", f"a;touch {pwned}"):
        result = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "help", f"{var}={payload}"],
                                capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert not pwned.exists(), f"{var}={payload} ran"
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stdout + result.stderr
        assert f"error: {var} holds " in lines[0] and "a character the shell acts on" in lines[0]
