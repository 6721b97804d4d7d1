"""Architecture twins of the original guide's models, laid out as the Hugging Face hub cache.

The guide runs THUDM/chatglm-6b (transformers, the repo's own code and chat()) and
baichuan-inc/Baichuan-7B (converted to GGUF by llama.cpp's converter). Their 13-14 GB of weights
cannot be fetched here, so the tests build *twins*: the same architecture, code, config keys and
tokenizer class, with tiny random weights and a SentencePiece model trained on the spot.

- chatglm-6b: the pinned repo's own files from ../shared/twins/chatglm-6b (code, tokenizer_config,
  config.json scaled down with the new tokenizer's ids), `ice_text.model` with every piece the code
  looks up by name, random fp16 weights in two `pytorch_model-0000N-of-00002.bin` shards with their
  index, as upstream saves them (upstream: eight shards).
- Baichuan-7B: config.json with `architectures: ["BaiChuanForCausalLM"]`, packed `W_pack` q/k/v
  weights in one `pytorch_model.bin`, `tokenizer.model`: what llama.cpp's converter reads.

`hub_cache(cache)` puts both under `cache` (use it as HF_HUB_CACHE) at the revisions models.toml
pins, as huggingface_hub lays out a download: blobs named by their sha256, snapshot symlinks.
What the twins cannot show: anything about the quality of the real weights.
Runs in the project's .venv (torch, sentencepiece); the chatglm code is imported from the copy.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# beside the clone (CI too), read-only; LLMEVAL_SHARED names another shared/ (a git worktree elsewhere)
SHARED = Path(os.environ.get("LLMEVAL_SHARED") or ROOT.parent / "shared") / "twins"
CHATGLM_SOURCE = SHARED / "chatglm-6b"
CHATGLM_FILES = ("config.json", "configuration_chatglm.py", "modeling_chatglm.py", "tokenization_chatglm.py",
                 "quantization.py", "tokenizer_config.json", "LICENSE", "MODEL_LICENSE")
CHATGLM_SPECIALS = ["[MASK]", "[gMASK]", "[sMASK]", "<unused_0>", "<sop>", "<eop>", "<ENC>", "<dBLOCK>",
                    "<n>", "<|tab|>"] + [f"<|blank_{i}|>" for i in range(2, 81)]
CORPUS = [
    "What is the capital of France? The capital of France is Paris.",
    "Why is the sky blue? Sunlight is scattered by the air, and blue light the most.",
    "How do I boil an egg? Put it in boiling water for eight minutes.",
    "Write a short poem about the sea and the wind.",
    "为什么天空是蓝色的？因为空气散射阳光中的蓝光。", "中国的首都是哪里？北京是中国的首都。",
    "如何做披萨？先做面团，再放上番茄酱和奶酪。", "我能用lightning数据线给安卓手机充电吗？",
] * 8


def twin_available() -> bool:
    return all((CHATGLM_SOURCE / name).is_file() for name in CHATGLM_FILES)


def _train_sentencepiece(prefix: Path, user_symbols: list[str], vocab_size: int, model_type: str,
                         max_piece: int = 16) -> Path:
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_prefix=str(prefix), vocab_size=vocab_size,
        model_type=model_type, byte_fallback=True, character_coverage=1.0, hard_vocab_limit=False,
        unk_id=0, bos_id=1, eos_id=2, pad_id=3, pad_piece="<pad>", user_defined_symbols=user_symbols,
        max_sentencepiece_length=max_piece, minloglevel=2, num_threads=1)
    return prefix.with_suffix(".model")


def _init_random(model, seed: int, std: float = 0.02) -> None:
    """The repo's code builds its layers with skip_init (uninitialised memory): fill them."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("layernorm.weight") or name.endswith("norm.weight"):
                param.fill_(1.0)
            elif name.endswith(".bias"):
                param.zero_()
            else:
                param.copy_(torch.randn(param.shape, generator=generator) * std)


