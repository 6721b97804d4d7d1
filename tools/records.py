"""Questions in, alpaca_eval records out: loading, atomic writes and the answer cache.

Questions come as a text file (one per line; blank lines skipped; UTF-8 with or without a BOM;
CRLF fine) or as a JSON / JSONL file of alpaca_eval records (`instruction`, optional `input`,
`dataset`). Answers are alpaca_eval records: instruction, input, output, generator, dataset,
datasplit, plus tokens, seconds and the settings id they were made with.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

ALPACA_FIELDS = ("instruction", "input", "output", "generator", "dataset", "datasplit")


class InputError(ValueError):
    """Bad input, worded for the user."""


def read_text(path: Path, if_missing: str) -> str:
    """A UTF-8 text file (a BOM is fine), or a one-line InputError saying what is wrong."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: {if_missing}") from None
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8") from None


def jsonl_items(path: Path, text: str):
    """(line number, parsed JSON) for each non-blank line of a JSONL text."""
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None


def load_questions(path: str | Path) -> list[dict]:
    """Return [{instruction, input, dataset}] in file order, without duplicates."""
    path = Path(path)
    text = read_text(path, "questions file not found (QUESTIONS names it)")
    dataset = path.stem
    if path.suffix.lower() == ".json":
        try:
            items = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from None
        if not isinstance(items, list):
            raise InputError(f"{path}: expected a JSON list of records with an 'instruction'")
        questions = [_question(path, i + 1, item, dataset) for i, item in enumerate(items)]
    elif path.suffix.lower() == ".jsonl":
        questions = [_question(path, lineno, item, dataset) for lineno, item in jsonl_items(path, text)]
    else:
        questions = [{"instruction": line.strip(), "input": "", "dataset": dataset}
                     for line in text.splitlines() if line.strip()]
    unique = list({question_key(q): q for q in questions}.values())
    if not unique:
        raise InputError(f"{path}: no questions found")
    return unique


def _question(path: Path, where: int, item: object, dataset: str) -> dict:
    if not isinstance(item, dict):
        raise InputError(f"{path}: record {where} is not an object with an 'instruction'")
    instruction = item.get("instruction")
    if not isinstance(instruction, str) or not instruction.strip():
        raise InputError(f"{path}: record {where} has no 'instruction' text")
    extra = item.get("input", "") or ""
    if not isinstance(extra, str):
        raise InputError(f"{path}: record {where}: 'input' must be text")
    return {"instruction": instruction.strip(), "input": extra,
            "dataset": str(item.get("dataset") or dataset)}


def question_key(record: dict) -> tuple[str, str]:
    return record["instruction"], record.get("input", "") or ""


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes it private; outputs are for anyone to read
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, data: object) -> None:
    write_atomic(path, (json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: str | Path) -> object:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: not found; run the stage that makes it first") from None
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON ({err.msg}); delete it and run again") from None


class AnswerCache:
    """An append-only JSONL file of every answer a model has given, one line each.

    Each answer is appended (and flushed to disk) the moment it is done, so a crash or Ctrl-C
    loses at most the answer being written; a torn last line is ignored on reading. Failed
    answers are not cached, so a rerun retries them.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.answers: dict[tuple[str, str, str], dict] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                    self.answers[(record["settings_id"], *question_key(record))] = record
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line torn by a crash

    def get(self, settings_id: str, question: dict) -> dict | None:
        return self.answers.get((settings_id, *question_key(question)))

    def add(self, record: dict) -> None:
        self.answers[(record["settings_id"], *question_key(record))] = record
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())


def answer_record(question: dict, generator: str, settings_id: str, output: str = "",
                  tokens: int = 0, seconds: float = 0.0, error: str | None = None) -> dict:
    record = {
        "instruction": question["instruction"],
        "input": question.get("input", "") or "",
        "output": output,
        "generator": generator,
        "dataset": question.get("dataset", ""),
        "datasplit": "eval",
        "tokens": tokens,
        "seconds": round(seconds, 3),
        "settings_id": settings_id,
    }
    if error is not None:
        record["error"] = error
    return record


def merge_outputs(paths: list[Path]) -> list[dict]:
    """All models' answered records in one list (failed answers left out), model by model."""
    merged = []
    for path in paths:
        records = read_json(path)
        if not isinstance(records, list):
            raise InputError(f"{path}: expected a list of alpaca_eval records")
        merged.extend(r for r in records if not r.get("error"))
    return merged
