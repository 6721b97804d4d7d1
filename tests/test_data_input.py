"""A hostile or broken benchmark set, mirror or cache (tools/data.py, benchsets.py, benchformats.py):
a file path that would leave the cache, a reference_name that would leave OUT, credentials in
LLMEVAL_DATA_URL (sent as basic auth, never shown), a mirror that drips or never ends (the
deadline, the size cap), a killed fetch's .part file, an unwritable cache, duplicate question
ids. Each is one line and a non-zero exit, through the real fetch code and a local server."""
import base64
import functools
import hashlib
import http.server
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lib import benchsets
import data
from lib.records import InputError, load_questions

ROOT = Path(__file__).resolve().parent.parent


def run_data(*args, env=None):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "data.py"), *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, cwd=ROOT)


def own_set(tmp_path, files: str, extra: str = "") -> Path:
    """A benchmarks.toml of one FastChat-format set `evil` with these [[sets.evil.files]] lines."""
    toml = tmp_path / "own.toml"
    toml.write_text(f'[sets.evil]\nformat = "fastchat"\nprotocol = "grade"\ngrader = "mt_bench"\n{extra}'
                    f'[[sets.evil.files]]\nrole = "questions"\n{files}', encoding="utf-8")
    return toml


def test_a_file_path_cannot_leave_the_cache(tmp_path, monkeypatch):
    """repo is owner/name and path stays in the repository: a path with .. never reaches (nor
    removes) a file outside LLMEVAL_DATA_DIR; reference_name follows the model-name rule."""
    victim = tmp_path / "victim.txt"
    victim.write_text("mine", encoding="utf-8")
    pin = f'commit = "{"0" * 40}"\nsha256 = "{"0" * 64}"\n'
    toml = own_set(tmp_path, f'repo = "lm-sys/FastChat"\npath = "../../../../victim.txt"\n{pin}')
    env = {"LLMEVAL_DATA_DIR": str(tmp_path / "cache"), "LLMEVAL_DATA_URL": "http://127.0.0.1:1"}
    result = run_data("evil", "--out", str(tmp_path / "out"), "--benchmarks", str(toml), env=env)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "path = '../../../../victim.txt' has an empty, '.' or '..' part" in lines[0]
    assert victim.read_text(encoding="utf-8") == "mine"
    for files, said in ((f'repo = "../x"\npath = "a.jsonl"\n{pin}', "repo = '../x' must be owner/name"),
                        (f'repo = "a/b/c"\npath = "a.jsonl"\n{pin}', "must be owner/name"),
                        (f'repo = ".."\npath = "a.jsonl"\n{pin}', "must be owner/name"),
                        (f'repo = "a/b"\npath = "/etc/passwd"\n{pin}', "is absolute"),
                        (f'repo = "a/b"\npath = "x/../../y"\n{pin}', "'..' part")):
        with pytest.raises(InputError, match=re.escape(said)):
            benchsets.load_sets(own_set(tmp_path, files))
    url = f'url = "http://127.0.0.1:1/a/.."\nsha256 = "{"0" * 64}"\n'
    for name in ("../../../x", "org/name ü", "a b", ".."):
        with pytest.raises(InputError, match="reference_name = .* must be a plain identifier"):
            benchsets.load_sets(own_set(tmp_path, url, f'reference = "questions"\nreference_name = "{name}"\n'))
    entry = benchsets.load_sets(own_set(tmp_path, url))["evil"]["files"][0]
    monkeypatch.setenv("LLMEVAL_DATA_DIR", str(tmp_path / "cache"))
    # A URL whose last part is ".." names a file inside the cache, not the cache's own folder.
    assert data.cache_path(entry).parent == tmp_path / "cache" / "url" / ("0" * 16)


class _Mirror(http.server.SimpleHTTPRequestHandler):
    """The benchmark layout behind basic auth (user llmeval, password s3cretKEY); /drip: a body
    byte every 0.2 s; /slow-headers: the same in the headers; /endless: a 200 reply that never ends."""
    seen: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/drip"):
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self._send(lambda: (time.sleep(0.2), b"x")[1])
        elif self.path.startswith("/slow-headers"):  # a status line, then headers a byte at a time
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            self._send(lambda: (time.sleep(0.2), b"X")[1])
        elif self.path.startswith("/endless"):
            self.send_response(200)
            self.end_headers()
            self._send(lambda: b"x" * 65536)
        else:
            self.seen.append(self.headers.get("Authorization"))
            if self.headers.get("Authorization") != "Basic " + base64.b64encode(b"llmeval:s3cretKEY").decode():
                self.send_error(401)
                return
            super().do_GET()

    def _send(self, block):
        try:
            for _ in range(100_000):
                self.wfile.write(block())
                self.wfile.flush()
        except OSError:  # the fetch gave up: what is tested
            pass


@pytest.fixture
def mirror(bench_layout):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Mirror, directory=str(bench_layout)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Mirror.seen = []
    yield server.server_address[1]
    server.shutdown()


