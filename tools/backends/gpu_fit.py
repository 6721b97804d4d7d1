"""How much of a GGUF model goes on the GPU, and how many sequences decode together there.

`fit(shape, free_bytes, n_ctx_seq, ...)` is a pure function: from the device's free memory and the
model's sizes (weights per layer, KV cache per token, llama.cpp's compute buffer) it picks the
layers on the GPU (all when they fit with a minimal cache, else as many as fit, the rest on
the CPU) and N, the sequences the remaining memory holds (capped at 32, as on the CPU).
`ModelShape.from_gguf` reads the sizes from a GGUF's metadata and tensor table (gguf_file.py:
no model load); `ModelShape.from_published` estimates them from a model card's shape,
for models not on disk. `device_memory()` asks llama.cpp's ggml backend for the GPU's free
memory (nvidia-smi, then torch, as fallbacks).

Estimates, not measurements: the KV cache is f16 for every layer (sliding-window layers, as in
Gemma 3, use less, so they are over-counted), the compute buffer is sized for flash attention
(the engine's setting on a GPU), and RESERVE is kept free for the CUDA runtime. The engine still
halves N when llama.cpp cannot create the context (llama_engine.py). Does not handle: several
GPUs (the first GPU device is used), quantized KV caches, recurrent models' state.
"""
from __future__ import annotations

import ctypes
import subprocess
from dataclasses import dataclass
from pathlib import Path

MAX_PARALLEL = 32    # the engine's cap on automatic N (llama_engine.MAX_AUTO_PARALLEL)
RESERVE = 512 << 20  # left free: CUDA runtime and cuBLAS workspaces, allocator slack
GIB = 1 << 30
MIN_SEQS = 2  # the least cache the layers leave room for: one answer + the shared prompt start


