"""Faults, through make with the embedded SmolLM2 model and the real llama.cpp judge: kill -9 of
`make infer` and `make board` at random points (at least 20 kills, each followed by a rerun), two
runs at once on one OUT (`make infer`, and `make board` with its judge), a disk that fills up, a
torn last line in every append-only file, and a cache line with the right key but no text answer.
After each, the next run recovers: every question answered exactly once, every verdict kept, every
JSON file whole, and only the missing work done.
"""
import json
import os
import random
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SMOLLM2 = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
pytestmark = pytest.mark.skipif(not SMOLLM2.is_file(), reason="run `make models` first")

MODELS_TOML = """
[defaults]
models = ["a", "b"]
reference = "a"
judge = "j"

[models.a]
path = "{m}"
max_tokens = 6
n_ctx = 512

[models.b]
path = "{m}"
max_tokens = 6
temperature = 1.0
seed = 3
n_ctx = 512

[models.j]
path = "{m}"
n_ctx = 1024
"""
FIRST = ["What is 1 + 1?", "为什么天空是蓝色的？", "Name a fruit."]


def setup(d: Path, questions=FIRST) -> None:
    (d / "models.toml").write_text(MODELS_TOML.format(m=SMOLLM2), encoding="utf-8")
    (d / "q.txt").write_text("".join(q + "\n" for q in questions), encoding="utf-8")


def make_cmd(d: Path, target: str, out: Path | None = None) -> list[str]:
    return ["make", "--no-print-directory", "-C", str(ROOT), target, f"OUT={out or d / 'out'}",
            f"MODELS_TOML={d / 'models.toml'}", f"QUESTIONS={d / 'q.txt'}"]


