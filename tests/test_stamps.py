"""tools/stamps.py: make's stamps, rewritten only when what the answers are made from changes,
with no password from a base_url in them; and its one-line errors."""
import json
import subprocess
import sys

from conftest import ROOT
from lib.registry import load_registry
from stamps import write_stamp
from test_registry import GOOD, write


def test_stamp_rewritten_only_on_change(tmp_path):
    questions = tmp_path / "q.txt"
    questions.write_text("one\n", encoding="utf-8")
    stamp = tmp_path / "stamps" / "a.json"
    registry = load_registry(write(tmp_path, GOOD))
    assert write_stamp(registry, "a", questions, stamp)
    assert not write_stamp(registry, "a", questions, stamp)  # same entry, same questions
    other = tmp_path / "stamps" / "b.json"
    assert write_stamp(registry, "b", questions, other)
    hotter = load_registry(write(tmp_path, GOOD.replace("0.7", "0.9")))
    assert not write_stamp(hotter, "b", questions, other)  # another model's change leaves b alone
    assert write_stamp(load_registry(write(tmp_path, GOOD.replace("0.7", "0.9"))), "a", questions, stamp)
    questions.write_text("one\ntwo\n", encoding="utf-8")
    assert write_stamp(load_registry(write(tmp_path, GOOD.replace("0.7", "0.9"))), "a", questions, stamp)
    assert json.loads(stamp.read_text())["model"]["temperature"] == 0.9


def stamps(tmp_path, *args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "stamps.py"), *args, "--models-toml",
                           str(tmp_path / "models.toml"), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=60)


def test_stamp_value_names_the_entries_without_a_password(tmp_path):
    write(tmp_path, GOOD + '[models.api]\nbackend = "openai"\nbase_url = "http://user:s3cret@127.0.0.1:9/v1"\n'
                    'api_model = "x"\n')
    assert stamps(tmp_path, "stamp-value", "judge", "api", "versus=all").returncode == 0
    text = (tmp_path / "out" / "stamps" / "judge.txt").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[:2] == ["api", "versus=all"] and json.loads(lines[2])["backend"] == "openai"
    assert "s3cret" not in text and "127.0.0.1:9" in text


def test_stamp_errors_are_one_line(tmp_path):
    write(tmp_path, GOOD)
    missing = stamps(tmp_path, "stamp", "a", "--questions", str(tmp_path / "none.txt"))
    assert missing.returncode == 2
    assert missing.stderr == f"error: questions file not found: {tmp_path / 'none.txt'} (set QUESTIONS)\n"
    folder = stamps(tmp_path, "stamp", "a", "--questions", str(tmp_path))
    assert folder.returncode == 2 and folder.stderr.count("\n") == 1 and "is not a file" in folder.stderr
