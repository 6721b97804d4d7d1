"""The Makefile's registry handling: a models.toml without [defaults] (or without a judge) still
runs what needs no judge; a missing or broken models.toml, or nothing to run, is one line and a
failure through make, never "Nothing to be done" with exit 0. Real make, real embedded model."""
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SMOLLM2 = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

NO_DEFAULTS = f"""
[models.tiny]
path = "{SMOLLM2}"
max_tokens = 4
n_ctx = 512
"""


def make(tmp_path, *args, toml="models.toml"):
    cmd = ["make", "--no-print-directory", "-C", str(ROOT), *args, f"OUT={tmp_path / 'out'}",
           f"MODELS_TOML={tmp_path / toml}", f"QUESTIONS={tmp_path / 'q.txt'}"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def errors(result):
    """Our own lines (make adds its '*** [...] Error 2' after them)."""
    return [line for line in result.stderr.splitlines() if not line.startswith("make: ***")]


@pytest.mark.skipif(not SMOLLM2.is_file(), reason="run `make models` first")
def test_registry_without_defaults_runs_what_needs_no_judge(tmp_path):
    (tmp_path / "models.toml").write_text(NO_DEFAULTS, encoding="utf-8")
    (tmp_path / "q.txt").write_text("What is 2 + 2?\n", encoding="utf-8")
    for args in (["models"], ["infer", "MODELS=tiny"], ["reference", "MODELS=tiny", "REFERENCE=tiny"]):
        result = make(tmp_path, *args)
        assert result.returncode == 0, (args, result.stderr)
        assert "expected one argument" not in result.stderr
    assert (tmp_path / "out" / "tiny.json").is_file() and (tmp_path / "out" / "reference.json").is_file()
    # Only what needs a value asks for it, in one line.
    for args, wanted in ((["infer"], "no models to run: set MODELS="),
                         (["infer", "MODELS="], "no models to run: set MODELS="),
                         (["reference", "MODELS=tiny"], "no reference model: set REFERENCE="),
                         (["board", "MODELS=tiny", "REFERENCE=tiny"], "no judge: set JUDGE="),
                         (["judge-check"], "no judge: set JUDGE=")):
        result = make(tmp_path, *args)
        assert result.returncode != 0, args
        assert len(errors(result)) == 1 and wanted in errors(result)[0], (args, result.stderr)
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("content, wanted", [
    (None, "file not found"),
    ("[models.a\npath = 1\n", "not valid TOML"),
    ('[defaults]\nmodels = ["a"]\n[models.a]\npath = "a.gguf"\nmax_tokenz = 3\n', "unknown key 'max_tokenz'"),
])
@pytest.mark.parametrize("goal", ["infer", "reference", "board", "download", "merge"])
def test_broken_or_missing_registry_fails_with_one_line(tmp_path, content, wanted, goal):
    if content is not None:
        (tmp_path / "models.toml").write_text(content, encoding="utf-8")
    (tmp_path / "q.txt").write_text("What is 2 + 2?\n", encoding="utf-8")
    result = make(tmp_path, goal)
    assert result.returncode != 0
    lines = errors(result)
    assert len(lines) == 1 and lines[0].startswith("error: ") and wanted in lines[0], result.stderr
    assert "Nothing to be done" not in result.stdout + result.stderr
