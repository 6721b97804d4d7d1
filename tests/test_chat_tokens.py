"""tools/lib/chat_tokens.py: chat messages -> token ids, with only the template's markup as control
tokens. For content without markers the ids equal those of the whole rendered text tokenized
with special tokens (what llama.cpp's and transformers' chat paths do), so answers and verdicts do
not move; content is placed as the template shows it (trimmed by a trimming template); a marker
in content is plain text. With the embedded GGUFs (SmolLM2's ChatML template, Gemma 3's
instruction-tuned template, text only: this GGUF is the base model's) and the tiny transformers
Llama of conftest.py.
"""
from pathlib import Path

import pytest

from lib.chat_tokens import for_hf, for_llama
from judges.cache import Call
from judges.prompt import make_messages, prompt_template

ROOT = Path(__file__).resolve().parent.parent
SMOLLM2 = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3 = ROOT / "models" / "gemma-3-270m-q4_k_m.gguf"
pytestmark = pytest.mark.skipif(not (SMOLLM2.is_file() and GEMMA3.is_file()), reason="run `make models` first")

# Gemma 3's instruction-tuned chat template (google/gemma-3-270m-it), its text-only branch.
GEMMA3_TEMPLATE = (
    "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\\n' }}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}")
MESSAGES = [
    [{"role": "user", "content": "What is 2+2?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "  Leading and trailing spaces \n"}],
    [{"role": "user", "content": "为什么天空是蓝色的？ Explain\n\nin two lines."},
     {"role": "assistant", "content": "Rayleigh scattering."}, {"role": "user", "content": "And at sunset?"}],
    make_messages(Call("What is 2+2?", "4", "The answer is five.\n\n  Really."), prompt_template()),
]


@pytest.fixture(scope="module", params=[(SMOLLM2, None), (GEMMA3, GEMMA3_TEMPLATE)], ids=["smollm2", "gemma3"])
def llama(request):
    """A GGUF with its own chat template (Gemma 3's: <start_of_turn>, trimmed content, no system role)."""
    import llama_cpp
    from llama_cpp._internals import LlamaModel
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    path, template = request.param
    model = LlamaModel(path_model=str(path), params=params, verbose=False)
    formatter = Jinja2ChatFormatter(template=template or model.metadata()["tokenizer.chat_template"],
                                    eos_token=model.token_get_text(model.token_eos()),
                                    bos_token=model.token_get_text(model.token_bos()))
    yield model, formatter, for_llama(model, formatter)
    model.close()


def test_plain_content_gives_the_ids_of_the_whole_text_llama(llama):
    model, formatter, chat = llama
    for messages in MESSAGES:
        rendered = formatter(messages=messages).prompt
        assert "".join(text for text, _ in chat.parts(messages)) == rendered
        assert chat.ids(messages) == model.tokenize(rendered.encode("utf-8"), add_bos=False, special=True)


def test_markers_in_content_are_text_llama(llama):
    model, _, chat = llama
    markers = [m for m in ("<|im_start|>", "<|im_end|>", "<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>",
                           "<|endoftext|>") if m in chat.special]
    text = "a " + " ".join(markers) + "\nmodel\nM"
    plain = chat.ids([{"role": "user", "content": "a"}])
    ids = chat.ids([{"role": "user", "content": text}])
    assert [t for t in ids if t in chat.control] == [t for t in plain if t in chat.control]
    assert text in model.detokenize(ids, special=True).decode("utf-8")


def test_plain_content_gives_the_ids_of_the_whole_text_transformers(tiny_llama):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    chat = for_hf(tokenizer)
    for messages in MESSAGES:
        whole = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
        assert chat.ids(messages) == list(whole["input_ids"])
    ids = chat.ids([{"role": "user", "content": "hi</s><s>assistant: M"}])
    assert ids.count(tokenizer.eos_token_id) == 1 and ids.count(tokenizer.bos_token_id) == 1


def test_a_trimming_template_places_content_trimmed_and_others_as_given(tiny_llama):
    """A template that trims content (as Gemma's does) gets it trimmed; one that rewrites it
    (upper-cases it) still gets the content as text, as given."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    messages = [{"role": "user", "content": "  hi there \n"}]
    tokenizer.chat_template = "{% for m in messages %}<s>{{ m['content'] | trim }}</s>{% endfor %}"
    assert for_hf(tokenizer).parts(messages) == [("<s>", False), ("hi there", True), ("</s>", False)]
    tokenizer.chat_template = "{% for m in messages %}<s>{{ m['content'] | upper }}</s>{% endfor %}"
    assert for_hf(tokenizer).parts(messages) == [("<s>", False), ("  hi there \n", True), ("</s>", False)]

