"""A judge against people: `make judge-check PAIRS=NAME [LIMIT=N] [PROTOCOL=...]` on a pair set of
data/judge_sets.toml (tools/judge_sets.py), scored as LLMBar and PandaLM score (judge_scores.py).

Three ways to ask the judge (PROTOCOL):
- pairwise (the default): the board's own question (judges/prompt.py), each pair in both
  orders, through the same code, verdict cache and identity as the board. A pair's choice in one
  order is the output the judge gives more than half its probability; its 3-way verdict (sets
  with ties) is the board's rule for two orders: both orders pick the same output -> that
  output, they disagree -> a tie (FastChat's "inconsistent = tie"; the board's soft mean is then
  near 1.5);
- llmbar: LLMBar's own Vanilla_NoRules and Vanilla prompts (judges/llmbar.py), both orders;
- grade: each answer rated alone 1-10 with MT-Bench's single-v1 prompt (FastChat's
  judge_prompts.jsonl, fetched with the pins of the mt_bench set; no reference answers: LLMBar's
  processing keeps no category); the higher rating wins, a tie when the ratings differ by less
  than TIE_MARGIN (local judges: expected ratings, API judges: the written ones, so equal).
The result goes to OUT/judge/checks/JUDGE-SET[-limitN][.PROTOCOL].json with a .csv and a .md
table beside it (judge_report.py); the board quotes the latest ones (lib/human_checks.py).
Not handled: LLMBar's multi-call strategies (CoT, Metrics, Reference, Swap).
"""
from __future__ import annotations

import re
import sys
from datetime import datetime, timezone
from pathlib import Path

from lib.human_checks import human_line, human_summary  # noqa: F401  (also this module's API)
from lib.records import InputError, read_json

TIE_MARGIN = 0.5  # grade: |rating_1 - rating_2| below this is a tie (half a point on 1-10)
PROTOCOLS = ("pairwise", "llmbar", "grade")


def _side(p_first: float | None) -> str | None:
    """"1" when the output shown first got more than half the probability, "2" less, "tie" half."""
    if p_first is None:
        return None
    return "1" if p_first > 0.5 + 1e-9 else "2" if p_first < 0.5 - 1e-9 else "tie"


def _three_way(first: str | None, second: str | None) -> str | None:
    if first is None or second is None:
        return None
    return first if first == second else "tie"


def _flip(choice: str | None) -> str | None:
    return {"1": "2", "2": "1"}.get(choice, choice)


def run_pairwise(judge, pairs: list[dict], out_dir: Path) -> tuple[list[dict], dict]:
    from judges.pairs import Pair, judge_pairs

    todo = [Pair("output_1", p["instruction"], p["output_1"], p["output_2"], i) for i, p in enumerate(pairs)]
    results, stats = judge_pairs(judge, todo, out_dir, progress=lambda m: print(m, file=sys.stderr, flush=True))
    rows = []
    for pair, result in zip(pairs, results):
        if result["identical"]:
            first = second = "tie"
        else:  # pref: 1 = the output shown first is better, 2 = the second
            first = None if result["pref_model_first"] is None else _side(2 - result["pref_model_first"])
            second = None if result["pref_reference_first"] is None else _flip(_side(2 - result["pref_reference_first"]))
        rows.append({"first": first, "second": second, "pred": _three_way(first, second),
                     "p_1_first": None if result["pref_model_first"] is None else round(2 - result["pref_model_first"], 4),
                     "p_1_second": None if result["pref_reference_first"] is None else round(result["pref_reference_first"] - 1, 4)})
    return rows, {"made": stats.made, "reused_from_cache": stats.reused, "failed": stats.failed}


def _labels(judge, calls, out_dir: Path):
    from judges.labels import label_calls

    return label_calls(judge, calls, out_dir, progress=lambda m: print(m, file=sys.stderr, flush=True))


def run_llmbar(judge, pairs: list[dict], out_dir: Path, strategy: str) -> tuple[list[dict], dict]:
    from judge_sets import prompt_files
    from judges.llmbar import choice, llmbar_call, load_llmbar

    prompts = load_llmbar(prompt_files("llmbar"))
    api = judge.kind == "openai"
    calls = [(llmbar_call(prompts, strategy, p["instruction"], p["output_1"], p["output_2"], api),
              llmbar_call(prompts, strategy, p["instruction"], p["output_2"], p["output_1"], api)) for p in pairs]
    records, stats = _labels(judge, [c for both in calls for c in both], out_dir)
    rows = []
    for a, b in calls:
        first, second = choice(records.get(a)), _flip(choice(records.get(b)))
        rows.append({"first": first, "second": second, "pred": _three_way(first, second)})
    return rows, {"made": stats.made, "reused_from_cache": stats.reused, "failed": stats.failed}


