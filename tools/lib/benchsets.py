"""Named benchmark sets: reading data/benchmarks.toml, the sidecar beside a set's questions, LIMIT.

    python3 tools/lib/benchsets.py names                      # the declared set names
    python3 tools/lib/benchsets.py make-info QUESTIONS        # for the Makefile: "SET:name REF:model"

`load_sets()` validates data/benchmarks.toml (its header comment documents the format; unknown
keys are errors naming the set and the key). `set_info(questions_path)` reads the sidecar
NAME.set.json that tools/data.py writes beside a normalized questions file (None for a plain
questions file); `published_path()` finds its published table. `stratified_sample()` is the fixed-seed LIMIT sample. Fetching and normalizing
the files is tools/data.py's job, not this module's. Standard library only: the Makefile runs it
with the system python3 before .venv exists.
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
import tomllib
from pathlib import Path

if __name__ == "__main__":  # make runs it as `python3 tools/lib/benchsets.py`: import the project from tools/
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from board.protocols import GRADERS, NAMES, PROTOCOLS as TABLE
from lib.records import InputError
from lib.registry import MAX_NAME_LENGTH
from lib.registry import NAME_RE as MODEL_NAME_RE

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS_TOML = ROOT / "data" / "benchmarks.toml"
SEED = 0  # the LIMIT sample's seed: the same questions for every model and every run

FORMATS = ("fastchat", "alpaca_eval", "arena_hard", "alignbench")
PROTOCOLS, GRADERS = NAMES, GRADERS  # what a set may declare: the protocols' table (board/protocols.py)
SET_KEYS = {"title", "format", "protocol", "grader", "reference", "reference_name", "dataset_field",
            "select", "notes", "published", "generation", "files"}
FILE_KEYS = {"role", "repo", "commit", "path", "sha256", "url"}
PUBLISHED_KEYS = {"path", "judge", "comparable_with"}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.]*$")  # no "-": NAME-limitN must stay unambiguous
# A file's repo and path become folders of the data cache: owner/name, and a path that stays inside.
REPO_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")


def _path_refusal(path: str) -> str | None:
    """Why a file's path in its repository is not one (it would leave the cache), or None."""
    parts = path.replace("\\", "/").split("/")
    if path.startswith("/") or "\\" in path or re.match(r"[A-Za-z]:/", path):  # C:/... too
        return "is absolute (or has a backslash); give it relative to the repository's top"
    if any(part in ("", ".", "..") for part in parts):
        return "has an empty, '.' or '..' part; give the file's path inside the repository (a/b/c.json)"
    return None


