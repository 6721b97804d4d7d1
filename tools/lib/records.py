"""Questions in, alpaca_eval records out: loading, atomic writes and the answer cache.

Questions come as a text file (one per line; blank lines skipped; UTF-8 with or without a BOM;
CRLF fine; lines end at \n only, so a form feed or U+2028 stays inside its line), as a JSON /
JSONL file of alpaca_eval records (`instruction`, optional `input`, `dataset`), as FastChat's
question.jsonl (`question_id`, `category`, `turns`, optional `reference`: a conversation of
several user turns, `category` as its dataset, turn 1 as its instruction), or as a normalized
benchmark set written by tools/data.py (those fields plus `generation` and `meta`, kept on each
question). Any record may carry `generation` ({"temperature", "max_tokens", "top_p"}: its own
settings, used where a model sets none).
Answers are alpaca_eval records: instruction, input, output, generator, dataset, datasplit, plus
tokens, seconds and the settings id they were made with; an answer to a later turn of a
conversation also has `turn` and the `history` it was shown.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import sys
import tempfile
from pathlib import Path

ALPACA_FIELDS = ("instruction", "input", "output", "generator", "dataset", "datasplit")
# Half of a UTF-16 pair alone: valid in JSON ("\ud800"), but no character, and not encodable.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# What is kept of an answer: no real token is longer, on average, than this many characters.
CHARS_PER_TOKEN, MIN_KEPT_CHARS = 64, 4096


class InputError(ValueError):
    """Bad input, worded for the user."""


def read_text(path: Path, if_missing: str) -> str:
    """A UTF-8 text file (a BOM is fine), or a one-line InputError saying what is wrong."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: {if_missing}") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a file; name the file itself") from None
    except PermissionError:
        raise InputError(f"{path}: no permission to read it; fix its permissions") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        lineno = data[:err.start].count(b"\n") + 1
        raise InputError(f"{path}:{lineno}: not UTF-8 text ({err.reason}); save the file as UTF-8") from None


def text_lines(text: str) -> list[str]:
    """The lines of a text, split on \\n (a \\r before it dropped) and nothing else.

    Not str.splitlines: it also breaks at form feeds, U+0085 and U+2028, which are characters
    inside a line (valid in a JSON string, and part of a question), not line ends."""
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