def run_grade(judge, pairs: list[dict], out_dir: Path, max_tokens: int, fast: bool) -> tuple[list[dict], dict]:
    import data
    from board.graded.mt_bench import load_judge_prompts, single_calls
    from lib.benchsets import load_sets

    entry = next(e for e in load_sets()["mt_bench"]["files"] if e["role"] == "judge_prompts")
    prompts = load_judge_prompts(data.fetch("mt_bench", entry))

    def call(instruction: str, answer: str):
        return single_calls(prompts, {"turns": [instruction]}, [answer], max_tokens, fast)[0][2]
    calls = [(call(p["instruction"], p["output_1"]), call(p["instruction"], p["output_2"])) for p in pairs]
    records, stats = _labels(judge, [c for both in calls for c in both], out_dir)
    rows = []
    for a, b in calls:
        ra, rb = records.get(a), records.get(b)
        if not ra or not rb or ra.get("score") is None or rb.get("score") is None:
            rows.append({"first": None, "second": None, "pred": None})
            continue
        gap = ra["score"] - rb["score"]
        rows.append({"first": None, "second": None, "rating_1": round(ra["score"], 3), "rating_2": round(rb["score"], 3),
                     "pred": "tie" if abs(gap) < TIE_MARGIN else "1" if gap > 0 else "2"})
    return rows, {"made": stats.made, "reused_from_cache": stats.reused, "failed": stats.failed}


def result_path(out_dir: Path, judge_name: str, set_name: str, limit: int | None, protocol: str) -> Path:
    protocol = "grade" if protocol.startswith("grade") else protocol
    stem = re.sub(r"[^\w.-]", "_", judge_name) + f"-{set_name}" + (f"-limit{limit}" if limit else "")
    return Path(out_dir) / "judge" / "checks" / (stem + ("" if protocol == "pairwise" else f".{protocol.replace('/', '-')}") + ".json")


