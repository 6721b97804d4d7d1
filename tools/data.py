"""Fetch a benchmark set once, checked by sha256, and write it normalized for every later stage.

    python tools/data.py mt_bench --out out [--limit 4] [--models 3]
    python tools/data.py --cost out/sets/mt_bench.jsonl --models 3    # what a board of it costs

Each file of the set (data/benchmarks.toml) is fetched from
https://raw.githubusercontent.com/REPO/COMMIT/PATH, or from LLMEVAL_DATA_URL in its place (a
mirror, http://127.0.0.1:PORT, or file:///folder laid out as REPO/COMMIT/PATH), into the cache
LLMEVAL_DATA_DIR (default ~/.cache/llmeval-data) at REPO/COMMIT/PATH: written to a temporary name,
sha256 checked, then renamed, so the cache never holds a partial or wrong file. Then it writes
OUT/sets/NAME[-limitN].jsonl (normalized questions, benchformats.py), .set.json (the sidecar the
judges and the board read, benchsets.set_info) and .reference.json (alpaca_eval reference_outputs,
for sets that bring their reference). Outputs are rewritten only when their content changes, so
make does not re-answer anything after a `make data` that found nothing new.

Offline (HF_HUB_OFFLINE=1) only file:// sources are read. Not handled: archives, Hub datasets.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from lib import benchformats
from lib.benchsets import BENCHMARKS_TOML, SEED, load_sets, questions_name, set_info, stratified_sample
from lib.records import InputError, load_questions, write_atomic

DEFAULT_BASE = "https://raw.githubusercontent.com"


def cache_dir() -> Path:
    return Path(os.environ.get("LLMEVAL_DATA_DIR") or Path.home() / ".cache" / "llmeval-data").expanduser()


def source_url(entry: dict) -> str:
    if entry.get("url"):
        return entry["url"]
    base = os.environ.get("LLMEVAL_DATA_URL") or DEFAULT_BASE
    return f"{base.rstrip('/')}/{entry['repo']}/{entry['commit']}/{entry['path']}"


def cache_path(entry: dict) -> Path:
    if entry.get("repo"):
        return cache_dir() / entry["repo"] / entry["commit"] / entry["path"]
    return cache_dir() / "url" / entry["sha256"][:16] / Path(entry["url"].split("?")[0]).name


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _progress(total: int | None, label: str):
    """A tqdm bar on a terminal (or with LLMEVAL_PROGRESS=1); None otherwise or without tqdm."""
    if not (sys.stderr.isatty() or os.environ.get("LLMEVAL_PROGRESS")):
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="B", unit_scale=True, desc=label, file=sys.stderr, leave=False)


def fetch(name: str, entry: dict) -> Path:
    """The cached, sha256-checked file of one entry: fetched when missing. InputError otherwise."""
    dest, url, want = cache_path(entry), source_url(entry), entry["sha256"]
    shown = entry.get("path") or url
    by_hand = f"or put the file by hand at {dest} (from {url})"
    if dest.is_file():
        if sha256_file(dest) == want:
            return dest
        dest.unlink()  # a partial or edited file is never used
        print(f"note: {name}: {dest} had the wrong sha256; removed, fetching it again", file=sys.stderr)
    if offline() and not url.startswith("file:"):
        raise InputError(f"{name}: {shown} is not in the cache and HF_HUB_OFFLINE=1 forbids the network; "
                         f"run `make data QUESTIONS={name}` online, {by_hand}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            length = response.headers.get("Content-Length")
            bar = _progress(int(length) if length else None, f"{name}: {Path(shown).name}")
            for block in iter(lambda: response.read(1 << 16), b""):
                digest.update(block)
                out.write(block)
                if bar is not None:
                    bar.update(len(block))
            if bar is not None:
                bar.close()
        got = digest.hexdigest()
        if got != want:
            raise InputError(f"{name}: {url} has sha256 {got[:16]}..., not the pinned {want[:16]}... "
                             f"(data/benchmarks.toml); not used. A mirror with another version? Fix "
                             f"LLMEVAL_DATA_URL, or unset it to fetch from the pinned source")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except InputError:
        raise
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        raise InputError(f"{name}: cannot fetch {url} ({reason}); run `make data QUESTIONS={name}` when "
                         f"it can be reached, set LLMEVAL_DATA_URL to a mirror, {by_hand}") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest


def write_if_changed(path: Path, data: bytes) -> None:
    """Atomic, and untouched (same mtime) when the content is the same: make re-runs nothing."""
    if path.is_file() and path.read_bytes() == data:
        return
    write_atomic(path, data)


def jsonl_bytes(records: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def json_bytes(data: object) -> bytes:
    return (json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def build(name: str, limit: int | None, out: Path, toml_path: Path = BENCHMARKS_TOML) -> Path:
    """Fetch the set's files and write its normalized questions, sidecar and reference."""
    sets = load_sets(toml_path)
    if name not in sets:
        raise InputError(f"no set named {name!r} in {toml_path} (sets: {', '.join(sets)})")
    table = sets[name]
    started = time.monotonic()
    files = {entry["role"]: fetch(name, entry) for entry in table["files"]}
    questions, reference = benchformats.normalize(table, files)
    if not questions:
        raise InputError(f"{name}: no questions in its files (check `select` in {toml_path})")
    n_total = len(questions)
    if limit:
        questions = stratified_sample(questions, limit, SEED)
        keep = {(q["instruction"], q["input"]) for q in questions}
        reference = reference and [r for r in reference if (r["instruction"], r["input"]) in keep]
    stem = questions_name(name, limit)
    folder = out / "sets"
    notes = list(table.get("notes", []))
    if limit and limit < n_total:
        notes.append(f"a sample: {len(questions)} of the {n_total} questions (LIMIT={limit}, seed {SEED}, "
                     f"stratified by dataset); scores on it are not comparable with the full set's")
    reference_path = folder / f"{stem}.reference.json"
    sidecar = {
        "name": name, "title": table.get("title", name), "protocol": table["protocol"],
        "grader": table.get("grader"), "files": {role: str(path) for role, path in files.items()},
        "reference_outputs": str(reference_path.resolve()) if reference else None,
        "reference_name": table.get("reference_name"), "published": table.get("published"),
        "limit": limit, "seed": SEED, "n_total": n_total, "n_questions": len(questions), "notes": notes,
    }
    if reference:
        write_if_changed(reference_path, json_bytes(reference))
    write_if_changed(folder / f"{stem}.set.json", json_bytes(sidecar))
    questions_path = folder / f"{stem}.jsonl"
    write_if_changed(questions_path, jsonl_bytes(questions))
    turns = sum(len(q["turns"]) for q in questions)
    sample = f", a sample of {n_total}" if limit and limit < n_total else ""
    ref = f", reference {table['reference_name']}" if reference else ""
    print(f"{name}: {len(questions)} questions ({turns} turns){sample}{ref} -> {questions_path} "
          f"({time.monotonic() - started:.1f} s)", file=sys.stderr)
    return questions_path