def build_chatglm(folder: Path, seed: int = 0) -> Path:
    """THUDM/chatglm-6b's own files with a tiny config, tokenizer and random weights."""
    import sentencepiece as spm
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    for name in CHATGLM_FILES:
        shutil.copyfile(CHATGLM_SOURCE / name, folder / name)
    sp_path = _train_sentencepiece(folder / "ice_text", CHATGLM_SPECIALS, 600, "unigram")
    (folder / "ice_text.vocab").unlink(missing_ok=True)
    sp = spm.SentencePieceProcessor(model_file=str(sp_path))
    config = json.loads((CHATGLM_SOURCE / "config.json").read_text(encoding="utf-8"))
    config.update(hidden_size=64, inner_hidden_size=256, num_layers=2, num_attention_heads=4,
                  vocab_size=sp.vocab_size(), bos_token_id=sp.piece_to_id("<sop>"),
                  eos_token_id=sp.piece_to_id("<eop>"), mask_token_id=sp.piece_to_id("[MASK]"),
                  gmask_token_id=sp.piece_to_id("[gMASK]"), pad_token_id=sp.piece_to_id("<pad>"))
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    model = _chatglm_model(folder, config)
    # Unit scale: at a trained model's init scale (0.02) this tiny twin repeats <sop> forever.
    _init_random(model, seed, std=1.0)
    # Runs of spaces (<|blank_N|>, up to 80 a token) never win: random weights picked them often,
    # and a 512-token answer of 10,000 spaces made every judge call read thousands of tokens.
    # Both matrices: transformers ties lm_head to the input embeddings when it loads the repo.
    blanks = [sp.piece_to_id(f"<|blank_{i}|>") for i in range(2, 81)]
    with torch.no_grad():
        model.lm_head.weight[blanks] = 0.0
        model.transformer.word_embeddings.weight[blanks] = 0.0
    state = {k: v.to(torch.float16) if v.is_floating_point() and "inv_freq" not in k else v
             for k, v in model.state_dict().items()}
    names = list(state)
    shards = [names[: len(names) // 2], names[len(names) // 2:]]
    weight_map, total = {}, 0
    for i, keys in enumerate(shards, 1):
        shard = f"pytorch_model-{i:05d}-of-{len(shards):05d}.bin"
        torch.save({k: state[k] for k in keys}, folder / shard)
        weight_map.update({k: shard for k in keys})
        total += sum(state[k].numel() * state[k].element_size() for k in keys)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    (folder / "__init__.py").unlink(missing_ok=True)
    shutil.rmtree(folder / "__pycache__", ignore_errors=True)
    return folder


def _chatglm_model(folder: Path, config: dict):
    """The repo's own model class, imported from this copy as a package (its modules import each other)."""
    sys.path.insert(0, str(folder.parent))
    try:
        modeling = importlib.import_module(f"{folder.name}.modeling_chatglm")
        configuration = importlib.import_module(f"{folder.name}.configuration_chatglm")
        return modeling.ChatGLMForConditionalGeneration(configuration.ChatGLMConfig(**config))
    finally:
        sys.path.remove(str(folder.parent))
        for name in [m for m in sys.modules if m == folder.name or m.startswith(folder.name + ".")]:
            del sys.modules[name]


def reshape_chatglm(folder: Path, dims: dict, seed: int = 0) -> Path:
    """The twin at another shape (bench/gpu_check.sh: ChatGLM-6B's real one), random fp16 weights
    at a trained model's scale, saved in shards by save_pretrained; its tokenizer is kept (a larger
    vocab_size leaves rows no token uses). Speed is the real model's; the answers are noise."""
    import torch

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config.update(dims)
    torch.set_default_dtype(torch.float16)  # the code's own layers are fp16; the rest too
    try:
        model = _chatglm_model(folder, config)
    finally:
        torch.set_default_dtype(torch.float32)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "layernorm" in name:
                param.fill_(1.0 if name.endswith("weight") else 0.0)
            else:
                param.copy_(torch.randn(param.shape, generator=generator, dtype=torch.float32).to(param.dtype) * 0.02)
    for old in folder.glob("pytorch_model*"):
        old.unlink()
    model.half().save_pretrained(folder, max_shard_size="2GB")
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return folder


def build_baichuan(folder: Path, seed: int = 0) -> Path:
    """A Baichuan-7B-shaped model: packed W_pack attention, SentencePiece tokenizer.model."""
    import sentencepiece as spm
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    # Pieces of at most two characters: random weights answer max_tokens pieces, and whole-sentence
    # pieces ("为什么天空是蓝色的") made a 512-token answer thousands of tokens long for the judge.
    sp_path = _train_sentencepiece(folder / "tokenizer", [], 600, "bpe", max_piece=2)
    (folder / "tokenizer.vocab").unlink(missing_ok=True)
    vocab = spm.SentencePieceProcessor(model_file=str(sp_path)).vocab_size()
    # Upstream: hidden 4096, intermediate 11008, 32 layers, 32 heads, vocab 64000. Hidden 256 keeps
    # the k-quant blocks (256 values) that Q4_K_M needs.
    hidden, inter, layers, heads = 256, 512, 2, 4
    config = {"architectures": ["BaiChuanForCausalLM"], "model_type": "baichuan",
              "auto_map": {"AutoConfig": "configuration_baichuan.BaiChuanConfig",
                           "AutoModelForCausalLM": "modeling_baichuan.BaiChuanForCausalLM"},
              "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "hidden_act": "silu",
              "hidden_size": hidden, "initializer_range": 0.02, "intermediate_size": inter,
              "max_position_embeddings": 4096, "num_attention_heads": heads, "num_hidden_layers": layers,
              "rms_norm_eps": 1e-6, "tie_word_embeddings": False, "torch_dtype": "float32",
              "transformers_version": "4.29.1", "use_cache": True, "vocab_size": vocab}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "add_bos_token": False, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
        "unk_token": "<unk>", "pad_token": "<unk>", "tokenizer_class": "BaiChuanTokenizer",
        "auto_map": {"AutoTokenizer": ["tokenization_baichuan.BaiChuanTokenizer", None]}}, indent=2) + "\n",
        encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<unk>"}) + "\n",
        encoding="utf-8")
    generator = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.randn(*shape, generator=generator) * 0.02  # noqa: E731
    state = {"model.embed_tokens.weight": rand(vocab, hidden), "model.norm.weight": torch.ones(hidden),
             "lm_head.weight": rand(vocab, hidden)}
    head_dim = hidden // heads
    for i in range(layers):
        p = f"model.layers.{i}."
        state.update({
            p + "self_attn.W_pack.weight": rand(3 * hidden, hidden),  # q, k, v stacked
            p + "self_attn.o_proj.weight": rand(hidden, hidden),
            p + "self_attn.rotary_emb.inv_freq": 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim)),
            p + "mlp.gate_proj.weight": rand(inter, hidden), p + "mlp.up_proj.weight": rand(inter, hidden),
            p + "mlp.down_proj.weight": rand(hidden, inter),
            p + "input_layernorm.weight": torch.ones(hidden), p + "post_attention_layernorm.weight": torch.ones(hidden),
        })
    torch.save(state, folder / "pytorch_model.bin")
    return folder