def check_set(judge, pairs: list[dict], info: dict, out_dir: Path, protocol: str, strategy: str = "",
              max_tokens: int = 512, fast: bool = False) -> dict:
    """One judge, one set, one protocol (and LLMBar strategy): the figures and every pair's verdicts."""
    from judge_scores import score

    if protocol != "pairwise" and not hasattr(judge, "label"):
        raise InputError(f"PROTOCOL={protocol}: judge '{judge.name}' ({judge.kind or 'an alpaca_eval annotator'}) "
                         "cannot run it (it needs a models.toml judge: llama.cpp, transformers or openai); "
                         "PROTOCOL=pairwise works with every judge")
    if protocol == "pairwise":
        rows, calls = run_pairwise(judge, pairs, out_dir)
        name = "pairwise"
    elif protocol == "llmbar":
        rows, calls = run_llmbar(judge, pairs, out_dir, strategy)
        name = f"llmbar/{strategy}"
    else:
        rows, calls = run_grade(judge, pairs, out_dir, max_tokens, fast)
        name = "grade/mt_bench-single-v1"
    for pair, row in zip(pairs, rows):
        row.update(id=pair["id"], subset=pair["subset"], label=pair["label"])
    figures = score(rows, info["ties"], info["subsets"])
    return {"kind": "human-agreement", "judge": judge.name, "judge_id": judge.judge_id, "judge_kind": judge.kind,
            "identity": judge.identity, "set": info["name"], "title": info["title"], "meaning": info["meaning"],
            "ties": info["ties"], "protocol": name, "tie_rule": tie_rule(protocol),
            "limit": info["limit"], "seed": info["seed"], "n_total": info["n_total"], "n_pairs": len(pairs),
            "subsets": info["subsets"], "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "figures": figures, "calls": calls, "published": published_rows(info, name, pairs), "pairs": rows}


def tie_rule(protocol: str) -> str:
    return {"pairwise": "a tie when the two orders choose different outputs (the board's and FastChat's rule)",
            "llmbar": "a tie when the two orders choose different outputs (LLMBar's prompts allow no tie)",
            "grade": f"a tie when the two ratings differ by less than {TIE_MARGIN} (expected ratings of a local "
                     "judge, written ones of an API judge)"}[protocol.split("/")[0]]


def published_rows(info: dict, protocol: str, pairs: list[dict]) -> list[dict]:
    """The published evaluators on the same file: LLMBar's statistics (its Vanilla_NoRules and
    Vanilla rows), PandaLM's judges (full set, and recomputed on these pairs from their own
    predictions); each row says whether its prompt is the one this run used."""
    import csv

    from lib.benchsets import ROOT
    from judge_scores import three_way

    published = info.get("published") or {}
    path = ROOT / published.get("path", "")
    if not published or not path.is_file():
        return []
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    wanted = published["datasets"]
    out = []
    if "accuracy_average" in rows[0]:  # LLMBar's table
        by = {}
        for r in rows:
            if r["strategy"] in ("Vanilla_NoRules", "Vanilla") and r["dataset"] in wanted.values():
                by.setdefault((r["evaluator"], r["strategy"]), {})[r["dataset"]] = r
        n_of = info.get("subset_sizes") or {}
        for (evaluator, strategy), datasets in sorted(by.items()):
            same = protocol == f"llmbar/{strategy}"
            row = {"evaluator": evaluator, "strategy": strategy, "prompt": "same prompt" if same else
                   f"a different prompt (LLMBar's {strategy}; this run: {protocol})", "source": published["source"]}
            for subset, dataset in wanted.items():
                if dataset in datasets:
                    r = datasets[dataset]
                    row.setdefault("subsets", {})[subset] = {
                        "accuracy": float(r["accuracy_average"]), "accuracy_first": float(r["accuracy_output1_first"]),
                        "accuracy_second": float(r["accuracy_swapped"]), "correct_both": float(r["correct_both_orders"]),
                        "same_choice": float(r["same_choice_both_orders"]), "n_pairs": n_of.get(subset)}
            out.append(row)
        return out
    for r in rows:  # PandaLM's table, and the same judges on these pairs
        if r["dataset"] in wanted.values():
            out.append({"evaluator": r["evaluator"], "strategy": r["strategy"], "source": r["source"],
                        "prompt": "a different prompt (PandaLM's own, one order)", "pairs": "all",
                        "three_way": {"accuracy": float(r["accuracy"]), "macro_f1": float(r["macro_f1"]),
                                      "n_pairs": int(r["n_pairs"])}})
    if info.get("limit") and info["limit"] < info["n_total"]:
        from judge_sets import predictions
        for judge, preds in predictions(info, pairs).items():
            rows3 = [{"label": p["label"], "pred": v} for p, v in zip(pairs, preds)]
            out.append({"evaluator": judge, "strategy": "PandaLM", "source": "its own predictions on these pairs",
                        "prompt": "a different prompt (PandaLM's own, one order)", "pairs": "these",
                        "three_way": three_way(rows3, count_missing=True)})
    return out


def _other_runs(out_dir: Path, judge, set_name: str, limit: int | None, done: set) -> list[dict]:
    """This judge's earlier checks of the same pairs under the other protocols (shown beside)."""
    found = []
    for protocol in ("pairwise", "llmbar/Vanilla_NoRules", "llmbar/Vanilla", "grade"):
        path = result_path(out_dir, judge.name, set_name, limit, protocol)
        if protocol in done or not path.is_file():
            continue
        try:
            check = read_json(path)
        except InputError:
            continue
        if isinstance(check, dict) and check.get("judge_id") == judge.judge_id:
            found.append(check)
    return found


def main_sets(args, protocol: str, limit: int | None, resolve_judge, registry) -> int:
    """make judge-check PAIRS=NAME: every judge, every protocol asked; one table at the end."""
    import judge_report
    from judge_sets import read_pair_set
    from lib.records import write_atomic

    pairs, info = read_pair_set(str(args.pairs), limit)
    strategies = args.llmbar_prompts.split() if protocol == "llmbar" else [""]
    from judges.llmbar import STRATEGIES
    for s in strategies:
        if protocol == "llmbar" and s not in STRATEGIES:
            raise InputError(f"LLMBar prompt {s!r}: use {' or '.join(STRATEGIES)}")
    checks = []
    for name in dict.fromkeys(args.judge):
        judge = resolve_judge(name, registry, args.out)
        done = set()
        for strategy in strategies:
            max_tokens = min(512, judge.spec.max_tokens or 512) if hasattr(judge, "spec") and judge.kind != "openai" else 2048
            check = check_set(judge, pairs, info, args.out, protocol, strategy, max_tokens, args.fast)
            path = result_path(args.out, judge.name, info["name"], limit, check["protocol"])
            judge_report.write(check, path)
            print(judge_report.explain(check))
            print(f"-> {path} (and .csv, .md)\n")
            checks.append(check)
            done.add(check["protocol"])
        checks += _other_runs(args.out, judge, info["name"], limit, done)
    rows = judge_report.table_rows(checks)
    stem = str(Path(args.out) / "judge" / "checks" / (info["name"] + (f"-limit{limit}" if limit else "") + ".table"))
    write_atomic(Path(stem + ".md"), judge_report.markdown(rows, info["title"]).encode("utf-8"))
    write_atomic(Path(stem + ".csv"), judge_report.csv_text(rows).encode("utf-8"))
    print(judge_report.text(rows))
    print(f"-> {stem}.md (and .csv)")
    return 0