def estimate_tokens(text: str) -> float:
    """Rough: ~4 characters a token for ASCII text, ~1.5 for other scripts (Chinese)."""
    ascii_chars = sum(1 for c in text if ord(c) < 128)
    return ascii_chars / 4 + (len(text) - ascii_chars) / 1.5


# Rough judge prompt sizes (template and instructions) and replies, in tokens, per protocol.
JUDGE_TOKENS = {"pairwise": (450, 1), "grade": (250, 200), "arena_hard": (500, 800)}


def _tokens(n: float) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k" if n >= 1e3 else f"{n:.0f}"


def cost_lines(questions_path: Path, n_models: int, n_judges: int = 1, versus: bool = False) -> list[str]:
    """What a board of these questions costs: answers, judge calls (per judge), rough API tokens;
    versus: every two models also compared (VERSUS=all; graded: MT-Bench's pairwise mode)."""
    questions = load_questions(questions_path)
    info = set_info(questions_path) or {}
    protocol = info.get("protocol", "pairwise")
    name = info.get("name", questions_path.name)
    turns = sum(len(q.get("turns") or [q["instruction"]]) for q in questions)
    n = len(questions)
    answers = turns * n_models
    reference = []
    if info.get("reference_outputs") and Path(info["reference_outputs"]).is_file():
        reference = json.loads(Path(info["reference_outputs"]).read_text(encoding="utf-8"))
    per_answer = (sum(estimate_tokens(r["output"]) for r in reference) / len(reference)) if reference else 300
    prompt, reply = JUDGE_TOKENS[protocol]
    question_tokens = sum(estimate_tokens(" ".join(q.get("turns") or [q["instruction"]])) for q in questions) / n
    if protocol == "grade":
        calls = turns * n_models
        what = f"{turns} turns x {n_models} models = {calls} gradings (one per answer)"
        shown = per_answer * (1.5 if turns > n else 1) + question_tokens
    else:
        games = "2 games (baseline as A, then B)" if protocol == "arena_hard" else "2 orders"
        calls = n * 2 * n_models
        what = f"{n} questions x {games} x {n_models} models = {calls}"
        shown = 2 * per_answer + question_tokens
    pairs = n_models * (n_models - 1) // 2 if versus else 0
    if pairs:  # model against model: two games per pair (both orders), per question or, graded, per turn
        extra = (turns if protocol == "grade" else n) * pairs * 2
        what += (f"; VERSUS=all: {turns if protocol == 'grade' else n} {'turns' if protocol == 'grade' else 'questions'}"
                 f" x {pairs} model pairs x 2 games = {extra} more")
        calls += extra
    judges = f" per judge, {calls * n_judges} for {n_judges} judges" if n_judges > 1 else ""
    lines = [f"{name}: {n} questions ({turns} turns) x {n_models} models = {answers} answers to make; "
             f"judge calls: {what}{judges}",
             f"{name}: an API judge reads about {_tokens(calls * (prompt + shown))} tokens and writes about "
             f"{_tokens(calls * reply)} (rough: ~{prompt + shown:.0f} in, ~{reply} out per call); a local judge costs no tokens"]
    if info.get("limit"):
        lines.append(f"{name}: LIMIT={info['limit']} of {info['n_total']} questions; the full set costs "
                     f"{info['n_total'] / n:.0f}x as much")
    return lines


