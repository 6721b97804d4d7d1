"""The board stage: judge every model's answers and write the leaderboard, by the question set's protocol.

    python tools/board --outputs out/output.json --reference out/reference.json --judge smollm2_135m --out out
    python tools/board ... --judge judge_a judge_b judge_c --versus all   # several judges, model vs model
    python tools/board --protocol grade --answers out/a.json out/b.json --questions Q --judge J --out out
    python tools/board --show out/board.csv      # print an existing board (make board does)
    python tools/board --check-judge --judge chatgpt_fn   # stop early if the judge can't run

The protocol is --protocol, else the one the question set's sidecar declares, else pairwise; each
has its folder and its row in tools/board/protocols.py, which names its builder: pairwise/ (every
model against the reference, both orders), arena_hard/ (Arena-Hard-Auto's two games per prompt,
the default of the Arena-Hard sets), graded/ (each answer rated 1-10). This file parses the flags,
loads the judges, and hands over; what each board writes is said in its builder's docstring.
Not handled: several reference models.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from lib import arguments
from lib.benchsets import set_info
from board.protocols import GRADERS, NAMES, OWN_GRADER, PROTOCOLS, choose, function
from lib.records import InputError, read_json
from lib.registry import load_registry


def show(board_path: Path) -> int:
    """Print an existing board.csv the way its protocol prints it (manifest.json names it)."""
    try:
        manifest = read_json(board_path.with_name("manifest.json"))
        declared = manifest.get("protocol") if isinstance(manifest, dict) else None
        return function(choose("", declared), "show")(board_path)
    except (FileNotFoundError, ValueError, KeyError, TypeError, InputError) as err:
        print(f"error: cannot read {board_path} ({err}); run make board", file=sys.stderr)
        return 2


def chosen_protocol(args) -> str:
    """--protocol, else what the set's sidecar declares (an unreadable one: the builder says why)."""
    declared = None
    if args.questions and not args.protocol:
        try:
            declared = (set_info(args.questions) or {}).get("protocol")
        except InputError:
            declared = None
    return choose(args.protocol, declared)


def main(argv: list[str] | None = None) -> int:
    parser = arguments.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show", type=Path, metavar="BOARD_CSV", help="only print an existing board")
    parser.add_argument("--outputs", type=Path, help="merged answers (OUT/output.json)")
    parser.add_argument("--reference", type=Path, help="reference answers (OUT/reference.json)")
    parser.add_argument("--questions", type=Path, help="the questions file (recorded in the manifest)")
    parser.add_argument("--judge", nargs="+", help="a model from models.toml, an alpaca_eval annotator config, "
                                                   "or a path to an annotator configs.yaml; several: their mean")
    parser.add_argument("--versus", choices=["all", "none", ""], default="",
                        help="all: also judge every two models against each other (both orders)")
    parser.add_argument("--models-toml", default="models.toml")
    parser.add_argument("--out", default="out", type=Path)
    parser.add_argument("--check-judge", action="store_true", help="only check that the judge can run")
    parser.add_argument("--protocol", choices=[*NAMES, ""], default="",
                        help="how the judge compares (default: the question set's own, else pairwise); grade: rate "
                             "each answer 1-10 (board/graded/) instead of comparing with the reference; "
                             "the table: board/protocols.py")
    parser.add_argument("--answers", type=Path, nargs="+", help="grade: each model's answers (OUT/NAME.json)")
    parser.add_argument("--grader", choices=[*GRADERS, OWN_GRADER],
                        help="grade: the prompt (default: the question set's, else the project's own)")
    parser.add_argument("--fast", action="store_true",
                        help="arena_hard and grade, local judges: the label without an explanation")
    args = parser.parse_args(argv)
    # matplotlib (the chart; alpaca_eval imports it too) would create ~/.config/matplotlib: its
    # config and font cache go under OUT instead, unless the user chose a folder.
    os.environ.setdefault("MPLCONFIGDIR", str(Path(args.out).resolve() / "judge" / "matplotlib"))
    if args.show:
        return show(args.show)
    protocol = chosen_protocol(args)
    if not args.judge or not args.check_judge and not all(getattr(args, name) for name in PROTOCOLS[protocol].inputs):
        parser.error("--outputs, --reference and --judge are required (--protocol grade: --answers, --questions "
                     "and --judge), or --show BOARD_CSV")
    from judges.resolve import resolve_judge, run_reporting_errors

    def work() -> int:
        registry = load_registry(args.models_toml)
        judges = [resolve_judge(name, registry, args.out, check_only=args.check_judge)
                  for name in dict.fromkeys(args.judge)]
        if args.check_judge:
            return 0
        return function(protocol)(args, registry, judges)  # its builder (board/protocols.py)

    return run_reporting_errors("making the board", work)
