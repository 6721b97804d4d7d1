"""What each local model (and the judges) will use on this machine's GPU, before anything runs.

    python tools/plan.py [MODELS...] [--judge NAME...] [--free 12GiB | --cards 8,12,16,24] [--quant fp16,int8,int4]

For each model: the weights' size, the KV cache of one sequence at its n_ctx, the GPU's free
memory, and the layers on the GPU and the sequences N decoded together that the llama.cpp
backend will pick (tools/backends/gpu_fit.py, the same function). Sizes come from the GGUF's
metadata (the `gguf` package: nothing is loaded); a declared model not yet downloaded is
estimated from its published shape (gpu_fit.PUBLISHED), marked "(published)". The free memory
is asked of llama.cpp's ggml backend; `--free` pretends a GPU with that much free, `--cards`
prints one column per consumer card (its memory less 400 MiB for a desktop). Without a GPU it
says so and shows N as a CPU build sizes it (a quarter of the free RAM). N is the most for
n_ctx-long sequences; shorter questions get more.

Transformers models (tools/backends/hf_fit.py, the function the backend sizes its batches with):
weights from config.json and the weights' index, in fp16 on a GPU (fp32 on a CPU) or at their
`quant` (--quant lists others, one row each: fp16, int8, int4, nf4); the KV cache of one
sequence from the config; N from the free memory left beside the weights, each sequence counted
at n_ctx tokens with its prompt's forward pass. The whole model goes on the GPU or nothing.
A model not downloaded is sized from its published config (hf_fit.PUBLISHED), "(published)".
Not handled: API and custom models (listed as not sized), several GPUs.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from lib import arguments
from backends import gpu_fit, hf_fit
from lib.registry import RegistryError, load_registry

GIB = 1 << 30
# Consumer cards' memory as nvidia-smi reports it (MiB): RTX 4060, 3060, 4060 Ti 16 GB, 4090.
CARDS_MIB = {8: 8188, 12: 12288, 16: 16380, 24: 24564}
DESKTOP_MIB = 400  # what a desktop session keeps on the card


class PlanError(ValueError):
    """Bad input, worded for the user."""


def parse_size(text: str) -> int:
    """'12GiB', '12G', '11.5 GB' (read as GiB), '800M', or bytes."""
    value = text.strip().upper().replace(" ", "")
    for suffix, scale in (("GIB", GIB), ("GB", GIB), ("G", GIB), ("MIB", 1 << 20), ("MB", 1 << 20),
                          ("M", 1 << 20)):
        if value.endswith(suffix):
            value, unit = value[:-len(suffix)], scale
            break
    else:
        unit = 1
    try:
        size = int(float(value) * unit)
    except ValueError:
        raise PlanError(f"--free wants a size like 12GiB or 800MiB, got {text!r}") from None
    if size <= 0:
        raise PlanError(f"--free must be positive, got {text!r}")
    return size


_read: dict[Path, gpu_fit.ModelShape] = {}  # one read per file (gguf's reader takes seconds)


def model_shape(spec) -> tuple[gpu_fit.ModelShape | hf_fit.HFShape | None, str]:
    """The model's sizes and where they came from, or (None, why not)."""
    if spec.backend == "transformers":
        return hf_shape(spec)
    if spec.backend != "llama.cpp":
        return None, f"{spec.backend} backend, not sized here"
    if spec.path is not None and spec.path.is_file():
        if spec.path not in _read:
            _read[spec.path] = gpu_fit.ModelShape.from_gguf(spec.path, spec.name)
        return dataclasses.replace(_read[spec.path], name=spec.name), "GGUF"
    published = gpu_fit.PUBLISHED.get(spec.gguf_file or "") or gpu_fit.PUBLISHED.get(spec.hf_repo or "")
    if published:
        return gpu_fit.ModelShape.from_published(spec.name, **published), "published"
    return None, "weights not on disk (make download / make quantize)"


def hf_shape(spec) -> tuple[hf_fit.HFShape | None, str]:
    try:
        if spec.path is not None and (spec.path / "config.json").is_file():
            return hf_fit.HFShape.from_folder(spec.path, spec.name), "config"
        if spec.hf_repo in hf_fit.PUBLISHED:
            return hf_fit.HFShape.from_config(hf_fit.PUBLISHED[spec.hf_repo], spec.name), "published"
    except hf_fit.ShapeError as err:
        return None, str(err)
    return None, "weights not on disk (make download)"


