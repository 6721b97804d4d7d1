"""Which board protocol a questions file asks for, for make (the system python3, standard library only).

    python3 tools/board/protocol.py QUESTIONS [PROTOCOL [SET]]  -> prints "grade", "pairwise", ...

PROTOCOL (make's variable) wins when set; else the set named by QUESTIONS=NAME declares it in
data/benchmarks.toml ("grade" for MT-Bench and AlignBench; before make data wrote its files);
else the sidecar beside a normalized questions file (NAME.jsonl -> NAME.set.json); else a plain
question file is compared pairwise. Anything unreadable prints
"pairwise": the board stage itself then says what is wrong.
Does not handle: protocols other than these two (Arena-Hard's has its own stage).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

CHOICES = ("grade", "pairwise", "arena_hard")


def protocol(questions: str, override: str = "", set_name: str = "") -> str:
    if override:
        return override
    if set_name:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from benchsets import load_sets  # standard library only, as this script
        try:
            return load_sets().get(set_name, {}).get("protocol") or "pairwise"
        except ValueError:  # a broken benchmarks.toml: make's set check says so
            return "pairwise"
    sidecar = Path(questions.removesuffix(".jsonl") + ".set.json")
    try:
        declared = json.loads(sidecar.read_text(encoding="utf-8")).get("protocol")
    except (OSError, ValueError, AttributeError):
        return "pairwise"
    return declared if declared in CHOICES else "pairwise"


if __name__ == "__main__":
    # llmbar: LLMBar's prompts, for make judge-check PAIRS=set only (the board stage refuses it)
    if len(sys.argv) > 2 and sys.argv[2] and sys.argv[2] not in CHOICES + ("llmbar",):
        print(f"ERROR PROTOCOL={sys.argv[2]}: use one of {', '.join(CHOICES)} (make judge-check also: llmbar)")
        sys.exit(0)
    print(protocol(*(sys.argv[1:4] + [""] * (3 - len(sys.argv[1:4])))))
