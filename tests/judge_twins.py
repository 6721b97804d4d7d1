"""Random-weight GGUF twins of the open judges' architectures, with their chat templates and special tokens.

The open judges of models.toml (tools/judges/formats/) cannot be fetched here, so their formats are
tested on twins: the architecture llama.cpp runs for each, its tokenizer kind and special tokens,
its real chat template, with tiny random weights and a vocabulary trained on the spot.
- llama31: Llama-3.1-8B-Instruct's shape (Skywork-Critic-Llama-3.1-8B and Selene-1-Mini are
  fine-tunes of it): arch llama with grouped-query attention, a byte-level BPE (`gpt2` model,
  pre-tokenizer `llama-bpe`) with <|begin_of_text|>, <|start_header_id|>, <|end_header_id|>,
  <|eot_id|>, <|eom_id|>, <|python_tag|> as control tokens, and Llama-3.1-8B-Instruct's own
  template (twin_templates/llama31.jinja; the fine-tunes' cards use the base model's).
- mistral: Mistral-7B-Instruct-v0.2's (Prometheus-7B-v2.0 is a merge of it): arch llama, a
  SentencePiece BPE with byte fallback, <s> / </s> (its [INST] markers are plain text, as in
  Mistral's vocabulary); no template in the GGUF (models.toml's prometheus_7b brings its own).
- qwen25: Qwen2.5-7B-Instruct's: arch qwen2 (q/k/v biases), a byte-level BPE (pre-tokenizer
  `qwen2`) with <|endoftext|>, <|im_start|>, <|im_end|>, and its ChatML template
  (twin_templates/qwen25.jinja, default system message included).
The GGUF is written with the gguf package, as llama.cpp's converter writes one (its own
convert_hf_to_gguf.py refuses a tokenizer it does not know by hash: a trained one never is).
Vocabularies are trained on tests/twins.py's corpus plus the formats' prompts, so the markers
("[[", "**Result:**", "[RESULT]") are real multi-character tokens as in the real vocabularies.
What a twin cannot show: anything about the real judges' verdicts.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import twins

TEMPLATES = Path(__file__).resolve().parent / "twin_templates"
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                   "<|eot_id|>", "<|eom_id|>", "<|python_tag|>"]
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Real shapes divided down: layers, hidden, heads, kv heads, feed-forward (kv heads kept in ratio).
SHAPE = dict(n_layer=2, n_embd=64, n_head=4, n_head_kv=2, n_ff=128)


def corpus() -> list[str]:
    from judges.formats import prometheus, selene, skywork

    texts = [skywork.PROMPT, selene.PROMPT, prometheus.PROMPT, prometheus.ABSOLUTE_PROMPT,
             prometheus.REL_SYSTEM_PROMPT, prometheus.HELPFULNESS_RUBRIC,
             "**Reasoning:** Response A is better. **Result:** A", "Feedback: B is wrong. [RESULT] A",
             "[[A]] [[B]] [RESULT] B **Result:** B"]
    return twins.CORPUS + texts * 4


def _byte_bpe(vocab_size: int) -> tuple[list[str], list[str]]:
    """(tokens by id, merges 'a b') of a byte-level BPE trained on corpus()."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus(), trainer)
    model = json.loads(tok.to_str())["model"]
    vocab = sorted(model["vocab"].items(), key=lambda kv: kv[1])
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return [t for t, _ in vocab], merges


def _weights(writer, arch: str, n_vocab: int, seed: int, bias: bool = False) -> None:
    rng = np.random.default_rng(seed)
    h, kv = SHAPE["n_embd"], SHAPE["n_embd"] // SHAPE["n_head"] * SHAPE["n_head_kv"]

    def rand(*shape):  # unit scale: a tiny twin at a trained model's 0.02 says one token forever
        return rng.standard_normal(shape).astype(np.float32) * 0.5
    writer.add_tensor("token_embd.weight", rand(n_vocab, h))
    for i in range(SHAPE["n_layer"]):
        p = f"blk.{i}."
        writer.add_tensor(p + "attn_norm.weight", np.ones(h, np.float32))
        writer.add_tensor(p + "attn_q.weight", rand(h, h))
        writer.add_tensor(p + "attn_k.weight", rand(kv, h))
        writer.add_tensor(p + "attn_v.weight", rand(kv, h))
        if bias:
            writer.add_tensor(p + "attn_q.bias", rand(h))
            writer.add_tensor(p + "attn_k.bias", rand(kv))
            writer.add_tensor(p + "attn_v.bias", rand(kv))
        writer.add_tensor(p + "attn_output.weight", rand(h, h))
        writer.add_tensor(p + "ffn_norm.weight", np.ones(h, np.float32))
        writer.add_tensor(p + "ffn_gate.weight", rand(SHAPE["n_ff"], h))
        writer.add_tensor(p + "ffn_up.weight", rand(SHAPE["n_ff"], h))
        writer.add_tensor(p + "ffn_down.weight", rand(h, SHAPE["n_ff"]))
    writer.add_tensor("output_norm.weight", np.ones(h, np.float32))
    writer.add_tensor("output.weight", rand(n_vocab, h))


