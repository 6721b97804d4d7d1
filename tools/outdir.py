"""The OUT folder: refuse one that holds more than outputs, mark it, and clean only what we wrote.

    python3 tools/outdir.py check OUT     (make, for every target: one line and exit 2 when refused)
    python3 tools/outdir.py mark OUT      (make, before a stage writes into OUT)
    python3 tools/outdir.py clean OUT     (make clean)

Refused: an empty OUT, `/`, the project itself or a folder above it, $HOME or a folder above
it, one of the project's own folders (tools/, data/, models/, .git/, ...) or a folder inside
one, a folder holding models/ or .venv/ (another clone), and a file. Symbolic links are
followed first, so a link to `/` is `/`.

`clean` removes only what the project writes: the names in OUTPUTS (folders such as cache/,
judge/, stamps/, sets/; board.*, manifest.json, ...), answer files (OUT/NAME.json: a JSON list of
alpaca_eval records with a `generator`), leftovers of an interrupted atomic write (.NAME.*.tmp)
and the marker OUT/.llmeval that `mark` writes. It prints each thing it removed, and each thing
it kept (a file of yours in OUT stays). A new output of the project is added to OUTPUTS.
It removes nothing in an OUT without the marker (llmeval never wrote there), nor in one where
a git work tree (.git) or a models.toml is in OUT itself or anywhere in what it would remove.
Standard library only: make runs it with the system python3, before .venv exists.
"""
from __future__ import annotations

import fnmatch
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = ".llmeval"
# What the project writes at the top of OUT (folders end in "/"); glob patterns.
OUTPUTS = (
    "cache/", "judge/", "stamps/", "sets/", "fastchat/", "arena_hard/", "alpaca_eval/", "alignbench/", "grades/",
    "bench-judge/", "bench-labels/", "output.json", "reference.json", "manifest.json", "board*", "bench.json",
    "bench_judge.json", ".*.tmp", MARKER,
)
# The project's own folders: OUT must not be one of them or inside one (out/ is for outputs).
PROJECT_DIRS = ("tools", "data", "tests", "bench", "envs", "models", ".git", ".venv", ".ci")


def refusal(out: str) -> str | None:
    """Why OUT must not be used, in one line, or None when it is fine."""
    if not out.strip():
        return "OUT is empty: set OUT=a/folder (default: out)"
    path = Path(out).resolve()
    said = f"OUT={out}" + (f" (that is {path})" if str(path) != out else "")
    home = Path(os.environ.get("HOME") or "/").resolve()
    if path == Path("/") or ROOT.is_relative_to(path):
        reason = "is / or holds the project itself"
    elif home.is_relative_to(path):
        reason = "is your home folder or holds it"
    elif any(path.is_relative_to(ROOT / name) for name in PROJECT_DIRS):
        reason = "is one of the project's own folders"
    elif (path / "models").is_dir() or (path / ".venv").is_dir():
        reason = "holds models/ or .venv/ (a clone of the project?)"
    elif path.exists() and not path.is_dir():
        return f"{said} is a file, not a folder: choose a folder for the outputs (OUT=out)"
    else:
        return None
    return f"{said} {reason}: make would write and `make clean` delete there; choose a folder of its own (OUT=out)"


def mark(out: Path) -> None:
    """Say in OUT that it holds the project's outputs (what `clean` may remove is listed above)."""
    out.mkdir(parents=True, exist_ok=True)
    marker = out / MARKER
    if not marker.exists():
        marker.write_text("This folder holds llmeval's outputs; `make clean OUT=...` removes only "
                          "what llmeval wrote here (tools/outdir.py lists it).\n", encoding="utf-8")


def is_ours(entry: Path) -> bool:
    """Whether a top-level entry of OUT is something the project writes."""
    name = entry.name + ("/" if entry.is_dir() else "")  # a link to a folder (cache/ elsewhere) too
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in OUTPUTS):
        return True
    if entry.suffix == ".json" and entry.is_file() and not entry.is_symlink():
        return is_answers(entry)
    return False


def is_answers(path: Path) -> bool:
    """OUT/NAME.json as infer writes it: a JSON list of records that name their generator."""
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(records, list) and all(isinstance(r, dict) and "generator" in r for r in records)


# What must never be removed with OUT's outputs: a git work tree (.git, a folder or a worktree's
# file) or a registry, wherever in them, is another project, never something llmeval wrote.
PRECIOUS = (".git", "models.toml")


def _precious_inside(entries: list[Path]) -> Path | None:
    """The first .git or models.toml in these entries or anywhere under them (links not followed)."""
    for entry in entries:
        if entry.name in PRECIOUS:
            return entry
        if entry.is_dir() and not entry.is_symlink():
            for folder, dirs, files in os.walk(entry):
                found = [name for name in (*dirs, *files) if name in PRECIOUS]
                if found:
                    return Path(folder) / found[0]
    return None


def clean(out: Path) -> int:
    if not out.is_dir():
        print(f"nothing to clean: {out} does not exist")
        return 0
    entries = [e for e in sorted(out.iterdir()) if e.name != ".gitkeep"]  # the project's out/ keeps it
    ours = [e for e in entries if is_ours(e)]
    if not (out / MARKER).is_file():
        if not ours:
            print(f"nothing to clean: {out} has no {MARKER} marker and nothing llmeval writes")
            return 0
        print(f"error: {out} has no {MARKER} marker: llmeval never wrote there (it marks each OUT it writes "
              f"into), so make clean removes nothing; remove {', '.join(e.name for e in ours[:3])}"
              f"{', ...' if len(ours) > 3 else ''} yourself if they are llmeval's", file=sys.stderr)
        return 2
    precious = _precious_inside([e for e in entries if e.name in PRECIOUS] + ours)  # OUT's own, or inside
    if precious is not None:
        print(f"error: {precious} is in OUT={out} (a git work tree or a registry, not llmeval's): make clean "
              f"removes nothing there; move it out of OUT, or clean by hand", file=sys.stderr)
        return 2
    removed = kept = 0
    for entry in entries:
        shown = f"{entry}/" if entry.is_dir() and not entry.is_symlink() else str(entry)
        if entry not in ours:
            print(f"kept {shown}: not something llmeval writes (remove it yourself)")
            kept += 1
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
        print(f"removed {shown}")
        removed += 1
    print(f"{out}: {removed} removed, {kept} kept; models/ and .venv/ stay")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("check", "mark", "clean"):
        print("usage: outdir.py check|mark|clean OUT", file=sys.stderr)
        return 2
    command, out = argv
    why = refusal(out)
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 2
    if command == "mark":
        try:
            mark(Path(out))
        except OSError as err:  # read-only, full: said here, before any stage starts
            print(f"error: cannot write {err.filename or out}: {err.strerror}; choose a writable OUT=... "
                  "(or free some space) and run again", file=sys.stderr)
            return 1
    elif command == "clean":
        return clean(Path(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
