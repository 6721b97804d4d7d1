"""The graded board's exports, in the formats the benchmarks' own tools read.

- MT-Bench (and the own prompt): FastChat's single-judgment JSONL,
  OUT/fastchat/model_judgment/JUDGE_single.jsonl, one line per graded turn:
  {question_id, model, judge: [judge, prompt name], user_prompt, judgment, score, turn, tstamp}.
  `score` is the board's rating (a local judge's expected rating); a failed call is -1, as
  FastChat writes it, so FastChat's show_result.py leaves it out exactly as our board does:
  `python -m fastchat.llm_judge.show_result --mode single --input-file ...` prints our scores.
- MT-Bench's pairwise mode (VERSUS=all, board/graded/pairs.py): FastChat's pair-judgment JSONL,
  OUT/fastchat/model_judgment/JUDGE_pair.jsonl, one line per match: {question_id, model_1,
  model_2, g1_winner, g2_winner, judge, g1/g2_user_prompt, g1/g2_judgment, turn, tstamp}; a game
  without a verdict is "error", which show_result.py --mode pairwise-all leaves out.
- AlignBench: its judgment JSONL per model, OUT/alignbench/model_judgment/MODEL.jsonl, the
  answer doc plus dimensions, judge_prompt, judgment, rating (the per-dimension dict) and score.
  Failed calls are left out of this file: AlignBench's show_result.py would average their -1 in.
Files are written whole and atomically (records.write_atomic), in the board's order.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from lib.records import write_atomic


def _jsonl(lines: list[dict]) -> bytes:
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode("utf-8")


def safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def fastchat_single(items: list[dict], records: dict, judge_name: str) -> list[dict]:
    now = time.time()
    lines = []
    for item in items:
        record = records.get(item["call"])
        messages = item["call"].messages()
        lines.append({"question_id": item["question_id"], "model": item["model"], "judge": [judge_name, item["prompt"]],
                      "user_prompt": messages[-1]["content"], "judgment": (record or {}).get("judgment", ""),
                      "score": (record or {}).get("score", -1) if record else -1, "turn": item["turn"], "tstamp": now})
    return lines


def fastchat_pair(items: list[dict], rows: list[dict], judge_name: str) -> list[dict]:
    """FastChat's play_a_match_pair records, one per match (rows: grade_pairs.games)."""
    now = time.time()
    return [{"question_id": item["question_id"], "model_1": item["model_1"], "model_2": item["model_2"],
             "g1_winner": row["g1_winner"], "g2_winner": row["g2_winner"], "judge": [judge_name, item["prompt"]],
             "g1_user_prompt": item["g1"].messages()[-1]["content"], "g1_judgment": row["g1_judgment"],
             "g2_user_prompt": item["g2"].messages()[-1]["content"], "g2_judgment": row["g2_judgment"],
             "turn": item["turn"], "tstamp": now} for item, row in zip(items, rows)]


def write_fastchat_pair(items: list[dict], rows: list[dict], judge_name: str, out: Path) -> Path:
    path = Path(out) / "fastchat" / "model_judgment" / f"{safe_name(judge_name)}_pair.jsonl"
    write_atomic(path, _jsonl(fastchat_pair(items, rows, judge_name)))
    return path


def alignbench_docs(items: list[dict], records: dict) -> dict[str, list[dict]]:
    from board.graded.alignbench import dimension_scores

    docs: dict[str, list[dict]] = {}
    for item in items:
        record = records.get(item["call"])
        if not record:
            continue
        q, fields = item["question"], dict(item["call"].fields)
        reference = q.get("reference")
        docs.setdefault(item["model"], []).append({
            "question_id": item["question_id"], "category": q.get("category"),
            "subcategory": fields.get("subcategory"), "question": fields.get("question"),
            "reference": reference[0] if isinstance(reference, list) and reference else reference,
            "answer": item["outputs"][0] if item["outputs"] else "", "model_id": item["model"],
            "dimensions": _dims(item), "judge_prompt": item["call"].messages()[-1]["content"],
            "judgment": record.get("judgment", ""), "rating": dimension_scores(record.get("judgment", "")),
            "score": record.get("score")})
    return docs


def _dims(item: dict) -> list[str]:
    listed = dict(item["call"].fields).get("dimensions", "")
    return [line.split(". ", 1)[1].split("：", 1)[0] for line in listed.splitlines() if ". " in line]


def write_exports(grader: str, items: list[dict], records: dict, judge_name: str, out: Path) -> list[Path]:
    written = []
    if grader == "alignbench":
        for model, docs in alignbench_docs(items, records).items():
            path = Path(out) / "alignbench" / "model_judgment" / f"{safe_name(model)}.jsonl"
            write_atomic(path, _jsonl(docs))
            written.append(path)
        return written
    path = Path(out) / "fastchat" / "model_judgment" / f"{safe_name(judge_name)}_single.jsonl"
    write_atomic(path, _jsonl(fastchat_single(items, records, judge_name)))
    return [path]
