"""The code's shape (tools/): no import cycles, no package importing a stage script, package
docstrings that name every module, and one table of protocols (tools/board/protocols.py) that
the Makefile, the board stage and the set declarations all read. Static (ast), no model runs."""
import ast
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tools"
PACKAGES = ("lib", "judges", "backends", "board")


def modules() -> dict[str, Path]:
    found = {}
    for path in TOOLS.rglob("*.py"):
        parts = list(path.relative_to(TOOLS).with_suffix("").parts)
        if parts[0] == "custom" or parts[-1] == "__main__":
            continue
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, known: dict) -> set[str]:
    """Project modules this file imports, at the top or inside functions."""
    got = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            got |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in known:
            got.add(node.module)
            got |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known}
    return got


def test_no_import_cycles_and_nothing_imports_a_stage_script():
    known = modules()
    graph = {m: imports(p, known) - {m} for m, p in known.items()}
    stages = {m for m in known if "." not in m and m not in PACKAGES}
    upward = sorted(f"{m} -> {d}" for m, deps in graph.items() if m.split(".")[0] in PACKAGES for d in deps & stages)
    assert not upward, upward
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(m, path):
        state[m] = 1
        for d in graph[m]:
            assert state.get(d) != 1, f"import cycle: {' -> '.join(path + [m, d])}"
            if d not in state:
                visit(d, path + [m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])


@pytest.mark.parametrize("package", ["lib", "judges", "backends", "board", "board/pairwise", "board/arena_hard",
                                     "board/graded"])
def test_a_package_docstring_names_every_module(package):
    folder = TOOLS / package
    doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text(encoding="utf-8")))
    names = [p.name for p in folder.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    names += [f"{p.name}/" for p in folder.iterdir() if (p / "__init__.py").is_file()]
    missing = [n for n in names if n not in doc]
    assert not missing, f"tools/{package}/__init__.py does not name {missing}"


def test_every_protocol_row_names_real_functions_and_the_sets_use_the_table():
    from board import protocols
    from lib import benchsets

    for name in protocols.NAMES:
        assert callable(protocols.function(name, "build")) and callable(protocols.function(name, "show"))
    assert benchsets.PROTOCOLS == protocols.NAMES and set(benchsets.GRADERS) <= set(protocols.GRADERS)
    declared = {table["protocol"] for table in benchsets.load_sets().values()}
    assert declared <= set(protocols.NAMES)


def test_make_reads_the_table_with_the_system_python_alone():
    def choose(*args):  # as the Makefile runs it: the system python3, no .venv, no tools/ on the path
        return subprocess.run(["python3", "-S", str(TOOLS / "board" / "protocols.py"), *args], capture_output=True,
                              text=True, timeout=60, cwd=ROOT).stdout.strip()

    assert choose("x.txt", "", "mt_bench") == "grade" and choose("x.txt", "", "arena_hard") == "arena_hard"
    assert choose("x.txt") == "pairwise" and choose("x.txt", "grade") == "grade"
    assert choose("x.txt", "bogus").startswith("ERROR PROTOCOL=bogus: use one of pairwise, arena_hard, grade")
