"""tools/outdir.py, run as make runs it (the system python3): links are followed before OUT is
judged, `clean` never follows a link out of OUT, and it knows every name the project writes.
Through make: tests/test_bad_input.py (the refusals) and tests/test_security.py (clean keeps
your files); every documented make line, then clean: tests/test_makefile.py."""
import subprocess
import sys

from conftest import ROOT
OUTDIR = ROOT / "tools" / "outdir.py"


def outdir(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["python3", str(OUTDIR), *map(str, args)], capture_output=True, text=True, timeout=60)


def test_a_link_to_root_or_to_the_project_is_refused(tmp_path):
    (tmp_path / "to_root").symlink_to("/")
    (tmp_path / "to_project").symlink_to(ROOT)
    (tmp_path / "to_models").symlink_to(ROOT / "models")
    for link, said in (("to_root", f"(that is /) is / or holds the project"),
                       ("to_project", "is / or holds the project"),
                       ("to_models", "is one of the project's own folders")):
        result = outdir("check", tmp_path / link)
        assert result.returncode == 2 and said in result.stderr, result.stderr
        assert len(result.stderr.splitlines()) == 1
    assert outdir("check", tmp_path / "new" / "out").returncode == 0  # not there yet: fine


def test_clean_removes_a_link_never_what_it_points_to(tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    (out / "stamps").mkdir(parents=True)
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("mine", encoding="utf-8")
    (out / "cache").symlink_to(elsewhere)  # a cache on another disk
    (out / ".llmeval").write_text("", encoding="utf-8")  # llmeval wrote here
    (out / ".board.csv.abc123.tmp").write_text("half", encoding="utf-8")  # an interrupted atomic write
    (out / "model.json").write_text('[{"instruction": "q", "output": "a", "generator": "model"}]', encoding="utf-8")
    (out / "questions.json").write_text('[{"instruction": "q"}]', encoding="utf-8")  # the user's, not answers
    result = outdir("clean", out)
    assert result.returncode == 0, result.stderr
    assert (elsewhere / "precious.txt").read_text(encoding="utf-8") == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["questions.json"]
    assert f"removed {out / 'cache'}\n" in result.stdout and f"removed {out / 'stamps'}/\n" in result.stdout
    assert "1 kept" in result.stdout


def test_every_output_name_of_the_tools_is_known():
    """Each top-level name the tools write under OUT (`out_dir / "x"`, OUT/x in their docs) is one
    clean removes: a new output added without OUTPUTS would be left behind by make clean."""
    import fnmatch
    import re

    sys.path.insert(0, str(ROOT / "tools"))
    import outdir as module

    names = set()
    for path in [*(ROOT / "tools").rglob("*.py"), *(ROOT / "bench").rglob("*.py")]:
        text = path.read_text(encoding="utf-8")
        names |= set(re.findall(r'(?:out|out_dir|args\.out) / "([A-Za-z_.-]*[A-Za-z_-])"', text))
        names |= {m for m in re.findall(r"OUT/([A-Za-z_.-]*[A-Za-z_-])", text) if m not in ("NAME",)}
    assert names, "no output names found in tools/"
    for name in sorted(names):
        folder = f"{name}/"
        known = any(fnmatch.fnmatchcase(n, p) for p in module.OUTPUTS for n in (name, folder))
        assert known or name.endswith(".json"), f"OUT/{name} is written by the tools but not in outdir.OUTPUTS"


def test_clean_needs_the_marker(tmp_path):
    """A folder llmeval never wrote into (no .llmeval) keeps its cache/, board.csv and manifest.json."""
    out = tmp_path / "mine"
    (out / "cache").mkdir(parents=True)
    for name in ("cache/x.jsonl", "board.csv", "manifest.json"):
        (out / name).write_text("the user's", encoding="utf-8")
    result = outdir("clean", out)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stdout + result.stderr
    assert "has no .llmeval marker: llmeval never wrote there" in result.stderr and not result.stdout
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["board.csv", "cache", "cache/x.jsonl",
                                                                       "manifest.json"]
    (tmp_path / "empty").mkdir()
    result = outdir("clean", tmp_path / "empty")  # nothing of ours, no marker: nothing to do, not an error
    assert result.returncode == 0 and "nothing to clean" in result.stdout


def test_clean_refuses_a_clone_or_a_registry_anywhere_it_would_remove(tmp_path):
    """.git or models.toml in OUT, or at any depth in a folder clean would remove: nothing removed."""
    for planted in ("judge/clone/.git/HEAD", "cache/a/b/c/models.toml", ".git", "models.toml", "sets/wt/.git"):
        out = tmp_path / planted.replace("/", "_").replace(".", "_")
        (out / planted).parent.mkdir(parents=True, exist_ok=True)
        (out / planted).write_text("", encoding="utf-8")
        (out / ".llmeval").write_text("", encoding="utf-8")
        (out / "board.csv").write_text("model,score\n", encoding="utf-8")
        before = sorted(out.rglob("*"))
        result = outdir("clean", out)
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stdout + result.stderr
        assert f"{out / planted.split('/HEAD')[0]} is in OUT={out}" in result.stderr, result.stderr
        assert sorted(out.rglob("*")) == before