@dataclass(frozen=True)
class ModelShape:
    name: str
    file_bytes: int
    layer_bytes: tuple[int, ...]   # weights of each repeating layer (blk.N.*)
    output_bytes: int              # the output matrix: on the GPU only with every layer there
    kv_layer_bytes: tuple[int, ...]  # f16 K + V bytes per token, per layer
    n_vocab: int
    n_embd: int
    n_ff: int
    n_ctx_train: int = 0

    @property
    def n_layer(self) -> int:
        return len(self.layer_bytes)

    def kv_bytes_per_token(self, layers: int | None = None) -> int:
        """K + V bytes per token of the last `layers` layers (llama.cpp offloads the last ones)."""
        layers = self.n_layer if layers is None else layers
        return sum(self.kv_layer_bytes[self.n_layer - layers:]) if layers > 0 else 0

    def gpu_weight_bytes(self, layers: int, output: bool = False) -> int:
        """Weights of the last `layers` layers, plus the output matrix when `output`."""
        on_gpu = sum(self.layer_bytes[self.n_layer - layers:]) if layers > 0 else 0
        return on_gpu + (self.output_bytes if output else 0)

    @classmethod
    def from_gguf(cls, path: Path, name: str | None = None) -> ModelShape:
        """Sizes from the GGUF's tensor table and metadata (nothing is loaded or computed)."""
        from backends.gguf_file import read_gguf

        fields, tensors = read_gguf(path)

        def meta(key, default=None):
            return fields.get(key, default)

        arch = meta("general.architecture")
        n_layer = int(meta(f"{arch}.block_count"))
        n_embd = int(meta(f"{arch}.embedding_length"))
        n_head = _per_layer(meta(f"{arch}.attention.head_count"), n_layer)
        n_head_kv = _per_layer(meta(f"{arch}.attention.head_count_kv", None) or n_head, n_layer)
        n_ff = max(_per_layer(meta(f"{arch}.feed_forward_length", 0), n_layer))
        head_k = [meta(f"{arch}.attention.key_length") or n_embd // max(h, 1) for h in n_head]
        head_v = [meta(f"{arch}.attention.value_length") or n_embd // max(h, 1) for h in n_head]
        kv = tuple(2 * kvh * (k + v) for kvh, k, v in zip(n_head_kv, head_k, head_v))
        layers = [0] * n_layer
        output = embd = 0
        for t in tensors:
            if t.name.startswith("blk."):
                layers[int(t.name.split(".")[1])] += int(t.n_bytes)
            elif t.name == "output.weight":
                output = int(t.n_bytes)
            elif t.name == "token_embd.weight":
                embd = int(t.n_bytes)
        n_vocab = int(meta(f"{arch}.vocab_size", 0) or len(meta("tokenizer.ggml.tokens", ())))
        return cls(name=name or Path(path).stem, file_bytes=Path(path).stat().st_size,
                   layer_bytes=tuple(layers),
                   output_bytes=output or embd,  # tied embeddings: llama.cpp copies them to the GPU
                   kv_layer_bytes=kv, n_vocab=n_vocab, n_embd=n_embd, n_ff=n_ff,
                   n_ctx_train=int(meta(f"{arch}.context_length", 0)))

    @classmethod
    def from_published(cls, name: str, *, file_bytes: int, n_layer: int, n_embd: int, n_head: int,
                       n_head_kv: int, n_ff: int, n_vocab: int, head_dim: int | None = None,
                       tied: bool = False, n_ctx_train: int = 0) -> ModelShape:
        """Sizes estimated from a model card (config.json) and the GGUF's download size, for a
        model not on disk: llama.cpp's Q4_K_M keeps token embeddings in Q4_K (4.5 bits a weight)
        and the output matrix in Q6_K (6.5625 bits); the rest is shared evenly by the layers."""
        head_dim = head_dim or n_embd // n_head
        embd = n_vocab * n_embd * 9 // 16
        output = 0 if tied else n_vocab * n_embd * 105 // 128
        per_layer = (file_bytes - embd - output) // n_layer
        return cls(name=name, file_bytes=file_bytes, layer_bytes=(per_layer,) * n_layer,
                   output_bytes=output or embd, kv_layer_bytes=(2 * n_head_kv * head_dim * 2,) * n_layer,
                   n_vocab=n_vocab, n_embd=n_embd, n_ff=n_ff, n_ctx_train=n_ctx_train)


# Declared real models not on disk, from their config.json on the Hub and the GGUF's download
# size as the Hub lists it, rounded (Q4_K_M; Baichuan-7B: what `make quantize` makes, about
# 4.3 GB), keyed by GGUF file or Hub repo: estimates for `make plan` before anything is downloaded.
PUBLISHED = {
    "Qwen2.5-7B-Instruct-Q4_K_M.gguf": dict(file_bytes=4_680_000_000, n_layer=28, n_embd=3584, n_head=28,
                                            n_head_kv=4, n_ff=18944, n_vocab=152064, n_ctx_train=32768),
    "Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf": dict(file_bytes=4_920_000_000, n_layer=32, n_embd=4096,
                                                   n_head=32, n_head_kv=8, n_ff=14336, n_vocab=128256,
                                                   n_ctx_train=131072),
    "Qwen3-14B-Q4_K_M.gguf": dict(file_bytes=9_000_000_000, n_layer=40, n_embd=5120, n_head=40, n_head_kv=8,
                                  head_dim=128, n_ff=17408, n_vocab=151936, n_ctx_train=40960),
    # The open judges (models.toml, commented out): Llama-3.1-8B's and Mistral-7B's shapes, the
    # files' sizes from their Hub listings (Skywork's exact, from its LFS pointer).
    "Skywork-Critic-Llama-3.1-8B.Q4_K_M.gguf": dict(file_bytes=4_920_738_912, n_layer=32, n_embd=4096, n_head=32,
                                                    n_head_kv=8, n_ff=14336, n_vocab=128256, n_ctx_train=131072),
    "selene-1-mini-llama-3.1-8b-q4_k_m.gguf": dict(file_bytes=4_920_000_000, n_layer=32, n_embd=4096, n_head=32,
                                                   n_head_kv=8, n_ff=14336, n_vocab=128256, n_ctx_train=131072),
    "prometheus-eval/prometheus-7b-v2.0": dict(file_bytes=4_370_000_000, n_layer=32, n_embd=4096, n_head=32,
                                               n_head_kv=8, n_ff=14336, n_vocab=32000, n_ctx_train=32768),
    "baichuan-inc/Baichuan-7B": dict(file_bytes=4_260_000_000, n_layer=32, n_embd=4096, n_head=32,
                                     n_head_kv=32, n_ff=11008, n_vocab=64000, n_ctx_train=4096),
}


def _per_layer(value, n_layer: int) -> list[int]:
    if isinstance(value, (list, tuple)):
        return [int(x) for x in value]
    return [int(value or 0)] * n_layer


def compute_bytes(shape: ModelShape, n_ubatch: int = 512) -> int:
    """llama.cpp's compute buffer for one micro-batch, flash attention on: the output matrix's
    f32 result (n_vocab per token) dominates, plus the widest activations (feed-forward)."""
    return n_ubatch * 4 * (shape.n_vocab + shape.n_ff + 2 * shape.n_embd)


@dataclass(frozen=True)
class Fit:
    n_gpu_layers: int     # what llama.cpp gets: -1 = all (output matrix included), 0 = none
    gpu_layers: int       # repeating layers on the GPU
    n_parallel: int       # sequences decoded together; 0 = not even one fits as asked
    weights_gpu: int      # bytes of weights on the GPU
    kv_seq: int           # KV bytes of one sequence (all layers) at n_ctx_seq
    kv_seq_gpu: int       # ... of its layers on the GPU
    compute: int
    free: int
    note: str = ""        # one line for the user when not everything fits


def fit(shape: ModelShape, free: int, n_ctx_seq: int, *, n_prompts: int = MAX_PARALLEL,
        parallel: int = 0, n_gpu_layers: int = -1, ram_free: int | None = None,
        cap: int = MAX_PARALLEL, n_ubatch: int = 512, reserve: int = RESERVE) -> Fit:
    """Layers on the GPU and N for a device with `free` bytes free (before the model loads).

    n_gpu_layers -1 (models.toml's default) = automatic: all layers when they fit with the cache
    of MIN_SEQS sequences, else as many as fit so; another value is the user's and is kept. parallel > 0
    is the user's N (kept, the engine halves it if llama.cpp fails); 0 = automatic: what the
    memory left after the weights and the compute buffer holds, one sequence kept for the shared
    prompt start (llama_engine.py), at most min(cap, n_prompts). The KV cache of layers left on
    the CPU lives in RAM: with ram_free given, N also fits a quarter of it (as on a CPU build).
    """
    n_layer = shape.n_layer
    compute = compute_bytes(shape, n_ubatch)
    avail = free - reserve - compute
    kv_token_all = shape.kv_bytes_per_token()
    auto = n_gpu_layers < 0
    # llama.cpp's count: n_layer + 1 (or -1) puts the output matrix on the GPU too.
    if auto:
        output = shape.gpu_weight_bytes(n_layer, True) + MIN_SEQS * kv_token_all * n_ctx_seq <= avail
        layers = n_layer if output else _most_layers(shape, avail, n_ctx_seq)
    else:
        layers, output = min(n_gpu_layers, n_layer), n_gpu_layers > n_layer
    weights = shape.gpu_weight_bytes(layers, output)
    kv_seq_gpu = shape.kv_bytes_per_token(layers) * n_ctx_seq
    kv_seq_cpu = (kv_token_all - shape.kv_bytes_per_token(layers)) * n_ctx_seq
    if parallel > 0:
        n = parallel
    else:
        room = avail - weights
        fits = room // kv_seq_gpu if kv_seq_gpu else cap
        if ram_free is not None and kv_seq_cpu:
            fits = min(fits, ram_free // 4 // kv_seq_cpu)
        n = max(0, min(cap, n_prompts, fits - 1 if fits > 1 else fits))
    note = ""
    if auto and layers < n_layer:
        note = (f"{shape.name}: {layers} of {n_layer} layers fit on the GPU ({free / GIB:.1f} GiB free, "
                f"weights {shape.file_bytes / GIB:.1f} GiB), the rest run on the CPU")
    if n == 0:
        note = f"{shape.name}: {advice(shape, free, n_ctx_seq, layers, n_ubatch, reserve)}"
    if auto:
        n_gpu_layers = -1 if output else layers
    return Fit(n_gpu_layers=n_gpu_layers, gpu_layers=layers, n_parallel=n,
               weights_gpu=weights, kv_seq=kv_token_all * n_ctx_seq, kv_seq_gpu=kv_seq_gpu,
               compute=compute, free=free, note=note)


def _most_layers(shape: ModelShape, avail: int, n_ctx_seq: int, seqs: int = 2) -> int:
    """The most repeating layers (the output matrix on the CPU) that fit with `seqs` sequences."""
    best = 0
    for layers in range(1, shape.n_layer):
        if shape.gpu_weight_bytes(layers) + seqs * shape.kv_bytes_per_token(layers) * n_ctx_seq <= avail:
            best = layers
    return best


def advice(shape: ModelShape, free: int, n_ctx_seq: int, layers: int, n_ubatch: int = 512,
           reserve: int = RESERVE) -> str:
    """One line on what to set in models.toml when one sequence does not fit."""
    avail = free - reserve - compute_bytes(shape, n_ubatch)
    fewer = _most_layers(shape, avail, n_ctx_seq, seqs=1)
    per_token = shape.kv_bytes_per_token(layers)
    room = avail - shape.gpu_weight_bytes(layers, layers == shape.n_layer)
    # Room for MIN_SEQS sequences, so that automatic sizing keeps these layers at that n_ctx.
    ctx = (room // (MIN_SEQS * per_token)) // 256 * 256 if per_token and room > 0 else 0
    hints = [f"n_gpu_layers = {fewer}"] if fewer < layers else []
    if ctx >= 256:
        hints.append(f"n_ctx = {ctx}")
    what = " or ".join(hints) or "n_gpu_layers = 0 (CPU only)"
    return (f"one sequence of {n_ctx_seq} tokens with {layers} layers on the GPU does not fit in "
            f"{free / GIB:.1f} GiB free; set {what} in models.toml")


def sized_layers(path: Path, name: str, n_ctx: int, parallel: int = 0, n_gpu_layers: int = -1):
    """(n_gpu_layers for llama.cpp, (shape, free bytes) or None) for a GGUF about to load: the
    user's value on a CPU build, without a GPU, or with n_gpu_layers = 0; else sized from the
    free memory, the note (layers left on the CPU) printed once on stderr."""
    import sys

    import llama_cpp
    if n_gpu_layers == 0 or not llama_cpp.llama_supports_gpu_offload():
        return n_gpu_layers, None
    memory = device_memory()
    if memory is None:
        return n_gpu_layers, None
    shape = ModelShape.from_gguf(path, name)
    sized = fit(shape, memory.free, n_ctx, parallel=parallel, n_gpu_layers=n_gpu_layers)
    if sized.note:
        print(f"note: {sized.note}", file=sys.stderr)
    return sized.n_gpu_layers, (shape, memory.free)


@dataclass(frozen=True)
class DeviceMemory:
    free: int
    total: int
    name: str
    source: str  # "ggml GPU" (or "ggml" for another device), "nvidia-smi" or "torch"


def device_memory() -> DeviceMemory | None:
    """The first GPU's free and total memory, or None when there is no GPU."""
    for probe in (_ggml_memory, _nvidia_smi_memory, _torch_memory):
        try:
            found = probe()
        except Exception:  # a probe that cannot run (no library, no driver) gives way to the next
            found = None
        if found:
            return found
    return None


def _ggml_memory() -> DeviceMemory | None:
    """The first GPU device of the bundled llama.cpp (a CPU build has none)."""
    import llama_cpp
    if not llama_cpp.llama_supports_gpu_offload():
        return None
    return next((d for d in ggml_devices() if d.source == "ggml GPU"), None)


def ggml_devices() -> list[DeviceMemory]:
    """Every device llama.cpp's ggml backend knows, with ggml_backend_dev_memory's free and total
    (for the CPU device: the system's RAM); source "ggml GPU" for dedicated or integrated GPUs."""
    from llama_cpp._ggml import libggml

    libggml.ggml_backend_dev_count.restype = ctypes.c_size_t
    libggml.ggml_backend_dev_get.restype = ctypes.c_void_p
    libggml.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    libggml.ggml_backend_dev_type.restype = ctypes.c_int
    libggml.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
    libggml.ggml_backend_dev_name.restype = ctypes.c_char_p
    libggml.ggml_backend_dev_name.argtypes = [ctypes.c_void_p]
    libggml.ggml_backend_dev_memory.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t),
                                                ctypes.POINTER(ctypes.c_size_t)]
    gpu_types = (1, 2)  # GGML_BACKEND_DEVICE_TYPE_GPU, _IGPU (ggml-backend.h)
    found = []
    for i in range(libggml.ggml_backend_dev_count()):
        dev = libggml.ggml_backend_dev_get(i)
        free, total = ctypes.c_size_t(), ctypes.c_size_t()
        libggml.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        name = (libggml.ggml_backend_dev_name(dev) or b"?").decode(errors="replace")
        gpu = libggml.ggml_backend_dev_type(dev) in gpu_types
        found.append(DeviceMemory(free.value, total.value, name, "ggml GPU" if gpu else "ggml"))
    return found


def _nvidia_smi_memory() -> DeviceMemory | None:
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.free,memory.total,name",
                          "--format=csv,noheader,nounits"], capture_output=True, text=True,
                         timeout=20, check=True).stdout.strip().splitlines()
    free, total, name = (x.strip() for x in out[0].split(",", 2))
    return DeviceMemory(int(free) << 20, int(total) << 20, name, "nvidia-smi")


def _torch_memory() -> DeviceMemory | None:
    import sys
    if "torch" not in sys.modules:  # importing torch only to ask is too slow; use it if loaded
        return None
    torch = sys.modules["torch"]
    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info(0)
    return DeviceMemory(free, total, torch.cuda.get_device_name(0), "torch")
