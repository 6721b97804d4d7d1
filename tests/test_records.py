"""Question loading (every accepted shape, and bad ones), atomic writes, the answer cache, merging."""
import json

import pytest

from lib.records import (AnswerCache, InputError, answer_record, load_questions, merge_outputs,
                     write_json_atomic)


def test_text_questions_bom_crlf_blank_lines(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_bytes("\ufeff为什么天空是蓝色的？\r\n\r\n  How do I make pizza?  \r\n\n".encode("utf-8"))
    assert load_questions(path) == [
        {"instruction": "为什么天空是蓝色的？", "input": "", "dataset": "tiny"},
        {"instruction": "How do I make pizza?", "input": "", "dataset": "tiny"},
    ]


def test_duplicates_are_dropped(tmp_path):
    path = tmp_path / "q.txt"
    path.write_text("a\nb\na\n", encoding="utf-8")
    assert [q["instruction"] for q in load_questions(path)] == ["a", "b"]


def test_json_and_jsonl_records(tmp_path):
    records = [{"instruction": "Translate", "input": "bonjour", "dataset": "mt"},
               {"instruction": "Sum 2+2", "output": "ignored", "generator": "x"}]
    as_json = tmp_path / "set.json"
    as_json.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    as_jsonl = tmp_path / "set.jsonl"
    as_jsonl.write_text("\n".join(json.dumps(r) for r in records) + "\n\n", encoding="utf-8")
    expected = [{"instruction": "Translate", "input": "bonjour", "dataset": "mt"},
                {"instruction": "Sum 2+2", "input": "", "dataset": "set"}]
    assert load_questions(as_json) == expected
    assert load_questions(as_jsonl) == expected


@pytest.mark.parametrize("name, content, message", [
    ("q.txt", b"\n \n", "no questions found"),
    ("q.txt", "caf\u00e9".encode("latin-1"), "not UTF-8 text"),
    ("q.json", b"[{\"instruction\": ", "not valid JSON"),
    ("q.json", b"{\"instruction\": \"x\"}", "expected a JSON list"),
    ("q.json", b"[{\"input\": \"x\"}]", "record 1 has no 'instruction'"),
    ("q.json", b"[\"just text\"]", "record 1 is not an object"),
    ("q.json", b"[{\"instruction\": \"x\", \"input\": 3}]", "'input' must be text"),
    ("q.jsonl", b"{\"instruction\": \"a\"}\n{oops\n", "q.jsonl:2: not valid JSON"),
])
def test_bad_questions(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        load_questions(path)


def test_missing_questions_file(tmp_path):
    with pytest.raises(InputError, match="questions file not found"):
        load_questions(tmp_path / "none.txt")


def test_write_json_atomic_leaves_no_temp_files(tmp_path):
    target = tmp_path / "sub" / "out.json"
    write_json_atomic(target, [{"output": "天空"}])
    write_json_atomic(target, [{"output": "second"}])
    assert json.loads(target.read_text(encoding="utf-8")) == [{"output": "second"}]
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]


def test_write_json_atomic_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "out.json"
    write_json_atomic(target, [1])
    with pytest.raises(TypeError):
        write_json_atomic(target, [object()])  # not serializable: fails midway
    assert json.loads(target.read_text()) == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_answer_cache_survives_a_torn_line(tmp_path):
    question = {"instruction": "q1", "input": "", "dataset": "d"}
    cache = AnswerCache(tmp_path / "m.jsonl")
    cache.add(answer_record(question, "m", "s1", output="a1", tokens=2, seconds=0.5))
    with (tmp_path / "m.jsonl").open("a") as f:
        f.write('{"instruction": "q2", "outp')  # a crash mid-write
    reloaded = AnswerCache(tmp_path / "m.jsonl")
    assert reloaded.get("s1", question)["output"] == "a1"
    assert reloaded.get("s2", question) is None  # other settings: not reused
    assert reloaded.get("s1", {"instruction": "q2", "input": ""}) is None


def test_answer_record_has_alpaca_fields():
    record = answer_record({"instruction": "q", "dataset": "d"}, "m", "s", output="o", tokens=3, seconds=1.23456)
    assert {k: record[k] for k in ("instruction", "input", "output", "generator", "dataset", "datasplit")} == {
        "instruction": "q", "input": "", "output": "o", "generator": "m", "dataset": "d", "datasplit": "eval"}
    assert (record["tokens"], record["seconds"], "error" in record) == (3, 1.235, False)


def test_merge_leaves_out_failed_answers(tmp_path):
    q1, q2 = {"instruction": "q1"}, {"instruction": "q2"}
    write_json_atomic(tmp_path / "a.json", [answer_record(q1, "a", "s", output="x"),
                                            answer_record(q2, "a", "s", error="too long")])
    write_json_atomic(tmp_path / "b.json", [answer_record(q1, "b", "s", output="y")])
    merged = merge_outputs([tmp_path / "a.json", tmp_path / "b.json"])
    assert [(r["generator"], r["instruction"]) for r in merged] == [("a", "q1"), ("b", "q1")]
    with pytest.raises(InputError, match="not found"):
        merge_outputs([tmp_path / "c.json"])
