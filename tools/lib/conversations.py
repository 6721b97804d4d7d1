"""Conversations of several turns (MT-Bench's question.jsonl): what infer.py asks, and what it writes.

A question with `turns` is a conversation: turn 1 is asked, then turn 2 with the model's own turn-1
answer in the history, and so on. `Conversation` holds one question's answers so far; each turn
is one question dict for a backend ("instruction" = the turn, "history" = [[user, assistant], ...]
of the earlier turns). A question without `turns` is a conversation of one turn, whose record in
OUT/NAME.json is exactly the single answer's (no new fields).

Per-question generation settings (a set's per-category temperature or max_tokens) apply where the
model's models.toml entry does not set that key; the settings id of the answer covers what was
used, and the record says it ("generation", and "generation_from_model" for the keys the model's
own entry decided).

FastChat's model-answer format (OUT/fastchat/model_answer/NAME.jsonl, one line per question whose
every turn is answered) is written for questions that carry a question_id, so FastChat's own
scripts (gen_judgment.py, show_result.py) read our answers unchanged.
Not handled: FastChat's several choices per question (num_choices > 1).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

from lib.messages import GENERATION_KEYS, user_message
from lib.records import answer_record, write_atomic


@dataclasses.dataclass
class Conversation:
    question: dict
    settings_id: str
    given: dict                     # generation settings passed to the backend (what the model does not set)
    from_model: list[str]           # generation keys the question declares but the model sets itself
    used: dict                      # the question's declared generation keys -> the values answered with
    answers: list[dict] = dataclasses.field(default_factory=list)  # one answer record per turn done
    error: str | None = None        # "turn k: why"; later turns are not asked

    @property
    def n_turns(self) -> int:
        return len(self.question.get("turns") or [None])

    @property
    def waiting(self) -> bool:
        """Has a next turn to ask (no turn failed, not every turn answered)."""
        return self.error is None and len(self.answers) < self.n_turns

    def next_turn(self) -> dict:
        """The question dict of the next turn, with the earlier turns and their answers."""
        k, question = len(self.answers), self.question
        if k == 0:
            turn = {key: question[key] for key in ("instruction", "input", "dataset") if key in question}
        else:
            turn = {"instruction": question["turns"][k], "input": "", "dataset": question.get("dataset", "")}
            users = [user_message(question)] + question["turns"][1:k]
            turn["history"] = [[user, answer["output"]] for user, answer in zip(users, self.answers)]
        if self.given:
            turn["generation"] = dict(self.given)
        return turn

    def answer_record(self, turn: dict, generator: str, result: dict) -> dict:
        """The cache record of one turn's answer (or failure)."""
        record = answer_record(turn, generator, self.settings_id, **result)
        if turn.get("history"):
            record.update(turn=len(turn["history"]) + 1, history=turn["history"])
        return record

    def record(self, generator: str) -> dict:
        """This question's record in OUT/NAME.json."""
        if "turns" not in self.question and "generation" not in self.question:
            if self.answers:  # a plain question: its answer's record, as it always was
                return {**self.answers[0], "generator": generator}
            return answer_record(self.question, generator, self.settings_id,
                                 error=self.error or "not answered yet")
        first = self.answers[0] if self.answers else {}
        record = answer_record(self.question, generator, self.settings_id, output=first.get("output", ""),
                               tokens=first.get("tokens", 0), seconds=first.get("seconds", 0.0))
        if len(self.question.get("turns") or []) > 1:  # one turn: alpaca_eval's fields (its tools read them)
            outputs = [a["output"] for a in self.answers]
            record.update(question_id=self.question.get("question_id"), category=self.question.get("category"),
                          turns=self.question["turns"],
                          turn_outputs=outputs + [""] * (self.n_turns - len(outputs)))
        if "generation" in self.question:
            record["generation"] = self.used
            if self.from_model:
                record["generation_from_model"] = self.from_model
        if self.error or len(self.answers) < self.n_turns:
            record["error"] = self.error or "not answered yet"
        return record


def start_conversation(spec, question: dict, settings_id_of=lambda spec: spec.settings_id()) -> Conversation:
    """A conversation not yet asked, with the generation settings that apply to it; its settings
    id is `settings_id_of` the model's spec with those settings in it."""
    declared = question.get("generation") or {}
    given = {k: v for k, v in declared.items() if k in GENERATION_KEYS and k not in spec.raw}
    from_model = [k for k in declared if k in spec.raw]
    settings_id = settings_id_of(dataclasses.replace(spec, **given) if given else spec)
    used = {k: given.get(k, getattr(spec, k)) for k in declared}
    return Conversation(question, settings_id, given, from_model, used)


def fastchat_answers(conversations: list[Conversation], model_id: str) -> list[dict]:
    """FastChat's model-answer records for the conversations answered in full (question_id order
    kept as in the questions file). The answer id is derived from the answers, so it is stable."""
    lines = []
    for c in conversations:
        if "question_id" not in c.question or c.waiting or c.error:
            continue
        turns = [a["output"] for a in c.answers]
        digest = hashlib.sha256(json.dumps([model_id, c.question["question_id"], turns],
                                           ensure_ascii=False).encode("utf-8")).hexdigest()
        lines.append({"question_id": c.question["question_id"], "answer_id": digest[:22], "model_id": model_id,
                      "choices": [{"index": 0, "turns": turns}], "tstamp": time.time()})
    return lines


def write_fastchat(out_dir: Path, model_id: str, conversations: list[Conversation]) -> Path | None:
    """OUT/fastchat/model_answer/NAME.jsonl, atomically; rewritten only when an answer changed
    (tstamp aside). None when no question has a question_id (a plain questions file)."""
    if not any("question_id" in c.question for c in conversations):
        return None
    path = out_dir / "fastchat" / "model_answer" / f"{model_id}.jsonl"
    lines = fastchat_answers(conversations, model_id)
    try:
        old = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError):
        old = None
    if old is not None and [{**x, "tstamp": 0} for x in old] == [{**x, "tstamp": 0} for x in lines]:
        return path
    write_atomic(path, "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines).encode("utf-8"))
    return path
