"""The docs and `make help` agree, checked the way simonw/llm checks its docs with cog: every target
and variable `make help` names is documented in README.md or docs/*.md, every `make ...` line of
their bash blocks parses (`make -n`: a dry run, nothing is built, fetched or answered), and their
relative links resolve. Fast (seconds): it never runs a recipe. Whether the documented lines also
*work* is test_makefile.py's test_every_documented_make_line_runs_for_real (minutes)."""
import os
import re
import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# make's own environment from a parent `make test` would turn these into sub-makes.
ENV = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")}


def make(*args: str, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), *args, f"OUT={out}"],
                          capture_output=True, text=True, timeout=60, env=ENV)


@pytest.fixture(scope="module")
def docs_text() -> str:
    return "\n".join(page.read_text(encoding="utf-8") for page in PAGES)


@pytest.fixture(scope="module")
def help_text(tmp_path_factory) -> str:
    result = make("help", out=tmp_path_factory.mktemp("help") / "out")
    assert result.returncode == 0, result.stderr
    return result.stdout


def documented_make_lines(text: str) -> list[str]:
    """`make ...` lines of the bash blocks, continuations joined, comments dropped."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("make "):
                lines.append(" ".join(line.split()))
    return list(dict.fromkeys(lines))


def test_readme_is_short_and_docs_exist():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 300
    assert len(PAGES) > 5


def test_every_target_of_make_help_is_documented(help_text, docs_text):
    targets = re.findall(r"^  make (\S+)", help_text, re.M)
    assert "board" in targets and "judge-weights" in targets, help_text
    missing = [t for t in targets if not re.search(rf"\bmake {re.escape(t)}(?![\w-])", docs_text)]
    assert not missing, f"targets in make help but in neither README.md nor docs/*.md: {missing}"


def test_every_variable_of_make_help_is_documented(help_text, docs_text):
    variables = set(re.findall(r"(?<![\w-])([A-Z][A-Z0-9_]*)=", help_text))
    assert {"MODELS", "QUESTIONS", "JUDGE", "OUT", "LIMIT"} <= variables, help_text
    missing = sorted(v for v in variables if not re.search(rf"(?<![\w-]){v}(=|`)", docs_text))
    assert not missing, f"variables in make help but in neither README.md nor docs/*.md: {missing}"


def test_every_documented_make_line_parses(docs_text, tmp_path):
    lines = documented_make_lines(docs_text)
    assert 'make board MODELS="smollm2_135m gemma3_270m" QUESTIONS=data/questions_zh_en.txt' in lines
    # A placeholder (MODELS="...", JUDGE=...) is left to its default: the line's shape is what parses.
    # Lines with the same variables share one dry run (each make parse starts four python3s).
    groups: dict[tuple, list[str]] = {}
    for line in lines:
        words = [w for w in shlex.split(line)[1:] if not re.fullmatch(r"\w+=\.\.\.", w)]
        assignments = tuple(w for w in words if re.match(r"[A-Z_]+=", w))
        groups.setdefault(assignments, []).append(line)

    def dry_run(assignments, group):
        goals = [w for line in group for w in shlex.split(line)[1:] if not re.match(r"[A-Z_]+=", w)]
        result = make("-n", *assignments, *goals, out=tmp_path / "out")
        if result.returncode == 0 and "*** " not in result.stderr:
            return []
        if len(group) > 1:  # name the line that fails
            return [bad for line in group for bad in dry_run(assignments, [line])]
        return [f"{group[0]}: {(result.stdout + result.stderr).strip().splitlines()[-3:]}"]

    with ThreadPoolExecutor(max_workers=4) as pool:
        failed = [bad for bads in pool.map(lambda item: dry_run(*item), groups.items()) for bad in bads]
    assert not failed, f"documented make lines that do not parse (make -n): {failed}"
    assert not (tmp_path / "out").exists(), "make -n wrote into OUT"


def test_relative_links_resolve():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, broken
