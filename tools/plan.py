"""What each llama.cpp model (and the judges) will use on this machine's GPU, before anything runs.

    python tools/plan.py [MODELS...] [--judge NAME...] [--free 12GiB | --cards 8,12,16,24]   (make plan)

For each model: the weights' size, the KV cache of one sequence at its n_ctx, the GPU's free
memory, and the layers on the GPU and the sequences N decoded together that the llama.cpp
backend will pick (tools/backends/gpu_fit.py, the same function). Sizes come from the GGUF's
metadata (the `gguf` package: nothing is loaded); a declared model not yet downloaded is
estimated from its published shape (gpu_fit.PUBLISHED), marked "(published)". The free memory
is asked of llama.cpp's ggml backend; `--free` pretends a GPU with that much free, `--cards`
prints one column per consumer card (its memory less 400 MiB for a desktop). Without a GPU it
says so and shows N as a CPU build sizes it (a quarter of the free RAM). N is the most for
n_ctx-long sequences; shorter questions get more. Not handled: transformers, API and custom
models (listed as not sized), several GPUs.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import arguments
from backends import gpu_fit
from registry import RegistryError, load_registry

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


def model_shape(spec) -> tuple[gpu_fit.ModelShape | None, str]:
    """The model's sizes and where they came from, or (None, why not)."""
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
    args = parser.parse_args(argv)
    try:
        registry = load_registry(args.models_toml)
        judges = args.judge or ([registry.judge] if registry.judge else [])
        names = list(dict.fromkeys((args.models or registry.default_models) + judges))
        specs = [(registry.get(n), n in judges) for n in names]
        cards = _cards(args.cards) if args.cards else None
        free_given = parse_size(args.free) if args.free else None
    except (RegistryError, PlanError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from backends.llama_engine import _mem_available
    ram = _mem_available()
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