def hf_row(spec, shape: hf_fit.HFShape, quant: str | None, free: int | None, ram: int) -> dict:
    """N for a transformers model on a GPU with `free` bytes free, or on the CPU (fp32)."""
    if free is None:
        n = spec.parallel or max(1, min(hf_fit.MAX_PARALLEL, ram // 4 // shape.seq_bytes(spec.n_ctx, 0, 4)))
        return {"layers": "CPU", "n": n, "note": ""}
    n = hf_fit.fit_n(shape, free, spec.n_ctx, quant=quant)
    note = "" if n else f"{spec.name}: {hf_fit.advice(shape, free, spec.n_ctx, quant=quant)}"
    if n and spec.parallel:
        n = spec.parallel
    return {"layers": "all" if n else "", "n": n, "note": note}


def plan_row(spec, shape, free: int | None, ram: int) -> dict:
    """Layers and N on a GPU with `free` bytes free, or as a CPU build (free None)."""
    if free is None:
        kv_seq = shape.kv_bytes_per_token() * spec.n_ctx
        n = spec.parallel or max(1, min(gpu_fit.MAX_PARALLEL, ram // 4 // max(kv_seq, 1)))
        return {"layers": "CPU", "n": n, "note": ""}
    f = gpu_fit.fit(shape, free, spec.n_ctx, parallel=spec.parallel, n_gpu_layers=spec.n_gpu_layers,
                    ram_free=ram)
    layers = f"{f.gpu_layers}/{shape.n_layer}" + ("" if f.n_gpu_layers == -1 else " (rest CPU)")
    return {"layers": layers, "n": f.n_parallel if f.n_parallel else "does not fit", "note": f.note}


def main(argv: list[str] | None = None) -> int:
    parser = arguments.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="model names (default: [defaults] models)")
    parser.add_argument("--judge", nargs="+", default=[], help="the judge models (default: [defaults] judge)")
    parser.add_argument("--models-toml", default="models.toml")
    parser.add_argument("--free", help="pretend the GPU has this much free memory, e.g. 12GiB")
    parser.add_argument("--cards", help="one column per card size in GB, e.g. 8,12,16,24")
    parser.add_argument("--quant", help="transformers models: one row per quant, e.g. fp16,int8,int4 "
                                        "(default: each model's own)")
    args = parser.parse_args(argv)
    try:
        registry = load_registry(args.models_toml)
        judges = args.judge or ([registry.judge] if registry.judge else [])
        names = list(dict.fromkeys((args.models or registry.default_models) + judges))
        specs = [(registry.get(n), n in judges) for n in names]
        cards = _cards(args.cards) if args.cards else None
        free_given = parse_size(args.free) if args.free else None
        quants = _quants(args.quant) if args.quant else None
    except (RegistryError, PlanError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from backends.hf_fit import mem_available
    ram = mem_available()
    if cards:
        columns = [(f"{gb} GB card", (mib - DESKTOP_MIB) << 20) for gb, mib in cards]
        print(f"GPU memory free: each card's memory less {DESKTOP_MIB} MiB for a desktop")
    else:
        memory = None if free_given else gpu_fit.device_memory()
        free = free_given or (memory.free if memory else None)
        if free_given:
            print(f"GPU memory free: {free / GIB:.1f} GiB (given with --free)")
        elif memory:
            print(f"GPU memory free: {memory.free / GIB:.1f} of {memory.total / GIB:.1f} GiB "
                  f"({memory.name}, from {memory.source})")
        else:
            print(f"no GPU (a CPU build, or no device found): N sized from RAM "
                  f"({ram / GIB:.1f} GiB available); --free 12GiB shows a GPU's plan")
        columns = [("layers on GPU, N", free)]
    header = ["model", "weights", "KV / sequence (n_ctx)"] + [c for c, _ in columns]
    rows, notes = [], []
    for spec, is_judge in specs:
        label = spec.name + (" (judge)" if is_judge else "")
        shape, source = model_shape(spec)
        if shape is None:
            rows.append([label, source, "", *[""] * len(columns)])
            continue
        if isinstance(shape, hf_fit.HFShape):
            for quant in quants or [spec.quant]:
                quant = None if quant == "fp16" else quant
                gpu_free = [free for _, free in columns if free is not None]
                dtype = 2 if gpu_free else 4  # what the backend loads: fp16 on a GPU, fp32 on a CPU
                weights = f"{shape.weight_bytes(dtype, quant) / GIB:.2f} GiB {quant or ('fp16' if gpu_free else 'fp32')}"
                weights += " (published)" if source == "published" else ""
                kv = f"{shape.kv_bytes_per_token(dtype) * spec.n_ctx / (1 << 20):.0f} MiB ({spec.n_ctx})"
                cells = []
                for _, free in columns:
                    row = hf_row(spec, shape, quant, free, ram)
                    cells.append(f"{row['layers']}, N={row['n']}" if row["n"] else "does not fit")
                    if row["note"] and not cards:
                        notes.append(row["note"])
                rows.append([label + (f" ({quant or 'fp16'})" if quants else ""), weights, kv, *cells])
            continue
        weights = f"{shape.file_bytes / GIB:.2f} GiB" + (" (published)" if source == "published" else "")
        kv = f"{shape.kv_bytes_per_token() * spec.n_ctx / (1 << 20):.0f} MiB ({spec.n_ctx})"
        cells = []
        for _, free in columns:
            row = plan_row(spec, shape, free, ram)
            cells.append(f"{row['layers']}, N={row['n']}")
            if row["note"] and not cards:
                notes.append(row["note"])
        rows.append([label, weights, kv, *cells])
    _print_table(header, rows)
    for note in notes:
        print(f"note: {note}")
    return 0


def _quants(text: str) -> list[str]:
    quants = [q.strip() for q in text.split(",") if q.strip()]
    known = ("fp16", *hf_fit.QUANT_BITS)
    if not quants or any(q not in known for q in quants):
        raise PlanError(f"--quant wants some of {', '.join(known)}, got {text!r}")
    return quants


def _cards(text: str) -> list[tuple[int, int]]:
    try:
        sizes = [int(x) for x in text.replace(" ", ",").split(",") if x]
    except ValueError:
        sizes = []
    if not sizes or any(s not in CARDS_MIB for s in sizes):
        raise PlanError(f"--cards wants sizes among {sorted(CARDS_MIB)} (GB), got {text!r}")
    return [(s, CARDS_MIB[s]) for s in sizes]


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    """A Markdown table (pasted into the README as it is)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")


if __name__ == "__main__":
    sys.exit(main())
