"""Judge calls, the verdict cache, and the loop that asks a judge only what the cache lacks.

A *call* shows the judge one question and two answers, `first` and `second`. The cache,
OUT/judge/verdicts.jsonl, gets one line per call the moment its verdict arrives (flushed and
fsynced), keyed by the judge's identity and the exact texts shown: a new judge never reuses old
verdicts (nor a call whose texts hold chat markup or a placeholder one made before such data was
kept out of the judge's markup), a killed run loses at most the verdicts in flight, and a failed
call is not cached, so the next run tries it again. Two runs on one OUT never ask one judge at
once: the second waits for the judge's lock (OUT/judge/locks/, released by the system even after
kill -9), then asks only what the first left. A line torn by a crash or a full disk (even inside a multi-byte
character) is skipped on reading, and the next verdict starts on a line of its own.
`judge_calls` shows a progress bar (calls done, calls/s, ETA) and stops a judge that fails 5
calls in a row; a judge that fails every call it was asked raises JudgeError naming the cause.
A reply that came but did not parse (`"unparsed": true`: a weak judge, not a broken one) is no
verdict, counted in `failed` with its reason, but neither stops the judge nor makes it an error.
"""
from __future__ import annotations

import errno
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from judges.identity import mask, sha256_text
from lib.records import append_jsonl, exclusive_lock, read_jsonl_lines

# What could have been read as chat markup or a template placeholder (<|im_end|>, <eos>, [INST],
# {output_2}): calls with it are keyed apart (Call.key).
MARKUP_LIKE = re.compile(r"<[^<>\s]{1,64}>|\[/?INST\]|{(?:instruction|output_1|output_2)}")
MAX_CONSECUTIVE_FAILURES = 5  # then the judge is down: stop asking, the next run retries the rest


class JudgeError(RuntimeError):
    """The judge cannot be used at all (does not load, refuses the key, fails every call): worded for the user."""


@dataclass(frozen=True)
class Call:
    """One question shown to the judge with two answers, in this order."""
    instruction: str
    first: str
    second: str

    def key(self, judge_id: str) -> str:
        parts = [judge_id, self.instruction, self.first, self.second]
        if any(MARKUP_LIKE.search(text) for text in parts[1:]):
            # Judged before the data was kept out of the markup, such a call's verdict may have
            # been steered by its own texts: a key of its own, never the old one.
            parts.append("data-as-text")
        from judges.verdict_text import break_pairwise
        if any(break_pairwise(text) != text for text in parts[2:]):
            parts.append("markers-broken")  # judged before its section markers were broken: keyed apart
        return sha256_text(json.dumps(parts, ensure_ascii=False))[:32]


def valid_preference(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 1 <= value <= 2


class VerdictCache:
    """An append-only JSONL file of verdicts, one line per call (records.py's JSONL helpers)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.verdicts: dict[str, dict] = {}
        for record in read_jsonl_lines(self.path):  # torn lines (even mid-character) skipped
            try:
                if self.valid(record):
                    self.verdicts[record["key"]] = record
            except (KeyError, TypeError, AttributeError):
                continue

    def valid(self, record: dict) -> bool:
        return valid_preference(record["preference"])

    def get(self, key: str) -> dict | None:
        return self.verdicts.get(key)

    def add(self, record: dict) -> None:
        try:
            append_jsonl(self.path, record)  # after a torn last line, on a line of its own
        except OSError as err:
            if err.errno == errno.ENOSPC:
                raise JudgeError(f"disk full: cannot write {self.path}; free some space and run again "
                                 "(every verdict written so far is kept)") from None
            raise
        self.verdicts[record["key"]] = record


@dataclass
class CallStats:
    made: int = 0
    reused: int = 0
    failed: int = 0
    unparsed: int = 0  # of `failed`: the judge replied, but gave no verdict that parses
    out_of_scale: int = 0  # of `unparsed`: the reply's label was outside the call's scale ([[0]], [[11]])
    errors: list[str] = field(default_factory=list)  # distinct error messages, keys masked
    seconds: float = 0.0


def judge_calls(judge, calls: list[Call], out_dir: Path, progress=None, quiet: bool | None = None, *,
                cache: VerdictCache | None = None, ask=None, judge_id: str | None = None, estimate=None):
    """Verdicts for `calls` (a dict call -> cache record; failed calls are absent) and CallStats,
    asking the judge only for those not cached. `progress(message)` gets one-line summaries.
    `cache`, `ask` and `judge_id` serve other kinds of call (labels.py): their cache file, the
    judge's method that answers them, and the identity their keys use; `estimate(n)` the expected
    time of n calls in words, or None, added to the line that counts them.

    Another run on this OUT may be asking the same judge: unless every call is cached, wait for
    the judge's lock, then read the cache again and ask only what that run left, so two runs never
    pay for one call twice."""
    cache = cache or VerdictCache(Path(out_dir) / "judge" / "verdicts.jsonl")
    judge_id = judge_id or judge.judge_id
    if all(cache.get(call.key(judge_id)) for call in calls):
        return _judge_calls(judge, calls, out_dir, progress, quiet, cache, ask, judge_id, estimate)  # nothing to ask
    waiting = (f"waiting: another run (pid {{pid}}) is asking judge '{judge.name}' into {out_dir}; "
               "this one goes on when it is done, with its verdicts")
    with exclusive_lock(judge_lock_path(Path(out_dir), judge), waiting):
        fresh = type(cache)(cache.path)  # what the other run wrote meanwhile
        return _judge_calls(judge, calls, out_dir, progress, quiet, fresh, ask, judge_id, estimate)


def judge_lock_path(out_dir: Path, judge) -> Path:
    """OUT/judge/locks/NAME-HASH.lock: one per judge identity (the same weights under two
    names share their verdicts, so they share the lock too); the name is for people."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", judge.name)[-40:]
    return out_dir / "judge" / "locks" / f"{name}-{sha256_text(judge.judge_id)[:12]}.lock"