def jsonl_items(path: Path, text: str):
    """(line number, parsed JSON) for each non-blank line of a JSONL text (text_lines: Arena-Hard
    v2.0's prompts hold U+2028 raw)."""
    for lineno, line in enumerate(text_lines(text), 1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None


def load_questions(path: str | Path) -> list[dict]:
    """Return [{instruction, input, dataset}] in file order, without duplicates (said on stderr).

    A NUL byte is refused: it is a binary file, or text no model should be sent as it is."""
    path = Path(path)
    text = read_text(path, "questions file not found (QUESTIONS names it)")
    if "\0" in text:
        lineno = text[:text.index("\0")].count("\n") + 1
        raise InputError(f"{path}:{lineno}: contains a NUL byte (a binary file?); remove it")
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
        questions = [_question(path, f"on line {lineno}", item, dataset) for lineno, item in jsonl_items(path, text)]
    else:
        questions = [{"instruction": line.strip(), "input": "", "dataset": dataset}
                     for line in text_lines(text) if line.strip()]
    unique = list({question_key(q): q for q in questions}.values())
    if not unique:
        raise InputError(f"{path}: no questions found")
    if len(unique) < len(questions):
        print(f"note: {path}: {len(questions) - len(unique)} duplicate question(s) skipped; "
              f"{len(unique)} asked once each", file=sys.stderr)
    return unique


# Fields of a benchmark set's question (tools/lib/benchformats.py) kept as they are.
SET_FIELDS = ("question_id", "category", "reference", "generation", "meta")


def _question(path: Path, where: int, item: object, dataset: str) -> dict:
    if not isinstance(item, dict):
        raise InputError(f"{path}: record {where} is not an object with an 'instruction'")
    turns = item.get("turns")
    if turns is not None and (not isinstance(turns, list) or not turns
                              or not all(isinstance(t, str) and t.strip() for t in turns)):
        raise InputError(f"{path}: record {where}: 'turns' must be a list of non-empty texts")
    instruction = item.get("instruction", turns[0] if turns else None)
    if not isinstance(instruction, str) or not instruction.strip():
        raise InputError(f"{path}: record {where} has no 'instruction' text (or 'turns')")
    extra = item.get("input", "") or ""
    if not isinstance(extra, str):
        raise InputError(f"{path}: record {where}: 'input' must be text")
    if "\0" in instruction + extra + "".join(turns or []):
        raise InputError(f"{path}: record {where} contains a NUL character; remove it")
    question = {"instruction": instruction.strip(), "input": extra,
                "dataset": str(item.get("dataset") or item.get("category") or dataset)}
    if turns is not None:
        question["turns"] = [t.strip() for t in turns]
    if any(LONE_SURROGATE.search(text) for text in [instruction, extra, *(turns or [])]):
        raise InputError(f"{path}: record {where} contains a lone surrogate (a \\ud800-\\udfff escape without "
                         "its pair: no character); remove it or write the whole character")
    question.update((k, item[k]) for k in SET_FIELDS if k in item)
    if item.get("generation") is not None:
        question["generation"] = _generation(path, where, item["generation"])
    return question


def _generation(path: Path, where: int, value: object) -> dict:
    """A record's own generation settings, checked: {"temperature", "max_tokens", "top_p"}."""
    checks = {"temperature": lambda v: isinstance(v, (int, float)) and v >= 0,
              "max_tokens": lambda v: isinstance(v, int) and v > 0,
              "top_p": lambda v: isinstance(v, (int, float)) and 0 < v <= 1}
    if not isinstance(value, dict) or any(k not in checks or isinstance(v, bool) or not checks[k](v)
                                          for k, v in value.items()):
        raise InputError(f"{path}: record {where}: 'generation' must be an object of temperature (>= 0), "
                         f"max_tokens (> 0) and top_p (in (0, 1]), got {json.dumps(value)[:80]}")
    return {k: float(v) if k != "max_tokens" else v for k, v in value.items()}


def question_key(record: dict) -> tuple[str, str]:
    """(instruction, input); a question of several turns adds its later turns to the second part,
    so two conversations that open alike stay two questions."""
    extra = record.get("input", "") or ""
    turns = record.get("turns") or []
    if len(turns) > 1:
        extra += "".join(f"\n\x1eturn {i}: {t}" for i, t in enumerate(turns[1:], 2))
    return record["instruction"], extra


def answer_key(settings_id: str, question: dict) -> tuple:
    """What an answer is cached under: the settings, the question, and for a later turn of a
    conversation its turn number and the history shown (the model's own earlier answers)."""
    history = question.get("history")
    if not history:  # a first turn: the key answers had before conversations existed
        return (settings_id, *question_key(question))
    shown = hashlib.sha256(json.dumps(history, ensure_ascii=False).encode("utf-8")).hexdigest()
    return (settings_id, *question_key(question), len(history) + 1, shown)


def current_umask() -> int:
    """The process's umask, read without changing it (os.umask can only set it, and setting it
    for a moment would affect files other threads create meanwhile)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc (not Linux): the old way
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    write_together({path: data})


def write_together(files: dict) -> None:
    """Write several files ({path: bytes}) so that they change together: each to a temporary file
    beside it first (whole, on disk), then all renamed in order. When one cannot be written (a full
    disk), none is replaced, and the OSError names that file."""
    written = []
    try:
        for path, data in files.items():
            written.append((_write_temp(Path(path), data), Path(path)))
    except BaseException:
        for tmp, _ in written:
            Path(tmp).unlink(missing_ok=True)
        raise
    for tmp, path in written:
        os.replace(tmp, path)


def _write_temp(path: Path, data: bytes) -> str:
    """`data` in a new temporary file beside `path`, flushed to disk; its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        # mkstemp makes it private (0600): give it what open() would, 0666 less the umask.
        os.chmod(tmp, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return tmp
    except BaseException as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename in (None, tmp):  # a full disk: say which file
            raise OSError(err.errno, err.strerror, str(path)) from None
        raise


def json_bytes(data: object) -> bytes:
    return (json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def write_json_atomic(path: str | Path, data: object) -> None:
    write_atomic(path, json_bytes(data))


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


def read_jsonl_lines(path: str | Path):
    """Each whole JSON value of an append-only JSONL file; torn or broken lines are skipped.

    A crash or a full disk can leave a last line cut anywhere, even inside a UTF-8 character:
    such a line (or any line that is not JSON) is skipped, never an error."""
    path = Path(path)
    if not path.is_file():  # absent, or a device (never read /dev/full or a pipe forever)
        return
    with path.open("rb") as f:
        for raw in f:
            try:
                yield json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue


def append_jsonl(path: str | Path, record: object) -> None:
    """Append one JSON line and flush it to disk. After a torn last line (crash, full disk), the
    new line starts on a line of its own, so it is never glued to the torn one and lost."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    try:
        with path.open("ab+") as f:
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    line = b"\n" + line
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:  # a full disk: say which file
        if err.filename is None:
            raise OSError(err.errno, err.strerror, str(path)) from None
        raise


@contextlib.contextmanager
def exclusive_lock(path: str | Path, waiting: str):
    """Hold an flock on `path` (our pid written in it); while another process holds it, print
    `waiting` (with its pid) and wait. The system releases it even after kill -9. Not handled:
    a network file system without working flock."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "?"
            print(waiting.replace("{pid}", holder), file=sys.stderr)
            fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class AnswerCache:
    """An append-only JSONL file of every answer a model has given, one line each.

    Each answer is appended (and flushed to disk) the moment it is done, so a crash or Ctrl-C
    loses at most the answer being written; a torn last line is skipped on reading and the next
    answer starts a new line, and so is a line with the right key but no text `output` (the
    question is answered again). Failed answers are not cached, so a rerun retries them.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.answers: dict[tuple, dict] = {}
        self.reload()

    def reload(self) -> None:
        """Read the file again (another run may have added answers while we waited for it)."""
        for record in read_jsonl_lines(self.path):
            try:
                key = answer_key(record["settings_id"], record)
            except (KeyError, TypeError):
                continue  # not an answer record
            if not isinstance(record.get("output"), str) or not all(isinstance(k, (str, int)) for k in key):
                continue  # damaged (edited by hand, another tool): answered again, like a torn line
            self.answers[key] = record

    def get(self, settings_id: str, question: dict) -> dict | None:
        return self.answers.get(answer_key(settings_id, question))

    def add(self, record: dict) -> None:
        append_jsonl(self.path, record)
        self.answers[answer_key(record["settings_id"], record)] = record


def clean_result(result: dict, max_tokens: int) -> dict:
    """A backend's result fit to keep: lone surrogates replaced by U+FFFD, the answer cut at
    max(MIN_KEPT_CHARS, CHARS_PER_TOKEN * max_tokens) characters; `notes` say what was done."""
    result, notes = dict(result), list(result.get("notes") or [])
    for key in ("output", "error"):
        if isinstance(result.get(key), str) and LONE_SURROGATE.search(result[key]):
            result[key], count = LONE_SURROGATE.subn("\ufffd", result[key])
            notes.append(f"{count} lone surrogate(s) in the {key} replaced by U+FFFD")
    keep = max(MIN_KEPT_CHARS, CHARS_PER_TOKEN * max_tokens)
    if isinstance(result.get("output"), str) and len(result["output"]) > keep:
        notes.append(f"answer cut to its first {keep:,} of {len(result['output']):,} characters "
                     f"(at most {CHARS_PER_TOKEN} per token of max_tokens = {max_tokens} are kept)")
        result["output"] = result["output"][:keep]
    if notes:
        result["notes"] = notes
    return result


def answer_record(question: dict, generator: str, settings_id: str, output: str = "",
                  tokens: int = 0, seconds: float = 0.0, error: str | None = None,
                  notes: list[str] | None = None) -> dict:
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
    # A set's question keeps its id, category and turns on the answer (and so in question_key).
    record.update((k, question[k]) for k in ("question_id", "category") if k in question)
    if len(question.get("turns") or []) > 1:  # one turn has no list: alpaca_eval's tools hash every field
        record["turns"] = question["turns"]
    if error is not None:
        record["error"] = error
    if notes:
        record["notes"] = notes
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
