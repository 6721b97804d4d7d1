"""Chat messages -> token ids, where only the chat template's own markup can be control tokens.

    from lib.chat_tokens import for_hf, for_llama
    chat = for_llama(backend.model, backend.formatter)   # a LlamaBackend's model and formatter
    chat = for_hf(tokenizer)                              # or a transformers tokenizer
    ids = chat.ids([{"role": "system", "content": instructions},
                    {"role": "user", "content": text_with_the_answers}])   # generation prompt included

Message content is data (questions, answers, references, a judge's filled-in instructions): a
`<|im_end|>` or `<start_of_turn>` in it is the text, never the token, so nothing an answer says
can close its turn or open another. Rendering the whole prompt to text and tokenizing it with
special tokens parsed (what llama.cpp's and transformers' chat paths do) would make it markup.

How: the template is rendered once with a unique placeholder per message content, which locates
each content in the rendered text (as the template shows it: trimmed when the template trims).
The template's parts are split at the vocabulary's control-token strings (tokens of their own);
every other stretch, template text and content together, is tokenized as plain text with control
tokens not parsed. For content without such strings the ids are those of the whole rendered text
tokenized with special tokens, token for token (tests/test_chat_tokens.py), so verdicts and
answers do not move.
Does not handle: templates that transform content other than by trimming it (the content is then
placed as given); llama.cpp tokens with lstrip/rstrip attributes (whitespace beside them is kept).
User-defined (non-control) tokens are matched in content too, as llama.cpp and transformers do in
plain text: they are ordinary text pieces (Gemma's runs of spaces, HTML tags), never turn markers.
"""
from __future__ import annotations

import re
import secrets
from typing import Callable

Messages = list[dict]


class ChatTokenizer:
    """`render(messages) -> text` (the template, generation prompt included); `special`: each
    string the tokenizer parses as a token of its own in a template (llama.cpp: control,
    user-defined and unknown tokens; transformers: added tokens) -> its id; `encode_text(text)
    -> ids` with control tokens not parsed; `control`: the ids that must never come from content
    (control tokens: turn markers, BOS/EOS)."""

    def __init__(self, render: Callable[[Messages], str], special: dict[str, int],
                 encode_text: Callable[[str], list[int]], control: set[int]):
        self.render, self.special, self.encode_text, self.control = render, special, encode_text, control
        self._special_re = _alternation(special)

    def parts(self, messages: Messages) -> list[tuple[str, bool]]:
        """The rendered prompt as (text, is_content) pieces, in order; joined, the rendered text."""
        nonce = f"{secrets.randbelow(10 ** 16):016d}"  # digits: no filter (upper, trim, ...) changes them
        marks = [{**m, "content": f"@@{nonce}:{i}@@"} for i, m in enumerate(messages)]
        skeleton = re.split(f"@@{nonce}:(\\d+)@@", self.render(marks))
        contents = [m["content"] for m in messages]
        shown = _as_shown(skeleton, contents, self.render(messages))
        parts = []
        for k, text in enumerate(skeleton):
            if k % 2 == 0:
                parts.append((text, False))
            else:
                parts.append((shown[k // 2] if shown else contents[int(text)], True))
        return [p for p in parts if p[0]]

    def ids(self, messages: Messages) -> list[int]:
        """Token ids of the rendered prompt: the template's control tokens as such, the rest plain."""
        ids: list[int] = []
        run: list[str] = []  # plain text not yet tokenized: template text and content alike

        def flush():
            if run:
                ids.extend(self.encode_text("".join(run)))
                run.clear()
        for text, is_content in self.parts(messages):
            if is_content or self._special_re is None:
                run.append(text)
                continue
            at = 0
            for match in self._special_re.finditer(text):
                run.append(text[at:match.start()])
                flush()
                ids.append(self.special[match.group(0)])
                at = match.end()
            run.append(text[at:])
        flush()
        return ids


def _alternation(strings) -> re.Pattern | None:
    """A regex matching any of `strings`, the longest first at each position (as llama.cpp does)."""
    names = sorted(strings, key=len, reverse=True)
    return re.compile("|".join(map(re.escape, names))) if names else None


def _as_shown(skeleton: list[str], contents: list[str], rendered: str) -> list[str] | None:
    """Each content occurrence as the rendered text shows it (as given, or trimmed by the
    template), found by walking `rendered` along the template's parts; None when it does not fit."""
    shown, at = [], 0
    if not rendered.startswith(skeleton[0]):
        return None
    at = len(skeleton[0])
    for k in range(1, len(skeleton), 2):
        content, after = contents[int(skeleton[k])], skeleton[k + 1]
        last = k + 2 >= len(skeleton)
        for form in dict.fromkeys((content, content.strip(), content.lstrip(), content.rstrip())):
            end = at + len(form)
            if rendered.startswith(form, at) and (rendered[end:] == after if last else rendered.startswith(after, end)):
                shown.append(form)
                at = end + len(after)
                break
        else:
            return None
    return shown if at == len(rendered) else None


def for_llama(model, formatter) -> ChatTokenizer:
    """A llama-cpp-python model (llama_cpp._internals.LlamaModel) and its Jinja2ChatFormatter."""
    import llama_cpp

    vocab = model.vocab
    parsed = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN
    special, control = {}, set()
    for token in range(llama_cpp.llama_vocab_n_tokens(vocab)):
        attr = llama_cpp.llama_vocab_get_attr(vocab, token)
        if attr & parsed:  # what llama.cpp parses with special=True (user-defined ones even without)
            text = llama_cpp.llama_vocab_get_text(vocab, token).decode("utf-8", errors="replace")
            if text and text not in special:
                special[text] = token
                if attr & llama_cpp.LLAMA_TOKEN_ATTR_CONTROL:
                    control.add(token)
    return ChatTokenizer(lambda messages: formatter(messages=messages).prompt, special,
                         lambda text: model.tokenize(text.encode("utf-8"), add_bos=False, special=False), control)


def for_hf(tokenizer) -> ChatTokenizer:
    """A transformers tokenizer with a chat template (its own, or one set on it)."""
    added = {i: t for i, t in tokenizer.added_tokens_decoder.items() if t.content}
    return ChatTokenizer(
        lambda messages: tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
        {t.content: i for i, t in added.items()},
        lambda text: list(tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]),
        {i for i, t in added.items() if t.special})
