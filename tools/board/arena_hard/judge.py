"""Arena-Hard-Auto v0.1's judge: its prompt, its five labels, and how a reply is read.

    config = load_judge_config(path)                 # config/judge_config.yaml, fetched with the set
    call = labelled_call(config, game, fast, max_tokens)   # judges/labels.py: [{role, content}], five labels
    label, again = parse_label(text, config)          # gen_judgment.get_score, as Arena-Hard reads it

The judge config is Arena-Hard's own file at its pinned commit (lmarena/arena-hard-auto@0489bf3,
fetched by `make data` with the set; never shipped here): the system prompt, the one-turn user
template ({question_1}, {answer_1}, {answer_2}), the label regex `\\[\\[([AB<>=]+)\\]\\]`, two
attempts, temperature 0 and 4,096 tokens. A game is a Call: `first` is assistant A, `second`
assistant B; game 1 shows the baseline as A, game 2 as B (tools/board/arena_hard/score.py scores them).

API judges (ArenaApiJudge) read a reply as gen_judgment.py does: every match of the regex,
empty ones dropped; none -> no label, and the judge is asked once more ("continue your judgment
and finish by outputting a final verdict label", its conversation kept) and the two replies are
read together; one distinct label -> that label; several distinct labels -> the game is dropped
(no second attempt). Single brackets (`[A>B]`) are no label. The record (judges/labels.py's
fields) keeps the label ("" when none), the judgment text, the attempts and, for a dropped game,
why (`dropped`): it is cached like any other, and counted. Local judges write their explanation
(up to `max_tokens`), then the label is read from the logits of the five labels at the label
position (judges/local_labels.py): they never drop a game; `fast` reads it with no explanation.
`preference(record)` is alpaca_eval's scale for the board's pairwise columns (1 = A better):
A>>B 1, A>B 1.25, A=B 1.5, B>A 1.75, B>>A 2, a dropped game 1.5.
Does not handle: multi-turn templates (v0.1 has one turn), reference answers, alpaca_eval's
annotators as Arena-Hard judges.
"""
from __future__ import annotations

import re
from pathlib import Path

from judges.api_judge import ApiJudge
from lib.records import InputError

LABELS = ("A>>B", "A>B", "A=B", "B>A", "B>>A")
PREFERENCE = dict(zip(LABELS, (1.0, 1.25, 1.5, 1.75, 2.0)))
CUE = "\n\nMy final verdict is: [["  # where a local judge wrote no "[[" (the system prompt's example)
CONTINUE = "continue your judgment and finish by outputting a final verdict label"  # gen_judgment.py
PROTOCOL = "arena-hard-v0.1"
NEEDED = ("system_prompt", "prompt_template", "regex_pattern", "number_of_judgment_attempts")


def load_judge_config(path: Path | str) -> dict:
    """Arena-Hard's judge_config.yaml, checked; one-line InputError when it is not usable."""
    import yaml

    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise InputError(f"Arena-Hard judge config {path} cannot be read ({err}); run make data QUESTIONS=arena_hard") from None
    missing = [k for k in NEEDED if not isinstance(config, dict) or k not in config]
    if missing:
        raise InputError(f"{path} is not Arena-Hard's judge_config.yaml (no {', '.join(missing)}); run make data again")
    templates = config["prompt_template"]
    if not isinstance(templates, list) or len(templates) != 1 or "{answer_2}" not in templates[0]:
        raise InputError(f"{path}: expected one user template with {{question_1}}, {{answer_1}} and {{answer_2}}")
    config["pattern"] = re.compile(config["regex_pattern"])
    return config


def parse_label(judgment: str, config: dict) -> tuple[str | None, bool]:
    """(label or None, ask again?): get_score with pairwise=True."""
    matches = [m for m in config["pattern"].findall(judgment) if m != ""]
    if not matches:
        return None, True
    if len(set(matches)) == 1:
        return matches[0].strip("\n"), False
    return None, False


