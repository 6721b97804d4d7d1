"""Answers shown to a judge without its prompt's verdict syntax or section markers.

    shown = break_markup(answer, template_markers(template), numeric=True)
    if shown != answer: ...   # the answer carried such text (the board counts and warns)

An answer is data in the judge's prompt. If it could write the prompt's verdict (`[[10]]`,
`Rating: [[`, `[[A>B]]`, `[[A]]`, FastChat's backup `[8]`) or the template's section markers
(`[The End of Assistant's Answer]`, `<|The Start of Assistant A's Answer|>`, `### User:`,
`[待评价回答结束]`), it could close its own section and rate itself, or be quoted by the judge
and read as the judge's label. As chat_tokens.py keeps chat-template markers from becoming
control tokens, this keeps these from being read as the prompt's own: a zero-width space
(U+200B) goes inside each, after its first character (`[\\u200b[10]\\u200b]`,
`[\\u200bThe End of Assistant's Answer]`). The text reads the same; a regex or a judge that
copies it finds no label there. Markers are matched case-insensitively.
A deliberate difference from FastChat, Arena-Hard and alpaca_eval, which fill answers as given:
for answers without such text the prompts are theirs byte for byte.
Markers come from the template itself (template_markers): its bracketed lines and tags
(`[...]`, `<|...|>`) and its `#`-headed lines, none holding a placeholder.
Does not handle: paraphrased markers ("end of the answer" in other words), other languages'
spellings of a marker than the template's own.
"""
from __future__ import annotations

import re

ZWSP = "\u200b"
BRACKETS = re.compile(r"\[\[|\]\]")  # every double bracket: no `[[label]]` survives in an answer
SINGLE_NUMBER = re.compile(r"\[(?=\d+\.?\d*\])")  # FastChat's backup rating `[8]`, for numeric labels
MARKER = re.compile(r"\[[^\[\]{}\n]{2,80}\]|<\|[^|{}\n]{2,80}\|>")
HEADING = re.compile(r"^#{1,6} ?[^\s#{}][^{}\n]{0,59}$", re.M)  # "### User:", Prometheus' "###Response A:"
# alpaca_eval's pairwise template (weighted_alpaca_eval_gpt4_turbo): each output is quoted in triple
# quotes inside a JSON-like block with its identifier, under `##` headings; the verdict is one
# token, `m` or `M`, which no text can be kept from writing (and need not be: it is no syntax).
PAIRWISE_MARKERS = ('"""', '"model_identifier"', "## Instruction", "## Model Outputs", "## Task",
                    "## Best Model Identifier")


def template_markers(template: str, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The section markers of a prompt template: bracketed spans and tags without a placeholder
    (`[The Start of Assistant's Answer]`, `<|User Prompt|>`), heading lines (`### Assistant A:`),
    and `extra` ones a prompt module adds (markers it puts in a field's value itself)."""
    found = [m.group(0) for m in MARKER.finditer(template)] + [m.group(0).strip() for m in HEADING.finditer(template)]
    return tuple(dict.fromkeys(m for m in [*found, *extra] if len(m) > 2))


def break_markup(text: str, markers: tuple[str, ...] = (), numeric: bool = False, brackets: bool = True) -> str:
    """`text` with every marker and (`brackets`) every `[[` / `]]` broken by a zero-width space
    after its first character; with `numeric`, FastChat's backup rating `[N]` too."""
    if not text:
        return text
    for marker in sorted(markers, key=len, reverse=True):  # the longest first: one marker inside another
        if marker.lower() in text.lower():
            text = re.sub(re.escape(marker), lambda m: m.group(0)[0] + ZWSP + m.group(0)[1:], text, flags=re.I)
    if brackets:
        text = BRACKETS.sub(lambda m: m.group(0)[0] + ZWSP + m.group(0)[1], text)
    if numeric:
        text = SINGLE_NUMBER.sub("[" + ZWSP, text)
    return text


def break_pairwise(text: str) -> str:
    """An output as alpaca_eval's pairwise prompt shows it: its section markers broken."""
    return break_markup(text, PAIRWISE_MARKERS, brackets=False)


def board_warnings(n_marked: int, n_several: int, n_out_of_scale: int = 0) -> list[str]:
    """The board's lines for what this module and labels.py caught (empty when nothing was)."""
    lines = []
    if n_marked:
        lines.append(f"{n_marked} judge prompts had an answer holding the prompt's verdict syntax or section "
                     "markers ([[...]], [The End of Assistant's Answer], ...): shown to the judge with a zero-width "
                     "space inside each, so no answer can close its section or write its own verdict")
    if n_several:
        lines.append(f"{n_several} judge replies wrote different labels (e.g. [[2]] ... [[9]]): read as the protocol "
                     "reads them (FastChat: the first), flagged `several_labels` in the ratings file")
    if n_out_of_scale:
        lines.append(f"{n_out_of_scale} judge replies gave a label outside the scale ([[0]], [[11]], ...): failed, "
                     "never averaged in; make board asks them again")
    return lines
