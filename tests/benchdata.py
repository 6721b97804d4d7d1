"""The real benchmark files served the way GitHub serves them, for tests: REPO/COMMIT/PATH.

/work/shared/benchmarks (../shared/benchmarks beside the clone in CI) keeps each set's files
under its set folder at their repository path; `build_layout` links them into a folder laid out
as raw.githubusercontent.com is (OWNER/REPO/COMMIT/PATH), from data/benchmarks.toml's pins, and
`serve` serves a folder over HTTP on 127.0.0.1; `mt_bench_data` is the MT-Bench files' folder and
`fastchat_common` FastChat's own llm_judge/common.py (fschat), for the tests that check against it.
Nothing here downloads anything.
"""
from __future__ import annotations

import functools
import http.server
import os
import sys
import threading
import types
from pathlib import Path

from lib.benchsets import load_sets

ROOT = Path(__file__).resolve().parent.parent
# The folder of /work/shared/benchmarks that holds each repository's files.
REPO_FOLDERS = {"lm-sys/FastChat": "mt_bench", "tatsu-lab/alpaca_eval": "alpaca_eval",
                "lmarena/arena-hard-auto": "arena_hard", "THUDM/AlignBench": "alignbench"}


def shared_benchmarks() -> Path | None:
    """../shared/benchmarks beside the clone (CI), or beside its parent (a git worktree)."""
    for candidate in (os.environ.get("LLMEVAL_SHARED_BENCHMARKS"), ROOT.parent / "shared" / "benchmarks",
                      ROOT.parent.parent / "shared" / "benchmarks"):
        if candidate and (Path(candidate) / "README.md").is_file():
            return Path(candidate)
    return None


def build_layout(folder: Path, source: Path) -> Path:
    """Symlinks folder/REPO/COMMIT/PATH -> source/SETFOLDER/PATH for every declared file."""
    for table in load_sets().values():
        for entry in table["files"]:
            target = source / REPO_FOLDERS[entry["repo"]] / entry["path"]
            link = folder / entry["repo"] / entry["commit"] / entry["path"]
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(target)
    return folder


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # the test output stays readable
        pass


def serve(folder: Path):
    """(server, base URL) of a threaded HTTP server of `folder` on 127.0.0.1; call server.shutdown()."""
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def mt_bench_data() -> Path:
    """FastChat's llm_judge/data folder of the shared benchmarks (a path that does not exist without them)."""
    return (shared_benchmarks() or Path("/nonexistent")) / "mt_bench" / "fastchat" / "llm_judge" / "data"


def fastchat_common():
    """fastchat.llm_judge.common as installed (fschat 0.2.36); it imports anthropic, which it never uses here."""
    import pytest

    pytest.importorskip("fastchat", reason="fschat is not installed (requirements-nodeps.txt pins it; make setup)")
    sys.modules.setdefault("anthropic", types.ModuleType("anthropic"))
    from fastchat.llm_judge import common
    return common