def jsonl(path: Path) -> tuple[list[dict], int]:
    """(whole records, torn or broken lines) of an append-only file."""
    records, torn = [], 0
    for raw in path.read_bytes().splitlines():
        try:
            records.append(json.loads(raw.decode("utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError):
            torn += 1
    return records, torn


def answers(out: Path, model: str) -> list[dict]:
    path = out / "cache" / f"{model}.jsonl"
    return jsonl(path)[0] if path.exists() else []


def verdicts(out: Path) -> list[dict]:
    paths = sorted((out / "judge").rglob("*.jsonl")) if (out / "judge").exists() else []
    return [r for p in paths for r in jsonl(p)[0]]


def group_gone(pgid: int, timeout: float = 30) -> None:
    """Wait until no process of the killed make's group is left (kill -9 leaves no orphan)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"processes of group {pgid} still alive after kill -9")


def check_complete(d: Path, questions: list[str]) -> None:
    """Every question answered exactly once per model, every verdict present, every JSON whole."""
    out = d / "out"
    for model in ("a", "b"):
        records = answers(out, model)
        keys = [(r["settings_id"], r["instruction"]) for r in records]
        assert len(keys) == len(set(keys)), f"{model}: a question was answered twice"
        assert sorted(r["instruction"] for r in records) == sorted(questions)
        final = json.loads((out / f"{model}.json").read_text(encoding="utf-8"))
        assert [r["instruction"] for r in final] == questions and not any(r.get("error") for r in final)
    for path in out.rglob("*.json"):
        json.loads(path.read_text(encoding="utf-8"))  # whole, never half-written
    keys = [v["key"] for v in verdicts(out) if "key" in v]
    assert len(keys) == len(set(keys)), "a judge call was made twice"


def test_kill_9_of_make_infer_and_board_twenty_times(tmp_path):
    rng = random.Random(12)
    questions = list(FIRST)
    setup(tmp_path, questions)
    estimate = {"infer": 4.0, "board": 12.0}  # seconds a run takes; grown as runs finish
    longest = dict(estimate)  # the longest finished run of each target
    kills, finished, iteration = 0, 0, 0
    while kills < 20:
        iteration += 1
        assert iteration <= 120, f"only {kills} runs could be killed"
        if iteration % 2 and len(questions) < 40:  # new work now and then, so runs have work to kill
            questions.append(f"Question {iteration}: what is {iteration} times 3?")
            setup(tmp_path, questions)
        target = "board" if iteration % 3 == 0 else "infer"
        before = {m: len(answers(tmp_path / "out", m)) for m in ("a", "b")}
        started = time.time()
        proc = subprocess.Popen(make_cmd(tmp_path, target), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:  # anywhere: loading, prompt, generation, writing, judging, the board's views
            proc.wait(timeout=rng.uniform(0.05, 1.0) * estimate[target])
            finished += 1
            estimate[target] = max(estimate[target], time.time() - started)
            longest[target] = max(longest[target], time.time() - started)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
            # a slow machine: later kills reach further into the run (bounded, or a quick machine
            # ends up waiting out every run and kills none)
            estimate[target] = min(estimate[target] * 1.25, 2 * longest[target])
        group_gone(proc.pid)
        # Nothing answered twice, even by runs killed while writing.
        for model in ("a", "b"):
            records = answers(tmp_path / "out", model)
            assert len(records) >= before[model]
            keys = {(r["settings_id"], r["instruction"]) for r in records}
            assert len(keys) == len(records), f"iteration {iteration}: {model} answered a question twice"
    # The rerun after the last kill: only what is missing, then the whole board.
    missing = {m: len(questions) - len(answers(tmp_path / "out", m)) for m in ("a", "b")}
    verdicts_before = len(verdicts(tmp_path / "out"))
    # A run killed after it wrote board.csv (written last) left a whole board, and make rightly
    # does nothing: without board.csv the board stage runs and says how many calls were missing.
    (tmp_path / "out" / "board.csv").unlink(missing_ok=True)
    result = subprocess.run(make_cmd(tmp_path, "board"), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    for model in ("a", "b"):
        done = re.search(rf"^{model}: (\d+) answered, (\d+) reused, 0 failed", result.stderr, re.M)
        if missing[model]:
            assert done and int(done[1]) == missing[model] and int(done[2]) == len(questions) - missing[model]
    made = re.search(r"judge calls: (\d+) made, (\d+) from cache, 0 failed", result.stderr)
    assert made, result.stderr
    assert int(made[1]) == len(verdicts(tmp_path / "out")) - verdicts_before  # only the missing calls
    check_complete(tmp_path, questions)
    print(f"{kills} kills, {finished} runs finished, {len(questions)} questions, "
          f"last rerun: {missing} answers and {made[1]} judge calls missing")


def test_two_runs_on_one_out_do_the_work_once(tmp_path):
    questions = FIRST + [f"Count to {i}." for i in range(2, 8)]
    setup(tmp_path, questions)
    runs = [subprocess.Popen(make_cmd(tmp_path, "infer"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    results = [(p.wait(timeout=900), *p.communicate()) for p in runs]
    assert all(rc == 0 for rc, _, _ in results), results
    for model in ("a", "b"):
        assert len(answers(tmp_path / "out", model)) == len(questions)  # each answered once in all
    stderr = "".join(err for _, _, err in results)
    answered = sum(int(n) for n in re.findall(r"^[ab]: (\d+) answered", stderr, re.M))
    assert answered == 2 * len(questions), stderr  # the second run reused what the first did
    check_complete(tmp_path, questions)


def test_two_boards_on_one_out_make_each_judge_call_once(tmp_path):
    """Two `make board` at once, the answers already made: the second waits for the judge's lock
    and reuses every verdict the first made (with a paid API judge, no call is paid twice)."""
    setup(tmp_path)
    for target in ("merge", "reference"):
        done = subprocess.run(make_cmd(tmp_path, target), capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr
    runs = [subprocess.Popen(make_cmd(tmp_path, "board"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    results = [(p.wait(timeout=900), *p.communicate()) for p in runs]
    assert all(rc == 0 for rc, _, _ in results), results
    keys = [v["key"] for v in verdicts(tmp_path / "out")]
    assert keys and len(keys) == len(set(keys)), results  # b against a, both orders: each call once
    stderr = "".join(err for _, _, err in results)
    made = [int(n) for n in re.findall(r"judge calls: (\d+) made", stderr)]
    assert sorted(made) == [0, len(keys)], stderr
    assert "waiting: another run" in stderr and "is asking judge 'j'" in stderr, stderr
    check_complete(tmp_path, FIRST)


def test_cache_line_without_a_text_answer_is_answered_again(tmp_path):
    """A cache line with the right key but no string `output` (edited by hand, another tool) is
    skipped like a torn one: that question is answered again and output.json stays valid."""
    setup(tmp_path)
    first = subprocess.run(make_cmd(tmp_path, "merge"), capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr
    out = tmp_path / "out"
    records = answers(out, "a")
    records[0].pop("output")
    records[1]["output"] = 42
    (out / "cache" / "a.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                                           encoding="utf-8")
    for made in ("a.json", "output.json"):  # as after new questions or settings: make runs `a` again
        (out / made).unlink()
    again = subprocess.run(make_cmd(tmp_path, "merge"), capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    assert re.search(r"^a: 2 answered, 1 reused, 0 failed", again.stderr, re.M), again.stderr
    merged = json.loads((out / "output.json").read_text(encoding="utf-8"))
    assert len(merged) == 6 and all(isinstance(r["output"], str) for r in merged)


TORN = "答".encode("utf-8")[:2]  # half a character: what a crash or a full disk can leave


def test_torn_last_line_in_every_append_only_file(tmp_path):
    setup(tmp_path)
    first = subprocess.run(make_cmd(tmp_path, "board"), capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr
    out = tmp_path / "out"
    appended = sorted(out.rglob("*.jsonl"))
    assert len(appended) >= 3  # the answers of a and b, the verdicts
    for path in appended:
        whole = jsonl(path)[0]
        with path.open("ab") as f:
            f.write(b'{"instruction": "' + TORN)
        assert jsonl(path)[1] == 1 and jsonl(path)[0] == whole
    counts = {p: len(jsonl(p)[0]) for p in appended}
    n_before = len(verdicts(out))  # every one of them reused: none lost to the torn line
    setup(tmp_path, FIRST + ["One more question."])
    again = subprocess.run(make_cmd(tmp_path, "board"), capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    assert re.search(r"^a: 1 answered, 3 reused, 0 failed", again.stderr, re.M), again.stderr
    made = re.search(r"judge calls: (\d+) made, (\d+) from cache, 0 failed", again.stderr)
    n_verdicts = len(verdicts(out))
    assert made and int(made[2]) == n_before and int(made[1]) == n_verdicts - n_before, again.stderr
    for path in appended:
        records, torn = jsonl(path)
        assert torn == 1 and len(records) >= counts[path]  # the torn line stays alone, nothing glued to it
    check_complete(tmp_path, FIRST + ["One more question."])


def test_disk_full_while_answering_loses_nothing(tmp_path):
    """The answer cache on /dev/full: the kernel's own ENOSPC on every append."""
    setup(tmp_path)
    out = tmp_path / "out"
    (out / "cache").mkdir(parents=True)
    (out / "cache" / "a.jsonl").symlink_to("/dev/full")
    full = subprocess.run(make_cmd(tmp_path, "infer"), capture_output=True, text=True, timeout=900)
    assert full.returncode != 0 and "Traceback" not in full.stderr
    line = [x for x in full.stderr.splitlines() if "No space left on device" in x]
    assert len(line) == 1 and "free some space" in line[0], full.stderr
    (out / "cache" / "a.jsonl").unlink()  # space again
    again = subprocess.run(make_cmd(tmp_path, "infer"), capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr
    assert re.search(r"^a: 3 answered, 0 reused, 0 failed", again.stderr, re.M), again.stderr
    check_complete(tmp_path, FIRST)


def test_disk_full_on_a_small_tmpfs(tmp_path):
    """OUT on a real 16 KiB tmpfs (a mount namespace of our own): it fills up while answering
    40 questions; moved to a bigger disk, the next run keeps every answer made before."""
    if not shutil.which("unshare") or subprocess.run(["unshare", "-rm", "true"]).returncode != 0:
        pytest.skip("this kernel does not allow user namespaces (unshare -rm)")
    questions = [f"Say the number {i}." for i in range(40)]
    setup(tmp_path, questions)
    (tmp_path / "out").mkdir()
    cmd = " ".join(f"'{w}'" for w in make_cmd(tmp_path, "infer"))
    script = (f"mount -t tmpfs -o size=16k tmpfs {tmp_path}/out && {{ {cmd}; echo rc=$?; }}; "
              f"cp -a {tmp_path}/out/. {tmp_path}/saved/")
    (tmp_path / "saved").mkdir()
    full = subprocess.run(["unshare", "-rm", "bash", "-c", script], capture_output=True, text=True, timeout=900)
    assert "rc=0" not in full.stdout and "Traceback" not in full.stderr, full.stdout + full.stderr
    assert "No space left on device" in full.stderr, full.stderr
    kept = {m: len(answers(tmp_path / "saved", m)) for m in ("a", "b")}
    assert kept["a"] > 0 and kept["b"] < 40  # answers were on disk before it filled, not all of them
    rerun = subprocess.run(make_cmd(tmp_path, "infer", out=tmp_path / "saved"), capture_output=True, text=True,
                           timeout=900)
    assert rerun.returncode == 0, rerun.stderr
    for model in ("a", "b"):
        records = answers(tmp_path / "saved", model)
        assert len(records) == len(questions) and len({r["instruction"] for r in records}) == len(questions)
        if kept[model] < 40:  # only what was missing
            line = rf"^{model}: {40 - kept[model]} answered, {kept[model]} reused, 0 failed"
            assert re.search(line, rerun.stderr, re.M), rerun.stderr
