"""Readers of the benchmark files: each set's own format -> the normalized question records.

A reader takes the set's table (data/benchmarks.toml) and its files ({role: path in the cache},
sha256 already checked) and returns (questions, reference answers or None). A normalized record:
    {"instruction": turn 1, "input": "", "dataset": ..., "question_id": ..., "category": ...,
     "turns": [user turns], "reference": [per-turn reference answer] or None,
     "generation": {"temperature", "max_tokens"} (absent when the set declares none), "meta": {...}}
`reference` is a grading reference (MT-Bench's GPT-4 answers for math/reasoning/coding,
AlignBench's); a pairwise set's baseline answers come back separately, as alpaca_eval
reference_outputs records keyed by the same instruction. Not handled here: fetching (data.py).
"""
from __future__ import annotations

import json
from pathlib import Path

from lib.records import InputError, jsonl_items, read_text


def _jsonl(path: Path) -> list[dict]:
    return [item for _, item in jsonl_items(path, read_text(path, "missing from the cache"))]


def _json(path: Path):
    try:
        return json.loads(read_text(path, "missing from the cache"))
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON ({err.msg})") from None


def _record(instruction: str, dataset: str, question_id, turns: list[str], reference=None, meta=None) -> dict:
    return {"instruction": instruction.strip(), "input": "", "dataset": dataset, "question_id": question_id,
            "category": dataset, "turns": turns, "reference": reference, "meta": meta or {}}


def _reference(instruction: str, output: str, generator: str, dataset: str) -> dict:
    return {"instruction": instruction.strip(), "input": "", "output": output, "generator": generator,
            "dataset": dataset}


def read_fastchat(table: dict, files: dict[str, Path]):
    """FastChat's question.jsonl; reference_answer (choices[0].turns) per question id if given."""
    answers = {}
    if "reference_answer" in files:
        answers = {a["question_id"]: a["choices"][0]["turns"] for a in _jsonl(files["reference_answer"])}
    questions = []
    for q in _jsonl(files["questions"]):
        meta = {"question_reference": q["reference"]} if q.get("reference") else {}
        questions.append(_record(q["turns"][0], q["category"], q["question_id"], list(q["turns"]),
                                 answers.get(q["question_id"]), meta))
    return questions, None


def read_alpaca_eval(table: dict, files: dict[str, Path]):
    """A model_outputs.json: its instructions are the questions, its outputs the reference."""
    records = _json(files["outputs"])
    questions = [_record(r["instruction"], r["dataset"], i, [r["instruction"]]) for i, r in enumerate(records)]
    reference = None
    if table.get("reference") == "outputs":
        reference = [_reference(r["instruction"], r["output"], table["reference_name"], r["dataset"])
                     for r in records]
    return questions, reference


def _answer_text(message: dict) -> str:
    content = message["content"]
    return content["answer"] if isinstance(content, dict) else content


def read_arena_hard(table: dict, files: dict[str, Path]):
    """Arena-Hard's question.jsonl (uid, prompt) and a baseline model_answer jsonl (by uid)."""
    field = table.get("dataset_field", "category")
    questions = []
    for q in _jsonl(files["questions"]):
        meta = {k: v for k, v in q.items() if k not in ("uid", "prompt", "turns")}
        prompt = q["prompt"] if "prompt" in q else q["turns"][0]["content"]  # older files: turns
        questions.append(_record(prompt, str(q.get(field, "")), q["uid"], [prompt.strip()], None, meta))
    reference = None
    if table.get("reference") == "baseline":
        answers = {a["uid"]: _answer_text(a["messages"][-1]) for a in _jsonl(files["baseline"])}
        missing = [q["question_id"] for q in questions if q["question_id"] not in answers]
        if missing:
            raise InputError(f"{files['baseline']}: no baseline answer for {len(missing)} prompt(s), e.g. {missing[0]}")
        reference = [_reference(q["instruction"], answers[q["question_id"]], table["reference_name"], q["dataset"])
                     for q in questions]
    return questions, reference


def read_alignbench(table: dict, files: dict[str, Path]):
    """AlignBench's data jsonl; the question type and its dimensions from config/*.json."""
    types = _json(files["subcategory_question_mapping"]) if "subcategory_question_mapping" in files else {}
    dimensions = _json(files["dimension_set"]) if "dimension_set" in files else {}
    questions = []
    for q in _jsonl(files["questions"]):
        qtype = types.get(q["subcategory"])
        meta = {"subcategory": q["subcategory"], "question_type": qtype, "dimensions": dimensions.get(qtype, [])}
        questions.append(_record(q["question"], q["category"], q["question_id"], [q["question"].strip()],
                                 [q["reference"]] if q.get("reference") else None, meta))
    return questions, None


READERS = {"fastchat": read_fastchat, "alpaca_eval": read_alpaca_eval, "arena_hard": read_arena_hard,
           "alignbench": read_alignbench}


def generation_for(table: dict, files: dict[str, Path]):
    """A function category -> {temperature, max_tokens} (or None) from [sets.NAME.generation]."""
    settings = dict(table.get("generation", {}))
    temperatures = {}
    role = settings.pop("temperatures_file", None)
    if role is not None:
        if role not in files:
            raise InputError(f"generation.temperatures_file = {role!r}: no file has that role")
        temperatures = _json(files[role])
    default = settings.pop("default", {})

    def settings_of(category: str) -> dict | None:
        merged = {**default, **settings.get(category, {})}
        if category in temperatures:
            merged["temperature"] = float(temperatures[category])
        return merged or None
    return settings_of


def normalize(table: dict, files: dict[str, Path]):
    """(questions, reference or None) of one set, filtered by `select`, with generation settings."""
    try:
        questions, reference = READERS[table["format"]](table, files)
    except (KeyError, IndexError, TypeError, AttributeError) as err:
        raise InputError(f"a {table['format']} file lacks what its format has ({type(err).__name__}: {err}); "
                         f"check the files' roles and format in data/benchmarks.toml") from None
    select = table.get("select", {})
    if select:
        keep = [all(q["meta"].get(k, q.get(k)) == v for k, v in select.items()) for q in questions]
        questions = [q for q, k in zip(questions, keep) if k]
        reference = reference and [r for r, k in zip(reference, keep) if k]
    settings_of = generation_for(table, files)
    for q in questions:
        generation = settings_of(q["category"])
        if generation:
            q["generation"] = generation
    return questions, reference