def _header(writer, name: str, n_ctx: int, rope_base: float) -> None:
    import gguf

    writer.add_name(name)
    writer.add_context_length(n_ctx)
    writer.add_embedding_length(SHAPE["n_embd"])
    writer.add_block_count(SHAPE["n_layer"])
    writer.add_feed_forward_length(SHAPE["n_ff"])
    writer.add_head_count(SHAPE["n_head"])
    writer.add_head_count_kv(SHAPE["n_head_kv"])
    writer.add_rope_freq_base(rope_base)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)


def _write(writer, path: Path) -> Path:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def build_llama31(path: Path, seed: int = 0) -> Path:
    """A Llama-3.1-8B-Instruct-shaped GGUF (Skywork-Critic, Selene-1-Mini)."""
    import gguf

    tokens, merges = _byte_bpe(900)
    n_normal = len(tokens)
    tokens += LLAMA3_SPECIALS
    writer = gguf.GGUFWriter(str(path), "llama")
    _header(writer, "llama31-twin", 131072, 500000.0)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("llama-bpe")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.NORMAL] * n_normal + [gguf.TokenType.CONTROL] * len(LLAMA3_SPECIALS))
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokens.index("<|begin_of_text|>"))
    writer.add_eos_token_id(tokens.index("<|eot_id|>"))
    writer.add_add_bos_token(True)
    writer.add_chat_template((TEMPLATES / "llama31.jinja").read_text(encoding="utf-8"))
    _weights(writer, "llama", len(tokens), seed)
    return _write(writer, path)


def build_qwen25(path: Path, seed: int = 0) -> Path:
    """A Qwen2.5-7B-Instruct-shaped GGUF (arch qwen2, ChatML)."""
    import gguf

    tokens, merges = _byte_bpe(900)
    n_normal = len(tokens)
    tokens += QWEN_SPECIALS
    writer = gguf.GGUFWriter(str(path), "qwen2")
    _header(writer, "qwen25-twin", 32768, 1000000.0)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.NORMAL] * n_normal + [gguf.TokenType.CONTROL] * len(QWEN_SPECIALS))
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokens.index("<|endoftext|>"))
    writer.add_eos_token_id(tokens.index("<|im_end|>"))
    writer.add_add_bos_token(False)  # Qwen2.5 adds no BOS
    writer.add_chat_template((TEMPLATES / "qwen25.jinja").read_text(encoding="utf-8"))
    _weights(writer, "qwen2", len(tokens), seed, bias=True)
    return _write(writer, path)


def build_mistral(path: Path, work: Path, seed: int = 0) -> Path:
    """A Mistral-7B-Instruct-v0.2-shaped GGUF (Prometheus-7B-v2.0): SentencePiece, <s> and </s>."""
    import gguf
    import sentencepiece as spm

    work.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()), model_prefix=str(work / "mistral"), vocab_size=900, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, hard_vocab_limit=False, unk_id=0, bos_id=1, eos_id=2,
        pad_id=-1, minloglevel=2, num_threads=1)
    sp = spm.SentencePieceProcessor(model_file=str(work / "mistral.model"))
    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        types.append(gguf.TokenType.UNKNOWN if sp.is_unknown(i) else gguf.TokenType.CONTROL if sp.is_control(i)
                     else gguf.TokenType.BYTE if sp.is_byte(i) else gguf.TokenType.NORMAL)
    writer = gguf.GGUFWriter(str(path), "llama")
    _header(writer, "mistral-twin", 32768, 1000000.0)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    _weights(writer, "llama", len(tokens), seed)
    return _write(writer, path)


def build_all(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return {"llama31": build_llama31(folder / "llama31-twin.gguf"),
            "mistral": build_mistral(folder / "mistral-twin.gguf", folder / "sp"),
            "qwen25": build_qwen25(folder / "qwen25-twin.gguf")}