def test_credentials_in_the_mirror_url_are_sent_and_never_shown(mirror, tmp_path):
    """http://user:KEY@host: basic auth sent as a header (not as a host name), the KEY in no line."""
    url = f"http://llmeval:s3cretKEY@127.0.0.1:{mirror}"
    result = run_data("mt_bench", "--out", str(tmp_path / "out"),
                      env={"LLMEVAL_DATA_URL": url, "LLMEVAL_DATA_DIR": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    assert len(load_questions(tmp_path / "out" / "sets" / "mt_bench.jsonl")) == 80 and _Mirror.seen
    result = run_data("mt_bench", "--out", str(tmp_path / "out2"),
                      env={"LLMEVAL_DATA_URL": url.replace("s3cretKEY", "wrongKEY"),
                           "LLMEVAL_DATA_DIR": str(tmp_path / "cache2")})
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "Unauthorized" in lines[0] and f"http://***@127.0.0.1:{mirror}/lm-sys/FastChat/" in lines[0]
    assert "KEY" not in result.stderr + result.stdout


def test_a_dripping_or_endless_mirror_is_cut_off(mirror, tmp_path):
    """A total deadline per file and a size cap (LLMEVAL_DATA_DEADLINE, LLMEVAL_DATA_MAX_MB)."""
    cache = tmp_path / "cache"
    env = {"LLMEVAL_DATA_DIR": str(cache), "LLMEVAL_DATA_DEADLINE": "1", "LLMEVAL_DATA_MAX_MB": "2"}
    for where, said in (("drip", "took longer than 1 s (LLMEVAL_DATA_DEADLINE)"),
                        ("slow-headers", "took longer than 1 s (LLMEVAL_DATA_DEADLINE)"),
                        ("endless", "is larger than 2 MiB (LLMEVAL_DATA_MAX_MB)")):
        toml = own_set(tmp_path, f'url = "http://127.0.0.1:{mirror}/{where}/q.jsonl"\nsha256 = "{"0" * 64}"\n')
        result = run_data("evil", "--out", str(tmp_path / "out"), "--benchmarks", str(toml), env=env)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and said in lines[0], result.stderr
    assert not [p for p in cache.rglob("*") if p.is_file()]  # no .part left, nothing cached
    result = run_data("evil", "--out", str(tmp_path / "out"), "--benchmarks", str(toml),
                      env={**env, "LLMEVAL_DATA_DEADLINE": "soon"})
    assert result.returncode == 2 and result.stderr.strip() == \
        "error: LLMEVAL_DATA_DEADLINE=soon: must be a number above 0 (unset it for 600)"


def test_a_killed_fetchs_part_is_removed_next_time(bench_data_url, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMEVAL_DATA_DIR", str(tmp_path / "cache"))
    entry = benchsets.load_sets()["mt_bench"]["files"][0]
    dest = data.cache_path(entry)
    dest.parent.mkdir(parents=True)
    stale, live = (dest.parent / f".{dest.name}.{tag}.part" for tag in ("killed", "running"))
    for part in (stale, live):
        part.write_bytes(b"half a file")
    os.utime(stale, (time.time() - 3600,) * 2)  # older than any fetch may last (the deadline)
    assert data.fetch("mt_bench", entry) == dest
    assert not stale.exists() and live.exists()  # a young one may be another fetch's, still running


def test_an_unwritable_data_cache_is_one_line(tmp_path):
    (tmp_path / "a_file").write_text("", encoding="utf-8")
    caches = [tmp_path / "a_file" / "cache"]  # a file where a folder belongs: refused even for root
    if os.geteuid() != 0:  # root writes into a read-only folder anyway
        (tmp_path / "ro").mkdir(mode=0o555)
        caches.append(tmp_path / "ro")
    for cache in caches:
        result = run_data("mt_bench", "--out", str(tmp_path / "out"),
                          env={"LLMEVAL_DATA_DIR": str(cache), "LLMEVAL_DATA_URL": "http://127.0.0.1:1"})
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert "cannot write the data cache" in lines[0] and "set LLMEVAL_DATA_DIR to a writable folder" in lines[0]


def test_duplicate_question_ids_are_refused(tmp_path):
    """Answers and judgments are kept by question_id: a set that repeats one is refused in one line."""
    questions = tmp_path / "question.jsonl"
    questions.write_text('{"question_id": 81, "category": "writing", "turns": ["One?"]}\n'
                         '{"question_id": 82, "category": "writing", "turns": ["Two?"]}\n'
                         '{"question_id": 81, "category": "math", "turns": ["Three?"]}\n', encoding="utf-8")
    digest = hashlib.sha256(questions.read_bytes()).hexdigest()
    toml = own_set(tmp_path, f'url = "{questions.as_uri()}"\nsha256 = "{digest}"\n')
    result = run_data("evil", "--out", str(tmp_path / "out"), "--benchmarks", str(toml),
                      env={"LLMEVAL_DATA_DIR": str(tmp_path / "cache")})
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "question_id 81 is given to question 1 and again to question 3; ids must be unique" in lines[0]
    with pytest.raises(InputError, match="question_id 81 is given to two different questions"):
        load_questions(questions)  # the same file as QUESTIONS

