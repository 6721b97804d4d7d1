"""The board's protocols: one row per way of judging, naming the module that builds its board.

    python3 tools/board/protocols.py QUESTIONS [PROTOCOL [SET]]   # for make: prints "grade", "pairwise", ...
    python3 tools/board/protocols.py --names                      # for make help: "pairwise|arena_hard|grade"

Every choice of a protocol reads this table: the Makefile (through this script), tools/board/cli.py
(the flag, else the set's sidecar), the set declarations (tools/lib/benchsets.py: which `protocol =`
and `grader =` a set may declare) and `make judge-check` (which protocols have a check). Adding
a protocol means adding its folder under tools/board/ and one row here.

The builders are named as strings ("module:function") and imported only when a board is made, so
that this file needs the standard library alone: make runs it with the system python3, before
.venv exists. A name not in the table is refused where a user typed it (PROTOCOL=, --protocol);
a set or sidecar that declares none, or one this table lacks, gets DEFAULT. Does not handle:
choosing a protocol from the answers themselves.
"""
from __future__ import annotations

import json
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Protocol:
    build: str  # "module:function(args, registry, judges) -> exit code"
    show: str  # "module:function(board_csv_path) -> exit code": print an existing board
    about: str
    inputs: tuple[str, ...] = ("outputs", "reference")  # the flags of tools/board it needs (--outputs ...)
    graders: tuple[str, ...] = field(default=())  # the prompts a set may declare (grader = ...)
    check: bool = False  # `make judge-check PROTOCOL=...` exists for it


PROTOCOLS = {
    "pairwise": Protocol("board.pairwise.board:build_board", "board.pairwise.board:show",
                         "every model against the reference, both orders (AlpacaEval's way)", check=True),
    "arena_hard": Protocol("board.arena_hard.board:build_arena", "board.pairwise.board:show",
                           "Arena-Hard-Auto v0.1: two games per prompt against the baseline, five labels"),
    "grade": Protocol("board.graded.board:build_graded", "board.graded.board:show",
                      "each answer rated alone 1-10 (MT-Bench, AlignBench, or the project's own prompt)",
                      inputs=("answers", "questions"), graders=("mt_bench", "alignbench"), check=True),
}
DEFAULT = "pairwise"
NAMES = tuple(PROTOCOLS)
GRADERS = tuple(g for p in PROTOCOLS.values() for g in p.graders)
OWN_GRADER = "own"  # the grade protocol's prompt for a plain question file (never declared by a set)
CHECKED = tuple(name for name, p in PROTOCOLS.items() if p.check)
BENCHMARKS_TOML = Path(__file__).resolve().parent.parent.parent / "data" / "benchmarks.toml"


def choose(given: str | None = "", declared: str | None = None) -> str:
    """The protocol given (a flag, PROTOCOL=), else the one a set declares, else DEFAULT."""
    if given:
        return given
    return declared if declared in PROTOCOLS else DEFAULT


def function(name: str, role: str = "build"):
    """The row's builder (role "build") or printer ("show"), imported now."""
    from importlib import import_module

    module, attribute = getattr(PROTOCOLS[name], role).split(":")
    return getattr(import_module(module), attribute)


def declared_by(questions: str, set_name: str = "") -> str | None:
    """What a question set declares: the named set's `protocol` in data/benchmarks.toml (before
    make data wrote its files), else the sidecar beside a normalized questions file
    (NAME.jsonl -> NAME.set.json, tools/lib/benchsets.py), else None. Unreadable means None: make's
    set check and the board stage say what is wrong."""
    try:
        if set_name:
            table = tomllib.loads(BENCHMARKS_TOML.read_text(encoding="utf-8"))["sets"][set_name]
        else:
            table = json.loads(Path(questions.removesuffix(".jsonl") + ".set.json").read_text(encoding="utf-8"))
        return table.get("protocol")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def main(argv: list[str]) -> int:
    if argv == ["--names"]:  # for make help
        print("|".join(NAMES))
        return 0
    questions, given, set_name = (argv + ["", "", ""])[:3]
    if given and given not in PROTOCOLS:
        print(f"ERROR PROTOCOL={given}: use one of {', '.join(NAMES)}")
        return 0
    print(choose(given, declared_by(questions, set_name)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