def _judge_calls(judge, calls: list[Call], out_dir: Path, progress, quiet, cache, ask, judge_id, estimate=None):
    """judge_calls, with the cache as read (under the judge's lock when there is work)."""
    from tqdm import tqdm

    stats = CallStats()
    verdicts: dict[Call, dict] = {}
    missing: list[Call] = []
    for call in dict.fromkeys(calls):
        record = cache.get(call.key(judge_id))
        if record is None:
            missing.append(call)
        else:
            verdicts[call] = record
            stats.reused += 1
    if not missing:
        return verdicts, stats
    say = progress or (lambda message: None)
    expected = estimate(len(missing)) if estimate else None
    say(f"judge '{judge.name}': {len(missing)} calls to make ({stats.reused} cached)" + (f"; {expected}" if expected else ""))
    started = time.monotonic()
    consecutive = 0
    if quiet is None:
        quiet = not sys.stderr.isatty() and not os.environ.get("LLMEVAL_PROGRESS")
    bar = tqdm(total=len(missing), desc=f"judge {judge.name}", unit="call", file=sys.stderr,
               disable=quiet, mininterval=1.0)
    answers = (ask or judge.judge)(missing)
    generated = 0
    try:
        for call, result in answers:
            bar.update(1)
            generated += result.pop("_generated", 0)  # a local judge's explanation tokens (not cached)
            if generated:
                elapsed = max(time.monotonic() - started, 1e-9)
                bar.set_postfix_str(f"{generated / elapsed:.1f} tok/s generated", refresh=False)
            if "error" in result:
                stats.failed += 1
                stats.unparsed += bool(result.get("unparsed"))
                stats.out_of_scale += bool(result.get("out_of_scale"))
                consecutive += not result.get("unparsed")  # it answered: not down
                error = mask(str(result["error"]), judge.secrets())
                if error not in stats.errors:
                    stats.errors.append(error)
                if consecutive >= MAX_CONSECUTIVE_FAILURES and stats.made == 0 or \
                        consecutive >= max(MAX_CONSECUTIVE_FAILURES, 2 * judge.concurrency):
                    say(f"judge '{judge.name}': {consecutive} failures in a row; stopping, run again to retry")
                    break
                continue
            consecutive = 0
            record = {"key": call.key(judge_id), "judge": judge.name, "judge_id": judge_id,
                      "protocol": getattr(call, "protocol", "") or judge.protocol, **result}
            cache.add(record)
            verdicts[call] = record
            stats.made += 1
    finally:
        answers.close()  # stops what is still queued (threads, a model's batch)
        bar.close()
    stats.failed = len(missing) - stats.made
    stats.seconds = time.monotonic() - started
    rate = stats.made / stats.seconds if stats.seconds else 0.0
    say(f"judge '{judge.name}': {stats.made} calls made ({rate:.2f}/s), {stats.failed} failed")
    if stats.made == 0 and stats.unparsed < stats.failed:
        raise JudgeError(f"judge '{judge.name}' failed every call ({stats.failed}): {stats.errors[0] if stats.errors else 'no verdict'}"
                         f" (the {stats.reused} verdicts already cached are kept)")
    return verdicts, stats
