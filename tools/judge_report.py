"""The human-agreement report: one table of judges (yours and the published ones) on one pair set.

`table_rows(checks)` makes the rows: for each check (a judge, a protocol) one row for the whole
set and one per subset (LLMBar Adversarial's four), then the published evaluators on the same
file (LLMBar's statistics, PandaLM's figures), each saying whether its prompt is this run's. The
published rows are the full set's; a LIMIT run's own rows are a sample (the `pairs` column says).
`markdown(rows)`, `csv_text(rows)` and `text(rows)` render them; `write(check, ...)` writes a
check's JSON, CSV and Markdown atomically. Not handled: charts.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from lib.records import write_atomic, write_json_atomic

COLUMNS = ["judge", "protocol", "subset", "pairs", "accuracy", "95% CI", "output_1 first", "swapped",
           "both orders", "same choice", "3-way accuracy", "3-way 95% CI", "macro-F1", "macro-F1 95% CI", "prompt"]


def _n(value, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _ci(ci) -> str:
    return "" if not ci or ci[0] is None else f"[{ci[0]:.1f}, {ci[1]:.1f}]"


def _figures(judge: str, protocol: str, subset: str, pairs: str, fig: dict, prompt: str) -> dict:
    three = fig.get("three_way") or {}
    return {"judge": judge, "protocol": protocol, "subset": subset, "pairs": pairs,
            "accuracy": _n(fig.get("accuracy")), "95% CI": _ci(fig.get("accuracy_ci")),
            "output_1 first": _n(fig.get("accuracy_first")), "swapped": _n(fig.get("accuracy_second")),
            "both orders": _n(fig.get("correct_both")), "same choice": _n(fig.get("same_choice")),
            "3-way accuracy": _n(three.get("accuracy")), "3-way 95% CI": _ci(three.get("accuracy_ci")),
            "macro-F1": _n(three.get("macro_f1")), "macro-F1 95% CI": _ci(three.get("macro_f1_ci")), "prompt": prompt}


def table_rows(checks: list[dict]) -> list[dict]:
    rows, published = [], {}
    run = {c["protocol"] for c in checks}
    for check in checks:
        n = f"{check['n_pairs']} of {check['n_total']}" if check["n_pairs"] < check["n_total"] else str(check["n_total"])
        failed = check["figures"]["all"].get("n_failed")
        note = "this run" + (f"; {failed} pairs failed (run again to retry)" if failed else "")
        rows.append(_figures(check["judge"], check["protocol"], "all", n, check["figures"]["all"], note))
        for subset, fig in (check["figures"].get("subsets") or {}).items():
            rows.append(_figures(check["judge"], check["protocol"], subset, str(fig["n_pairs"]), fig, note))
        for row in check.get("published") or []:
            published.setdefault((row["evaluator"], row["strategy"], row.get("pairs", "all")), (row, check))
    order = sorted(published, key=lambda k: (k[0] != "GPT-4", k[0], k[1] != "Vanilla_NoRules", k[2]))
    for evaluator, strategy, pairs_kind in order:
        row, check = published[(evaluator, strategy, pairs_kind)]
        if "three_way" in row:
            three = row["three_way"]
            pairs = str(three["n_pairs"]) + (" (these)" if row.get("pairs") == "these" else "")
            rows.append(_figures(f"{evaluator} (published)", strategy, "all", pairs, {"three_way": three},
                                 row["prompt"] + "; " + row["source"]))
            continue
        subsets = row.get("subsets") or {}
        together = _pooled(subsets)
        size = sum(v.get("n_pairs") or 0 for v in subsets.values()) or ""
        prompt = (f"the same prompt as this table's llmbar/{strategy} rows" if f"llmbar/{strategy}" in run else
                  f"a different prompt: LLMBar's {strategy} (make judge-check PROTOCOL=llmbar runs it)")
        rows.append(_figures(f"{evaluator} (published)", f"llmbar/{strategy}", "all", str(size), together, prompt))
        if len(subsets) > 1:
            for subset, fig in subsets.items():
                rows.append(_figures(f"{evaluator} (published)", f"llmbar/{strategy}", subset,
                                     str(fig.get("n_pairs") or ""), fig, prompt))
    return rows


def _pooled(subsets: dict) -> dict:
    """Several subsets' published figures pooled by their sizes (all of LLMBar Adversarial)."""
    if len(subsets) == 1:
        return next(iter(subsets.values()))
    keys = ("accuracy", "accuracy_first", "accuracy_second", "correct_both", "same_choice")
    sizes = [v.get("n_pairs") or 0 for v in subsets.values()]
    if not all(sizes):
        return {}
    return {k: sum(v[k] * n for v, n in zip(subsets.values(), sizes)) / sum(sizes) for k in keys}


def _used(rows: list[dict]) -> list[str]:
    return [c for c in COLUMNS if any(r.get(c) for r in rows) or c in ("judge", "accuracy")]


def markdown(rows: list[dict], title: str = "") -> str:
    cols = _used(rows)
    lines = ([f"## {title}", ""] if title else []) + ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")).replace("|", "\\|") for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def text(rows: list[dict]) -> str:
    cols = [c for c in _used(rows) if c != "prompt"]
    width = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(width[c]) for c in cols)]
    lines += ["  ".join(str(r.get(c, "")).ljust(width[c]) for c in cols) for r in rows]
    prompts = [f"  {r['judge']} / {r['protocol']} : {r['prompt']}" for r in rows if r.get("subset") == "all"]
    return "\n".join(lines + ["prompts:"] + prompts)


def explain(check: dict) -> str:
    figs = check["figures"]["all"]
    lines = [f"{check['title']} ({check['set']}): {check['meaning']}",
             f"judge '{check['judge']}' ({check['judge_kind'] or 'annotator'}), protocol {check['protocol']}; "
             f"{check['n_pairs']} of {check['n_total']} pairs" + (f" (LIMIT={check['limit']}, stratified by subset and "
                                                                   f"label, seed {check['seed']})" if check["limit"] else ""),
             "accuracy = the mean of the two orders' accuracies (LLMBar's correct_average; a tie counts half), "
             "95% percentile bootstrap interval over the pairs"]
    if check["ties"]:
        lines.append(f"3-way accuracy and macro-F1 over tie/1/2 as PandaLM scores them; the judge's tie: {check['tie_rule']}")
    if figs.get("n_failed"):
        lines.append(f"WARNING: {figs['n_failed']} pairs got no verdict (failed calls, not guessed); run again to retry them")
    return "\n".join(lines)


def write(check: dict, path: Path) -> None:
    rows = table_rows([check])
    write_json_atomic(path, check)
    write_atomic(path.with_suffix(".csv"), csv_text(rows).encode("utf-8"))
    write_atomic(path.with_suffix(".md"), (markdown(rows, f"{check['title']}: {check['judge']}") + "\n"
                                           + explain(check) + "\n").encode("utf-8"))
