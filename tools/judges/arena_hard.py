"""Arena-Hard-Auto v0.1's judge: its prompt, its five labels, and how a reply is read.

    config = load_judge_config(path)                 # config/judge_config.yaml, fetched with the set
    messages = game_messages(config, call)           # [{role, content}]: system prompt, filled template
    label, again = parse_label(text, config)          # gen_judgment.get_score, as Arena-Hard reads it

The judge config is Arena-Hard's own file at its pinned commit (lmarena/arena-hard-auto@0489bf3,
fetched by `make data` with the set; never shipped here): the system prompt, the one-turn user
template ({question_1}, {answer_1}, {answer_2}), the label regex `\\[\\[([AB<>=]+)\\]\\]`, two
attempts, temperature 0 and 4,096 tokens. A game is a Call: `first` is assistant A, `second`
assistant B; game 1 shows the baseline as A, game 2 as B (tools/board/arena.py scores them).

Reading a reply, as gen_judgment.py does: every match of the regex, empty ones dropped; none ->
no label, and the judge is asked once more ("continue your judgment and finish by outputting a
final verdict label", its conversation kept) and the two replies are read together; one distinct
label -> that label; several distinct labels -> the game is dropped (no second attempt). Single
brackets (`[A>B]`) are no label. A verdict record keeps the label, the judgment text, the
attempts and, for a dropped game, why; its `preference` (alpaca_eval's scale, 1 = A better) is
A>>B 1, A>B 1.25, A=B 1.5, B>A 1.75, B>>A 2 (a dropped game 1.5: a tie for the board's pairwise
columns, nothing for the Arena-Hard score).
Local judges read the label from the logits of the five labels instead (tools/judges/
arena_local.py). Does not handle: multi-turn templates (v0.1 has one turn), reference answers.
"""
from __future__ import annotations

import re
from pathlib import Path

from records import InputError

LABELS = ("A>>B", "A>B", "A=B", "B>A", "B>>A")
PREFERENCE = dict(zip(LABELS, (1.0, 1.25, 1.5, 1.75, 2.0)))
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


def game_messages(config: dict, call) -> list[dict]:
    """The judge's conversation for one game, as gen_judgment.py builds it: the system prompt,
    then the template filled with str.format (the answers' own braces are left alone)."""
    user = config["prompt_template"][0].format(question_1=call.instruction, answer_1=call.first, answer_2=call.second)
    return [{"role": "system", "content": config["system_prompt"]}, {"role": "user", "content": user}]


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
    """The cached record of one game."""
    record = {"label": label, "judgment": judgment, "attempts": attempts, "soft": False}
    if label in PREFERENCE:
        record["preference"] = PREFERENCE[label]
    else:  # Arena-Hard drops the game: weight 0 in its battles
        record["preference"] = 1.5
        record["dropped"] = ("several different labels" if conflict else
                             f"no label after {attempts} attempts" if label is None else f"unknown label {label!r}")
    return record


def config_id(config: dict) -> dict:
    """What of the config makes a verdict: for the judge's identity (cache key)."""
    from judges.identity import sha256_text

    shown = "\n".join([config["system_prompt"], *config["prompt_template"], config["regex_pattern"],
                       str(config["number_of_judgment_attempts"]), str(config.get("temperature", 0)),
                       str(config.get("max_tokens", 4096))])
    return {"protocol": PROTOCOL, "prompt_sha256": sha256_text(shown)}


def api_arena_judge(spec, config: dict):
    """An OpenAI-compatible judge (models.toml backend = "openai") asked Arena-Hard's way: the text
    reply at the config's temperature and max_tokens, read by parse_label, a second attempt."""
    from judges.api_judge import ApiJudge

    class ArenaApiJudge(ApiJudge):
        def __init__(self):
            super().__init__(spec)
            self.identity = {**{k: v for k, v in self.identity.items() if k not in ("protocol", "prompt_sha256")},
                             **config_id(config)}

        def _ask(self, call, template):
            import time

            from backends.openai_backend import FatalAPIError

            openai, started = self.backend.openai, time.perf_counter()

            def chat(messages):
                reply = self.backend.client.chat.completions.create(
                    model=self.api_model, messages=messages, temperature=config.get("temperature", 0),
                    max_tokens=int(config.get("max_tokens", 4096)))
                return reply.choices[0].message.content or ""

            try:
                result = ask(chat, game_messages(config, call), config)
            except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as err:
                raise FatalAPIError(f"the judge refused model '{self.api_model}': {self.backend._clean(err)}") from None
            except openai.APIConnectionError as err:
                return {"error": f"cannot reach the judge: {self.backend._clean(err)}"}
            except openai.APIError as err:
                return {"error": f"{type(err).__name__}: {self.backend._clean(err)}"}
            result["seconds"] = round(time.perf_counter() - started, 3)
            return result

    return ArenaApiJudge()