def load_sets(path: str | Path = BENCHMARKS_TOML) -> dict[str, dict]:
    """{name: set table} from benchmarks.toml, checked; an InputError names what is wrong."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: not found (the benchmark sets are declared there)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not valid TOML ({err})") from None
    sets = data.get("sets", {})
    if set(data) - {"sets"} or not isinstance(sets, dict):
        raise InputError(f"{path}: only [sets.NAME] tables belong there")
    for name, table in sets.items():
        _check_set(path, name, table)
    return sets


def _check_set(path: Path, name: str, table: dict) -> None:
    where = f"{path}: [sets.{name}]"
    if not NAME_RE.match(name):
        raise InputError(f"{where}: a set name is letters, digits, '_' and '.'")
    if not isinstance(table, dict):
        raise InputError(f"{where}: must be a table")
    unknown = set(table) - SET_KEYS
    if unknown:
        raise InputError(f"{where}: unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(SET_KEYS))})")
    for key, allowed in (("format", FORMATS), ("protocol", PROTOCOLS)):
        if table.get(key) not in allowed:
            raise InputError(f"{where}: {key} must be one of {', '.join(allowed)}")
    graders = TABLE[table["protocol"]].graders  # the prompts that protocol has (board/protocols.py)
    if graders and table.get("grader") not in graders:
        raise InputError(f"{where}: protocol = \"{table['protocol']}\" needs grader = one of {', '.join(graders)}")
    files = table.get("files")
    if not isinstance(files, list) or not files:
        raise InputError(f"{where}: needs [[sets.{name}.files]] entries")
    roles = []
    for i, entry in enumerate(files, 1):
        fwhere = f"{where} file {i}"
        if not isinstance(entry, dict) or set(entry) - FILE_KEYS:
            raise InputError(f"{fwhere}: keys are {', '.join(sorted(FILE_KEYS))}")
        if not re.fullmatch(r"[0-9a-f]{64}", str(entry.get("sha256", ""))):
            raise InputError(f"{fwhere}: sha256 must be 64 lowercase hex digits")
        if not isinstance(entry.get("role"), str):
            raise InputError(f"{fwhere}: needs a role")
        pinned = all(isinstance(entry.get(k), str) for k in ("repo", "commit", "path"))
        if not pinned and not isinstance(entry.get("url"), str):
            raise InputError(f"{fwhere}: needs repo + commit + path, or url")
        if pinned and not re.fullmatch(r"[0-9a-f]{40}", entry["commit"]):
            raise InputError(f"{fwhere}: commit must be the full 40-hex-digit commit")
        if pinned and (not REPO_RE.fullmatch(entry["repo"]) or ".." in entry["repo"]):
            raise InputError(f"{fwhere}: repo = {entry['repo']!r} must be owner/name (letters, digits, "
                             f"'_', '-', '.'; no '..'), as on GitHub")
        why = pinned and _path_refusal(entry["path"])
        if why:
            raise InputError(f"{fwhere}: path = {entry['path']!r} {why}")
        roles.append(entry["role"])
    if len(set(roles)) < len(roles):
        raise InputError(f"{where}: two files share a role")
    needed = {"alpaca_eval": "outputs"}.get(table["format"], "questions")
    if needed not in roles:
        raise InputError(f"{where}: format {table['format']!r} needs a file with role = {needed!r}")
    if table.get("reference") is not None and (table["reference"] not in roles or not table.get("reference_name")):
        raise InputError(f"{where}: reference must name a file's role, with reference_name the model")
    ref_name = table.get("reference_name")
    if ref_name is not None and (not isinstance(ref_name, str) or not MODEL_NAME_RE.fullmatch(ref_name)
                                 or ".." in ref_name or len(ref_name) > MAX_NAME_LENGTH):
        # It names the reference's files under OUT, as a model's name does (registry.check_name).
        raise InputError(f"{where}: reference_name = {ref_name!r} must be a plain identifier as a model name is "
                         f"(letters, digits, '_', '-', '.'; no '/', spaces or '..'; at most {MAX_NAME_LENGTH})")
    published = table.get("published")
    if published is not None and (not isinstance(published, dict) or set(published) != PUBLISHED_KEYS):
        raise InputError(f"{where}: published = {{ path, judge, comparable_with }}")
    if not all(isinstance(n, str) for n in table.get("notes", [])):
        raise InputError(f"{where}: notes must be a list of strings")


def questions_name(name: str, limit: int | None) -> str:
    return f"{name}-limit{limit}" if limit else name


def sidecar_path(questions_path: str | Path) -> Path:
    path = Path(questions_path)
    return path.with_name(path.stem + ".set.json")


def set_info(questions_path: str | Path) -> dict | None:
    """The sidecar of a normalized set's questions file, or None for a plain questions file."""
    path = sidecar_path(questions_path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{path}: not valid JSON; run make data again") from None


def alpaca_eval_dir() -> Path:
    """The installed alpaca_eval package's folder (its prompts, configs and published boards),
    found without importing it: the import costs 3 s. InputError if it is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("alpaca_eval")
    if spec is None or not spec.origin:
        raise InputError("alpaca_eval is not installed: run make setup")
    return Path(spec.origin).parent


def published_path(published: dict | None) -> Path | None:
    """The published table's CSV: data/published/... in the project, or "alpaca_eval:<path>"
    inside the installed alpaca_eval package (found without importing it); None if absent."""
    if not published:
        return None
    where = published["path"]
    if where.startswith("alpaca_eval:"):
        try:
            path = alpaca_eval_dir() / where.split(":", 1)[1]
        except InputError:  # make's system python3 reads this too, without the .venv
            return None
    else:
        path = ROOT / where
    return path if path.is_file() else None


def _rank(seed: int, *parts: object) -> str:
    return hashlib.sha256(":".join(map(str, (seed, *parts))).encode("utf-8")).hexdigest()


def stratified_sample(questions: list[dict], n: int, seed: int = SEED) -> list[dict]:
    """n questions, spread over the datasets in proportion to their size, in file order.

    Each dataset gets its share rounded down, and the seats left go to the largest remainders
    (ties by a seeded hash, not by name). Within a dataset the questions ranked first by a
    seeded hash of their id are taken: the same for every model and run, and a smaller LIMIT
    takes a subset of a larger one's questions within each dataset."""
    if n >= len(questions):
        return list(questions)
    groups: dict[str, list[int]] = {}
    for i, q in enumerate(questions):
        groups.setdefault(str(q.get("dataset", "")), []).append(i)
    total = len(questions)
    share = {g: n * len(ix) / total for g, ix in groups.items()}
    seats = {g: int(s) for g, s in share.items()}
    left = n - sum(seats.values())
    for g in sorted(groups, key=lambda g: (-(share[g] - seats[g]), _rank(seed, g)))[:left]:
        seats[g] += 1
    chosen = []
    for g, ix in groups.items():
        key = lambda i: _rank(seed, g, questions[i].get("question_id", i))  # noqa: E731
        chosen.extend(sorted(ix, key=key)[:seats[g]])
    return [questions[i] for i in sorted(chosen)]


def make_info(questions: str, toml_path: str | Path = BENCHMARKS_TOML) -> str:
    """For the Makefile: "SET:name [REF:model]" when QUESTIONS names a set and no such file
    exists, "" for a plain questions file, "ERROR why" when benchmarks.toml is broken."""
    if Path(questions).exists():
        return ""
    try:
        sets = load_sets(toml_path)
    except InputError as err:
        return f"ERROR {err}"
    table = sets.get(questions)
    if table is None:
        return ""
    return f"SET:{questions}" + (f" REF:{table['reference_name']}" if table.get("reference") else "")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["names"]:
        try:
            print(" ".join(load_sets()))
        except InputError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        return 0
    if args[:1] == ["make-info"] and len(args) == 2:
        print(make_info(args[1]))
        return 0
    print("usage: benchsets.py names | make-info QUESTIONS", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