def _limit(text: str | None) -> int | None:
    if text in (None, ""):
        return None
    if not text.isdigit() or int(text) < 1:
        raise InputError(f"LIMIT={text}: must be a whole number of questions, 1 or more")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", help="a set declared in data/benchmarks.toml")
    parser.add_argument("--limit", help="a stratified, fixed-seed sample of this many questions")
    parser.add_argument("--out", type=Path, default=Path("out"))
    parser.add_argument("--models", type=int, default=0, help="how many models will answer (for the cost line)")
    parser.add_argument("--judges", type=int, default=1, help="how many judges (for the cost line)")
    parser.add_argument("--cost", type=Path, metavar="QUESTIONS", help="print what a board of QUESTIONS costs")
    parser.add_argument("--versus", default="", help="all: the cost line counts model-against-model games too")
    parser.add_argument("--benchmarks", type=Path, default=BENCHMARKS_TOML, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        if args.cost:
            lines = cost_lines(args.cost, max(args.models, 1), max(args.judges, 1), args.versus == "all")
        elif not args.name:
            raise InputError("name a set: tools/data.py NAME (make data QUESTIONS=NAME); sets: "
                             + ", ".join(load_sets(args.benchmarks)))
        else:
            path = build(args.name, _limit(args.limit), args.out, args.benchmarks)
            lines = cost_lines(path, args.models) if args.models else []
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