def put_in_hub_cache(cache: Path, repo: str, revision: str, folder: Path) -> Path:
    """`folder`'s files as huggingface_hub stores a download of repo@revision; the snapshot path."""
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / revision
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for file in sorted(folder.iterdir()):
        if not file.is_file():
            continue
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        blob = repo_dir / "blobs" / digest
        if not blob.exists():
            shutil.copyfile(file, blob)
        link = snapshot / file.name
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(os.path.relpath(blob, snapshot), link)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision, encoding="utf-8")
    return snapshot


def hub_cache(cache: Path, work: Path) -> dict[str, Path]:
    """Both twins under `cache` at the revisions the project's models.toml pins: {name: snapshot}."""
    sys.path.insert(0, str(ROOT / "tools"))
    from lib.registry import load_registry

    registry = load_registry(ROOT / "models.toml")
    made = {}
    for name, build in (("chatglm_6b", build_chatglm), ("baichuan_7b", build_baichuan)):
        spec = registry.get(name)
        made[name] = put_in_hub_cache(cache, spec.hf_repo, spec.revision, build(work / f"{name}_twin"))
    return made


def baichuan_as_llama(twin: Path, folder: Path) -> Path:
    """The Baichuan twin as transformers' own Llama, for the transformers backend: Baichuan-7B is
    Llama with q, k and v packed in one W_pack matrix (its own modeling code, which the twin does
    not carry, differs in nothing else). The tokenizer: its SentencePiece BPE pieces and merges
    (ordered by score, as transformers' converter does; protobuf is not installed here) in a fast
    tokenizer, NFKC-normalized like the SentencePiece model (which also turns newlines to spaces)."""
    import sentencepiece as spm
    import torch
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, decoders, models, normalizers
    from transformers import LlamaConfig, PreTrainedTokenizerFast

    config = json.loads((twin / "config.json").read_text(encoding="utf-8"))
    state = torch.load(twin / "pytorch_model.bin")
    hidden = config["hidden_size"]
    for key in [k for k in state if k.endswith("W_pack.weight")]:
        q, k, v = state.pop(key).split(hidden)
        prefix = key[: -len("W_pack.weight")]
        state.update({prefix + "q_proj.weight": q, prefix + "k_proj.weight": k, prefix + "v_proj.weight": v})
    state = {k: v.contiguous() for k, v in state.items() if "inv_freq" not in k}
    keys = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "max_position_embeddings", "rms_norm_eps", "bos_token_id", "eos_token_id", "pad_token_id")
    folder.mkdir(parents=True, exist_ok=True)
    LlamaConfig(**{k: config[k] for k in keys}, num_key_value_heads=config["num_attention_heads"],
                tie_word_embeddings=False).save_pretrained(folder)
    save_file(state, str(folder / "model.safetensors"))

    sp = spm.SentencePieceProcessor(model_file=str(twin / "tokenizer.model"))
    vocab = {sp.id_to_piece(i): i for i in range(sp.vocab_size())}
    merges = []
    for piece, i in vocab.items():
        if not (sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i)):
            merges += [(-sp.get_score(i), vocab[piece[:k]], vocab[piece[k:]], piece[:k], piece[k:])
                       for k in range(1, len(piece)) if piece[:k] in vocab and piece[k:] in vocab]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[(a, b) for *_, a, b in sorted(merges)], unk_token="<unk>",
                               byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Prepend("▁"),
                                           normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                            pad_token="<unk>").save_pretrained(folder)
    return folder