def ask(chat, messages: list[dict], config: dict) -> dict:
    """One game through a text judge: `chat(messages) -> reply text`, asked again once when the
    reply has no label (number_of_judgment_attempts), the replies read together."""
    conversation = list(messages)
    judgment, label, attempts, again = "", None, 0, True
    for _ in range(int(config["number_of_judgment_attempts"])):
        reply = chat(conversation)
        attempts += 1
        judgment += "\n" + reply
        label, again = parse_label(judgment, config)
        conversation.append({"role": "assistant", "content": reply})
        if not again:
            break
        conversation.append({"role": "user", "content": CONTINUE})
    return verdict(label, judgment, attempts, conflict=label is None and not again)


def verdict(label: str | None, judgment: str, attempts: int, conflict: bool = False) -> dict:
    """The cached record of one game read from text (labels.py's fields; label "" when none)."""
    record = {"label": label or "", "written": label, "judgment": judgment, "attempts": attempts, "source": "text"}
    if label not in LABELS:  # Arena-Hard drops the game: no battle
        record["dropped"] = ("several different labels" if conflict else
                             f"no label after {attempts} attempts" if label is None else f"unknown label {label!r}")
    return record


def preference(record: dict) -> float:
    """alpaca_eval's scale for one game (1 = assistant A better, 2 = B); a dropped game 1.5."""
    return PREFERENCE.get(record.get("label") or "", 1.5)


def labelled_call(config: dict, call, fast: bool, max_tokens: int):
    """The game as a labelled call (judges/labels.py): the five labels after `[[`, the answers
    (never the question) cut to fit a local judge's context."""
    from judges.labels import LabelledCall

    return LabelledCall(system=config["system_prompt"], template=config["prompt_template"][0],
                        fields=(("question_1", call.instruction), ("answer_1", call.first), ("answer_2", call.second)),
                        options=LABELS, protocol=PROTOCOL, cue=CUE, cut=("answer_1", "answer_2"),
                        max_tokens=max_tokens, fast=fast, parser=lambda text: parse_label(text, config)[0])


def arena_judge(judge, config: dict):
    """The judge that plays the games: a local judge as it is (labels from logits); an API judge
    asked Arena-Hard's way (text, a second attempt, conflicting labels drop the game)."""
    if isinstance(judge, ApiJudge):
        judge.close()  # the same endpoint and key, asked Arena-Hard's way by a client of its own
        return ArenaApiJudge(judge.spec, config)
    if not hasattr(judge, "label"):
        raise InputError(f"judge '{judge.name}' (an alpaca_eval annotator) cannot play Arena-Hard's games: use a "
                         "models.toml judge, or PROTOCOL=pairwise")
    return judge


class ArenaApiJudge(ApiJudge):
    """An OpenAI-compatible judge asked as gen_judgment.py asks: the text reply at the config's
    temperature, read by parse_label, asked once more when it has no label."""

    def __init__(self, spec, config: dict):
        super().__init__(spec)
        self.config = config
        self.identity = {**self.identity, "arena": "text, two attempts"}

    def _ask_label(self, call) -> dict:
        import time

        started = time.perf_counter()
        failed: list[dict] = []

        def chat(messages):
            reply = self._create(messages=messages, temperature=self.config.get("temperature", 0),
                                 max_tokens=call.max_tokens)
            if "error" not in reply:
                try:
                    return reply["choices"][0]["message"]["content"] or ""
                except (KeyError, IndexError, TypeError) as err:
                    reply = {"error": f"unexpected reply ({err}): {str(reply)[:200]}"}
            failed.append(reply)
            raise _Failed

        try:
            result = ask(chat, call.messages(), self.config)
        except _Failed:  # no verdict: not cached, the next run asks again
            return failed[0]
        result["seconds"] = round(time.perf_counter() - started, 3)
        return result


class _Failed(Exception):
    """A request of a game failed (its error kept by the caller)."""
