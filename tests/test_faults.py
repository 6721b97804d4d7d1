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
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, SMOLLM2, needs_smollm2, slow
pytestmark = needs_smollm2

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


@slow
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


@slow
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


@slow
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


@slow
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


@slow
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


@slow
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


@slow
def test_disk_full_on_a_small_tmpfs(tmp_path):
    """OUT on a real 24 KiB tmpfs, in a mount namespace of our own (room for the marker, lock, hash and
    settings files, then some answers): it fills up while answering 40 questions; moved to a bigger
    disk, the next run keeps every answer made before."""
    if not shutil.which("unshare") or subprocess.run(["unshare", "-rm", "true"]).returncode != 0:
        pytest.skip("this kernel does not allow user namespaces (unshare -rm)")
    questions = [f"Say the number {i}." for i in range(40)]
    setup(tmp_path, questions)
    (tmp_path / "out").mkdir()
    cmd = " ".join(f"'{w}'" for w in make_cmd(tmp_path, "infer"))
    script = (f"mount -t tmpfs -o size=24k tmpfs {tmp_path}/out && {{ {cmd}; echo rc=$?; }}; "
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


@slow
def test_new_weights_of_the_same_size_are_answered_again(tmp_path):
    """Issue 16, item 4: the answers' weights identity is the content hash, not name and size."""
    weights = tmp_path / "w.gguf"
    shutil.copyfile(SMOLLM2, weights)
    (tmp_path / "models.toml").write_text(f'[defaults]\nmodels = ["w"]\n\n[models.w]\npath = "{weights}"\n'
                                          'max_tokens = 4\nn_ctx = 512\n', encoding="utf-8")
    (tmp_path / "q.txt").write_text("Name a fruit.\n", encoding="utf-8")
    first = subprocess.run(make_cmd(tmp_path, "infer"), capture_output=True, text=True, timeout=900)
    assert re.search(r"^w: 1 answered, 0 reused, 0 failed", first.stderr, re.M), first.stderr
    same = subprocess.run(make_cmd(tmp_path, "infer"), capture_output=True, text=True, timeout=900)
    assert same.returncode == 0 and "answered" not in same.stderr, same.stderr  # nothing changed: nothing done
    size = weights.stat().st_size
    with weights.open("r+b") as f:  # new tensors, same size: the last MiB of tensor data zeroed
        f.seek(size - (1 << 20))
        f.write(bytes(1 << 20))
    assert weights.stat().st_size == size
    again = subprocess.run(make_cmd(tmp_path, "infer"), capture_output=True, text=True, timeout=900)
    assert re.search(r"^w: 1 answered, 0 reused, 0 failed", again.stderr, re.M), again.stderr
    ids = {r["settings_id"] for r in answers(tmp_path / "out", "w")}
    assert len(ids) == 2  # one answer per weights


def test_a_trickling_api_ends_in_that_questions_error_at_the_deadline(tmp_path):
    """Issue 16, item 7: a server that sends a byte every 2 s (the body, or the headers too) holds
    a request no longer than the model's `timeout`: that question's error, the others answered."""
    from faulty_api_server import faulty_api_server

    with faulty_api_server() as server:
        (tmp_path / "models.toml").write_text(
            f'[defaults]\nmodels = ["api"]\n\n[models.api]\nbackend = "openai"\nbase_url = "{server.url}"\n'
            'api_model = "m"\ntimeout = 3\nconcurrency = 3\n', encoding="utf-8")
        (tmp_path / "q.txt").write_text("FAULT:trickle\nFAULT:trickle_head\nplain\n", encoding="utf-8")
        result = subprocess.run(make_cmd(tmp_path, "infer"), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert re.search(r"^api: 1 answered, 0 reused, 2 failed", result.stderr, re.M), result.stderr
    got = {r["instruction"]: r for r in json.loads((tmp_path / "out" / "api.json").read_text(encoding="utf-8"))}
    for question in ("FAULT:trickle", "FAULT:trickle_head"):
        assert got[question]["error"] == f"{server.url}/chat/completions: no whole reply within the 3 s deadline " \
                                         "(`timeout` in models.toml)"
    assert got["plain"]["output"] == "answer to plain"


def drill_toml(d: Path, timeout: float) -> None:
    (d / "models.toml").write_text(f'[defaults]\nmodels = ["drill"]\n\n[models.drill]\nbackend = "custom"\n'
                                   f'function = "fault_drill"\ntimeout = {timeout}\n', encoding="utf-8")


def test_a_hung_custom_function_fails_at_its_timeout(tmp_path):
    """Issue 16, item 12: a custom function that never returns fails its questions at `timeout`;
    the questions after it are not asked (it is stuck), and the run ends with NAME.json written."""
    drill_toml(tmp_path, 2)
    (tmp_path / "q.txt").write_text("HANG\n", encoding="utf-8")
    result = subprocess.run(make_cmd(tmp_path, "infer"), capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert re.search(r"^drill: 0 answered, 0 reused, 1 failed", result.stderr, re.M), result.stderr
    record, = json.loads((tmp_path / "out" / "drill.json").read_text(encoding="utf-8"))
    assert record["error"] == "custom function 'fault_drill' did not return within 2 s (`timeout` in models.toml)"


def test_a_real_ctrl_c_still_stops_a_custom_model(tmp_path):
    """Issue 16, item 12: the function's own KeyboardInterrupt is its question's error
    (test_bad_input), but a real Ctrl-C (SIGINT to the terminal's process group) stops the run."""
    drill_toml(tmp_path, 600)
    (tmp_path / "q.txt").write_text("plain\nHANG\n", encoding="utf-8")
    # A terminal's Ctrl-C reaches processes that handle SIGINT; a test run started in the background
    # by a shell without job control inherits it ignored, so the child gets the terminal's default.
    run = subprocess.Popen(make_cmd(tmp_path, "infer"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lock = tmp_path / "out" / "cache" / "drill.lock"
    deadline = time.time() + 120
    while not (lock.is_file() and lock.read_text().strip()) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(2)  # inside the function, which hangs
    os.killpg(run.pid, signal.SIGINT)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode != 0 and "Traceback" not in stderr, stderr
    assert "interrupted: answers so far are kept" in stderr, stderr
    group_gone(run.pid)


def test_a_malformed_reply_to_the_judge_is_that_calls_error(tmp_path):
    """Issue 16, item 5, for judges: an HTML page in reply to an API judge is that call's error
    (retried first, then one line naming the endpoint); the board is written without the pair."""
    from faulty_api_server import faulty_api_server

    def record(instruction: str, output: str, generator: str) -> dict:
        return {"instruction": instruction, "input": "", "output": output, "generator": generator,
                "dataset": "d", "datasplit": "eval"}

    (tmp_path / "o.json").write_text(json.dumps([record("q1", "FAULT:html here", "m"), record("q2", "fine", "m")]))
    (tmp_path / "r.json").write_text(json.dumps([record("q1", "ref one", "ref"), record("q2", "ref two", "ref")]))
    with faulty_api_server() as server:
        (tmp_path / "models.toml").write_text(f'[models.japi]\nbackend = "openai"\nbase_url = "{server.url}"\n'
                                              'api_model = "j"\n', encoding="utf-8")
        result = subprocess.run([sys.executable, str(ROOT / "tools" / "board"), "--outputs", str(tmp_path / "o.json"),
                                 "--reference", str(tmp_path / "r.json"), "--judge", "japi", "--out",
                                 str(tmp_path / "out"), "--models-toml", str(tmp_path / "models.toml")],
                                capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert server.requests["html"] == 2 * 7  # both orders, each tried 7 times
    assert f"{server.url}/chat/completions answered 200 with a body that is not JSON on 7 tries" in result.stderr
    board = (tmp_path / "out" / "board.csv").read_text(encoding="utf-8").splitlines()
    header, row = board[0].split(","), board[1].split(",")
    assert row[header.index("n_failed")] == "1" and row[header.index("n_total")] == "1"


BOARD_FILES = ("board.csv", "board.md", "board.png", "board.html", "board_pairs.json", "manifest.json")


def board_cmd(outputs: Path, reference: Path, out: Path, d: Path) -> str:
    return " ".join(f"'{w}'" for w in [sys.executable, str(ROOT / "tools" / "board"), "--outputs", str(outputs),
                                       "--reference", str(reference), "--judge", "j", "--out", str(out),
                                       "--models-toml", str(d / "models.toml")])


@slow
def test_disk_full_while_writing_the_board_leaves_the_last_board_whole(tmp_path):
    """Issue 16, item 18: a board rewrite on a disk that fills up names the file it could not
    write, and replaces none of the board's files: they all stay those of the last board (the
    views are written whole first, then renamed together)."""
    if not shutil.which("unshare") or subprocess.run(["unshare", "-rm", "true"]).returncode != 0:
        pytest.skip("this kernel does not allow user namespaces (unshare -rm)")
    setup(tmp_path)
    full = subprocess.run(make_cmd(tmp_path, "board"), capture_output=True, text=True, timeout=900)
    assert full.returncode == 0, full.stderr
    out, last = tmp_path / "out", tmp_path / "last"
    # The last board: one question only, every verdict from the full board's cache.
    shutil.copytree(out / "judge", last / "judge")
    for name in ("output", "reference"):
        records = json.loads((out / f"{name}.json").read_text(encoding="utf-8"))
        (last / f"{name}1.json").write_text(json.dumps([r for r in records if r["instruction"] == FIRST[0]]))
    small = subprocess.run(board_cmd(last / "output1.json", last / "reference1.json", last, tmp_path), shell=True,
                           capture_output=True, text=True, timeout=900)
    assert small.returncode == 0, small.stderr
    before = {name: (last / name).read_bytes() for name in BOARD_FILES}
    # Room for the biggest new file, but not for all of them at once.
    room = max((out / name).stat().st_size for name in BOARD_FILES) // 2
    disk, saved = tmp_path / "disk", tmp_path / "saved"
    disk.mkdir()
    saved.mkdir()
    script = (f"mount -t tmpfs -o size=64m tmpfs {disk} && cp -a {last}/. {disk}/ && "
              f"used=$(df -B1 --output=used {disk} | tail -1) && mount -o remount,size=$((used + {room})) {disk} && "
              f"{{ {board_cmd(out / 'output.json', out / 'reference.json', disk, tmp_path)}; echo rc=$?; }}; "
              f"cp -a {disk}/. {saved}/")
    result = subprocess.run(["unshare", "-rm", "bash", "-c", script], capture_output=True, text=True, timeout=900)
    assert "rc=0" not in result.stdout and "Traceback" not in result.stderr, result.stdout + result.stderr
    line = [x for x in result.stderr.splitlines() if "disk full" in x]
    assert len(line) == 1 and re.search(rf"disk full writing {disk}/(board|manifest)", line[0]), result.stderr
    for name in BOARD_FILES:  # all of the last board, none of the new one
        assert (saved / name).read_bytes() == before[name], name
    assert not list(saved.glob(".*.tmp")), list(saved.glob(".*"))  # no temporary file left behind
