"""The human-agreement checks a judge has (`make judge-check PAIRS=set`), for the boards' headers.

    for h in human_summary(out_dir, "qwen25_7b"): print(human_line("qwen25_7b", h))

`human_summary` reads OUT/judge/checks/JUDGE-*.json (tools/judge_human.py writes them; only
files whose "kind" is "human-agreement" and whose judge is this one count) and keeps the latest
per (set, protocol): its accuracy and interval, PandaLM's 3-way figures, and the published
GPT-4 figure on the same file (the same prompt when the check used it) or PandaLM's
gpt-3.5-turbo. `human_line` words one of them for a header. Reads files only; judges nothing.
Not handled: a check of an older version of the judge is quoted as it is (its judge_id is kept).
"""
from __future__ import annotations

import re
from pathlib import Path

from lib.records import InputError, read_json


def human_summary(out_dir: Path, judge_name: str) -> list[dict]:
    """The latest human-agreement check per (set, protocol) of this judge, for the board."""
    folder = Path(out_dir) / "judge" / "checks"
    latest: dict[tuple, dict] = {}
    stem = re.sub(r"[^\w.-]", "_", judge_name) + "-"
    for path in sorted(folder.glob(f"{stem}*.json")) if folder.is_dir() else []:
        try:
            check = read_json(path)
        except InputError:
            continue
        if not isinstance(check, dict) or check.get("kind") != "human-agreement" or check.get("judge") != judge_name:
            continue
        key = (check.get("set"), check.get("protocol"))
        if key not in latest or str(check.get("created")) > str(latest[key].get("created")):
            latest[key] = check
    out = []
    for check in sorted(latest.values(), key=lambda c: (str(c.get("set")), str(c.get("protocol")))):
        fig = check["figures"]["all"]
        gpt4 = next((r for r in check.get("published", []) if r["evaluator"] == "GPT-4" and r["prompt"] == "same prompt"), None) \
            or next((r for r in check.get("published", []) if r["evaluator"] == "GPT-4" and r["strategy"] == "Vanilla_NoRules"), None)
        out.append({"set": check["set"], "protocol": check["protocol"], "n_pairs": check["n_pairs"],
                    "n_total": check["n_total"], "accuracy": fig.get("accuracy"), "accuracy_ci": fig.get("accuracy_ci"),
                    "three_way": fig.get("three_way"), "judge_id": check.get("judge_id"), "created": check.get("created"),
                    "gpt4": None if gpt4 is None else _together(gpt4), "gpt4_prompt": None if gpt4 is None else gpt4["prompt"],
                    "published_3way": next(({"evaluator": r["evaluator"], **r["three_way"]} for r in check.get("published", [])
                                            if "three_way" in r and r.get("pairs") == "all"), None)})
    return out


def _together(row: dict) -> float | None:
    """A published row's accuracy over all its subsets, pooled by subset size (LLMBar's sizes)."""
    subsets = row.get("subsets") or {}
    if len(subsets) == 1:
        return next(iter(subsets.values()))["accuracy"]
    sized = [(v["accuracy"], v.get("n_pairs")) for v in subsets.values()]
    if sized and all(n for _, n in sized):
        return round(sum(a * n for a, n in sized) / sum(n for _, n in sized), 2)
    return round(sum(a for a, _ in sized) / len(sized), 2) if sized else None


def human_line(judge_name: str, h: dict) -> str:
    """'agreement with people (llmbar_natural, 100 pairs, pairwise): 62.0% [52.5, 71.0]; GPT-4 93.5% (...)'."""
    def ci(v):
        return "" if not v or v[0] is None else f" [{v[0]:.1f}, {v[1]:.1f}]"
    pairs = f"{h['n_pairs']} of {h['n_total']} pairs" if h["n_pairs"] < h["n_total"] else f"{h['n_total']} pairs"
    line = f"agreement of {judge_name} with people on {h['set']} ({pairs}, {h['protocol']}): "
    line += "n/a" if h.get("accuracy") is None else f"{h['accuracy']:.1f}%{ci(h.get('accuracy_ci'))}"
    three = h.get("three_way")
    if three and three.get("accuracy") is not None:
        line += f"; 3-way {three['accuracy']:.1f}%{ci(three.get('accuracy_ci'))}, macro-F1 {three['macro_f1']:.1f}"
    if h.get("gpt4") is not None:
        line += f"; GPT-4 published {h['gpt4']:.1f}% ({'same prompt' if h['gpt4_prompt'] == 'same prompt' else 'another prompt'})"
    pub = h.get("published_3way")
    if pub:
        line += f"; {pub['evaluator']} published 3-way {pub['accuracy']:.1f}%, macro-F1 {pub['macro_f1']:.1f} (its own prompt)"
    return line
