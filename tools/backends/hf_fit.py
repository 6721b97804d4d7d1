"""Memory of a Hugging Face model run by the transformers backend: weights, KV cache, sequences N.

`HFShape.from_folder(folder)` reads config.json and the weights' index (model.safetensors.index.json
or pytorch_model.bin.index.json: `total_size`; a single weights file: its size, or its safetensors
header) without loading anything; `HFShape.from_config(config)` estimates a model not on disk from its
config.json alone (PUBLISHED holds the declared ones). From the shape:
- `weight_bytes(dtype_bytes, quant)`: the weights in memory, in fp16/bf16 (2), fp32 (4), or with
  a quant: the layers' linear weights at 8 bits (int8: ChatGLM's own quantize(8) or bitsandbytes
  LLM.int8) or 4 bits (int4: ChatGLM's quantize(4); nf4: bitsandbytes, plus one fp32 scale per 64
  weights), with one fp16 scale per output row; embeddings, norms, biases and the output matrix stay
  in 16 bits (neither quantizes them);
- `kv_bytes_per_token()`: K + V of every layer in 16 bits (chatglm: hidden size per layer each;
  Llama-like: kv heads x head size);
- `seq_bytes(prompt, new)`: one sequence's KV cache at prompt + new tokens, plus its share of the
  prompt's forward pass (the logits of every prompt position in fp32, and the attention scores of
  one layer), what a batch holds at its peak;
- `fit_n(shape, free, ...)`: N, the sequences that memory holds beside the weights.

Families: chatglm (THUDM/chatglm-6b's config keys) and the Llama-like configs (num_hidden_layers,
intermediate_size, num_key_value_heads: Llama, Qwen2, Mistral, Baichuan-7B). Estimates, not
measurements: the allocator's slack, CUDA's context (RESERVE) and kernels' workspaces are guesses.
Does not handle: mixture-of-experts configs, several GPUs, quantized KV caches.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

GIB = 1 << 30
RESERVE = 768 << 20  # CUDA context, cuBLAS workspace, allocator slack: kept free
MAX_PARALLEL = 32    # automatic N never exceeds this (as the llama.cpp engine)
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}
QUANT_BITS = {"int8": 8, "int4": 4, "nf4": 4}

# Declared transformers models not on disk: THUDM/chatglm-6b's config.json at the pinned revision
# (942945df, the same file as ../shared/twins/chatglm-6b/config.json; tests compare the two).
PUBLISHED = {
    "THUDM/chatglm-6b": {"model_type": "chatglm", "hidden_size": 4096, "inner_hidden_size": 16384,
                         "num_layers": 28, "num_attention_heads": 32, "vocab_size": 130528,
                         "max_sequence_length": 2048, "torch_dtype": "float16"},
}


class ShapeError(ValueError):
    """A config.json this module cannot size, worded for the user."""


@dataclass(frozen=True)
class HFShape:
    name: str
    family: str           # "chatglm" or "llama"
    n_layer: int
    hidden: int
    n_head: int
    kv_dim: int           # K (or V) width per token per layer: kv heads x head size
    vocab: int
    linear_params: int    # the layers' linear weights: what int8/int4/nf4 quantize
    linear_rows: int      # their output rows, all layers (one scale each when quantized)
    params: int           # every weight as loaded (tied embeddings counted once)
    source: str           # "index", "file" or "config"

    def weight_bytes(self, dtype_bytes: int = 2, quant: str | None = None) -> int:
        bits = QUANT_BITS.get(quant or "")
        if not bits:
            return self.params * dtype_bytes
        linear = self.linear_params * bits // 8 + self.linear_rows * 2  # + one fp16 scale per output row
        if quant == "nf4":
            linear += self.linear_params // 64 * 4  # bitsandbytes' fp32 absmax per 64-weight block
        return linear + (self.params - self.linear_params) * 2

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        return self.n_layer * 2 * self.kv_dim * dtype_bytes

    def seq_bytes(self, prompt: int, new: int = 0, dtype_bytes: int = 2) -> int:
        """One sequence at its peak: its KV cache, and at the prompt's forward pass the logits of
        every position (fp32) and one layer's attention scores (fp32)."""
        prefill = prompt * (self.vocab * 4 + self.n_head * prompt * 4)
        return self.kv_bytes_per_token(dtype_bytes) * (prompt + new) + prefill

    @classmethod
    def from_config(cls, config: dict, name: str = "", stored: int | None = None,
                    lm_head_stored: bool | None = None, source: str = "config") -> HFShape:
        """The shape from config.json; `stored` (bytes in the saved dtype, from the index) replaces
        the parameter count computed from the config."""
        family = "chatglm" if config.get("model_type") == "chatglm" else "llama"
        try:
            hidden, vocab = int(config["hidden_size"]), int(config["vocab_size"])
            if family == "chatglm":
                n_layer, n_head = int(config["num_layers"]), int(config["num_attention_heads"])
                inner = int(config.get("inner_hidden_size") or 4 * hidden)
                kv_dim = hidden
                linear = 4 * hidden * hidden + 2 * hidden * inner  # query_key_value, dense, the MLP
                rows = 3 * hidden + hidden + inner + hidden
                small = 3 * hidden + hidden + inner + hidden + 4 * hidden  # biases, 2 layer norms
                tied = config.get("tie_word_embeddings", True)  # ChatGLM ties its output to the input
                final = 2 * hidden
            else:
                n_layer, n_head = int(config["num_hidden_layers"]), int(config["num_attention_heads"])
                kv_heads = int(config.get("num_key_value_heads") or n_head)
                head_dim = int(config.get("head_dim") or hidden // n_head)
                inter = int(config["intermediate_size"])
                kv_dim = kv_heads * head_dim
                linear = hidden * n_head * head_dim * 2 + 2 * hidden * kv_dim + 3 * hidden * inter
                rows = n_head * head_dim + 2 * kv_dim + hidden + 2 * inter + hidden
                small = 2 * hidden + (n_head * head_dim + 2 * kv_dim if config.get("attention_bias") or
                                      config.get("model_type") == "qwen2" else 0)
                tied = bool(config.get("tie_word_embeddings", False))
                final = hidden
        except (KeyError, TypeError, ValueError) as err:
            raise ShapeError(f"{name or 'model'}: config.json lacks {err} (not a chatglm or Llama-like "
                             "config)") from None
        params = n_layer * (linear + small) + final + vocab * hidden * (1 if tied else 2)
        if stored is not None:  # the index's bytes, less a tied output matrix saved twice
            elem = DTYPE_BYTES.get(str(config.get("torch_dtype") or "float32"), 4)
            params = stored // elem - (vocab * hidden if tied and lm_head_stored else 0)
        return cls(name=name, family=family, n_layer=n_layer, hidden=hidden, n_head=n_head, kv_dim=kv_dim,
                   vocab=vocab, linear_params=n_layer * linear, linear_rows=n_layer * rows, params=params, source=source)

    @classmethod
    def from_folder(cls, folder: Path, name: str = "") -> HFShape:
        folder = Path(folder)
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ShapeError(f"{name or folder}: cannot read {folder / 'config.json'} ({err})") from None
        for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
            index = folder / index_name
            if index.is_file():
                data = json.loads(index.read_text(encoding="utf-8"))
                total = int(data.get("metadata", {}).get("total_size") or 0)
                if total:
                    return cls.from_config(config, name, total, "lm_head.weight" in data.get("weight_map", {}),
                                           "index")
        single = folder / "model.safetensors"
        if single.is_file():
            header = _safetensors_header(single)
            total = sum(end - start for key, t in header.items() if key != "__metadata__"
                        for start, end in [t["data_offsets"]])
            return cls.from_config(config, name, total, "lm_head.weight" in header, "file")
        single = folder / "pytorch_model.bin"
        if single.is_file():  # a pickle: its size is the tensors' bytes, near enough
            return cls.from_config(config, name, single.stat().st_size, None, "file")
        return cls.from_config(config, name)


def mem_available() -> int:
    """The system's available RAM (the CPU's "free memory"); this module imports nothing, so a
    model's own environment (no llama_cpp there) can use it."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


def _safetensors_header(path: Path) -> dict:
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(length))


def fit_n(shape: HFShape, free: int, n_ctx: int, *, dtype_bytes: int = 2, quant: str | None = None,
          cap: int = MAX_PARALLEL, reserve: int = RESERVE) -> int:
    """Sequences of n_ctx tokens that `free` bytes (before loading) hold beside the weights (0: not
    even one). The backend, once loaded, sizes each batch from the memory still free instead."""
    room = free - reserve - shape.weight_bytes(dtype_bytes, quant)
    return max(0, min(cap, room // max(shape.seq_bytes(n_ctx, 0, dtype_bytes), 1)))


def advice(shape: HFShape, free: int, n_ctx: int, dtype_bytes: int = 2, quant: str | None = None) -> str:
    """One line when not even one sequence fits: what to change in models.toml."""
    weights = shape.weight_bytes(dtype_bytes, quant)
    options = ("int8", "int4") if shape.family == "chatglm" else ("int8", "nf4")  # its own quantize, or bitsandbytes
    smaller = [q for q in options if QUANT_BITS[q] < QUANT_BITS.get(quant or "", 16)]
    fits = lambda q, ctx: fit_n(shape, free, ctx, dtype_bytes=dtype_bytes, quant=q) > 0  # noqa: E731
    full = [q for q in smaller if fits(q, n_ctx)]
    hints = [f'quant = "{full[0]}"'] if full else []
    for q in [quant] + ([] if full else smaller):  # the most context that fits, at this quant or a smaller
        ctx = n_ctx // 2
        while ctx >= 256 and not fits(q, ctx):
            ctx //= 2
        if ctx >= 256:
            hints.append(f"n_ctx = {ctx}" if q == quant else f'quant = "{q}" with n_ctx = {ctx}')
            break
    what = "set " + " or ".join(hints) if hints else "it needs a larger GPU"
    return (f"weights {weights / GIB:.1f} GiB + one sequence of {n_ctx} tokens "
            f"({shape.seq_bytes(n_ctx) / GIB:.1f} GiB) do not fit in {free / GIB:.1f} GiB free; {what}")
