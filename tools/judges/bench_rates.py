"""The labelled-call rates `make bench-judge` measured (OUT/bench_judge.json), for the line that
counts a judge's calls before they are made (labels.expected_time).

    labelled_rate(path, "SmolLM2-135M-Instruct.Q4_1.gguf", "mt_bench")
    # {"set", "calls_per_s", "max_tokens", "machine", "date"} or None

The row of the same benchmark is preferred, else any labelled row of the same weights file. Does
not handle: scaling a rate to other explanation caps or prompt lengths (the line says the cap).
"""
from __future__ import annotations

import json
from pathlib import Path


def labelled_rate(path: Path, weights: str, benchmark: str) -> dict | None:
    try:
        bench = json.loads(Path(path).read_text(encoding="utf-8"))
        labelled = bench["labelled_judge"]
        if labelled.get("model") != weights:
            return None
        rows = [r for r in labelled["rows"] if r.get("one_decode", {}).get("calls_per_s")]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # no bench, an older one, or a damaged file: no estimate, never an error
    if not rows:
        return None
    name = benchmark.replace("-", "_")  # a call's protocol: "mt_bench/single-v1", "arena-hard-v0.1"
    row = next((r for r in rows if name.startswith(r["set"])), rows[0])
    return {"set": row["set"], "calls_per_s": row["one_decode"]["calls_per_s"], "max_tokens": row["max_tokens"],
            "machine": labelled.get("machine", "this machine"), "date": labelled.get("date", "")}
