"""Quantized weights for the transformers backend: which quant a model and its environment can do.

models.toml's `quant` for a transformers model:
- "int8" / "int4" on a model whose own code has quantize(bits) (ChatGLM-6B): that method, the
  model's documented way, `.half().quantize(bits).cuda()` (cpm_kernels, in envs/chatglm-6b.txt);
- "int8" on other models: bitsandbytes LLM.int8 (`BitsAndBytesConfig(load_in_8bit=True)`);
- "nf4": bitsandbytes 4-bit NF4 (transformers 4.30+).
All of them need an NVIDIA GPU. `plan()` checks before any weight is read, and where the model's
environment cannot do the quant asked for (ChatGLM-6B's pinned transformers 4.27 has no 4-bit
bitsandbytes; bitsandbytes is not installed by default) it says in one line which it can do.
Also the small loading helpers (config values, the old-remote-code warning).
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

BNB_PIN = "bitsandbytes==0.50.2"


def config_value(folder: str, key: str):
    try:
        return json.loads((Path(folder) / "config.json").read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError, AttributeError):
        return None


def own_quantize(spec, folder: str) -> bool:
    """True when the model's own code (trust_remote_code) defines quantize(self, bits, ...)."""
    if not spec.trust_remote_code:
        return False
    files = {str(v).split(".")[0] for v in (config_value(folder, "auto_map") or {}).values() if isinstance(v, str)}
    for name in files:
        try:
            if re.search(r"def quantize\(self, bits", (Path(folder) / f"{name}.py").read_text(encoding="utf-8")):
                return True
        except OSError:
            continue
    return False


def _version(transformers) -> tuple[int, int]:
    major, minor = (int(x) for x in re.findall(r"\d+", transformers.__version__)[:2])
    return major, minor


def _has_bitsandbytes() -> bool:
    import importlib.util
    return importlib.util.find_spec("bitsandbytes") is not None


def possible(spec, folder: str, transformers) -> list[str]:
    """The quants this model can have in this environment (on a GPU)."""
    found = ["int8", "int4"] if own_quantize(spec, folder) else []
    if _has_bitsandbytes():
        found += [] if "int8" in found else ["int8"]
        found += ["nf4"] if _version(transformers) >= (4, 30) else []
    return found


def plan(spec, folder: str, transformers, device: str, model_kwargs: dict) -> int:
    """Checks models.toml's quant and fills from_pretrained's arguments for it; returns the bits
    for the model's own quantize() (0: none). Raises RuntimeError with one line when it cannot be."""
    quant = getattr(spec, "quant", None)
    if not quant:
        return 0
    own = own_quantize(spec, folder)
    can = possible(spec, folder, transformers)
    if quant == "int4" and not own:
        raise RuntimeError("quant = \"int4\" is the model's own quantize(4), which this model's code does not "
                           "have; for 4 bits use quant = \"nf4\" (bitsandbytes)")
    if quant == "nf4" and _version(transformers) < (4, 30):
        raise RuntimeError(f"quant = \"nf4\" needs bitsandbytes 4-bit with transformers 4.30 or newer; this "
                           f"environment ({sys.prefix}, transformers {transformers.__version__}) can do: "
                           f"{', '.join(q for q in can if q != 'nf4') or 'none (remove quant)'}")
    if device != "cuda":
        how = f"the model's own quantize({quant[3:]}), cpm_kernels" if own and quant != "nf4" else "bitsandbytes"
        raise RuntimeError(f"quant = \"{quant}\" ({how}) needs an NVIDIA GPU and none is visible; "
                           "remove quant to run in fp32 on the CPU")
    if quant not in can:  # bitsandbytes is missing
        raise RuntimeError(f"quant = \"{quant}\" needs bitsandbytes, which is not installed by default: "
                           f"{Path(sys.prefix) / 'bin' / 'pip'} install {BNB_PIN}")
    if own and quant != "nf4":
        import torch
        model_kwargs["torch_dtype" if "torch_dtype" in model_kwargs else "dtype"] = torch.float16
        return int(quant[3:])
    dtype = model_kwargs.get("dtype", model_kwargs.get("torch_dtype"))
    if quant == "nf4":
        config = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                 bnb_4bit_compute_dtype=dtype)
    else:
        config = transformers.BitsAndBytesConfig(load_in_8bit=True)
    model_kwargs.update(quantization_config=config, device_map={"": 0})
    return 0


def warn_old_remote_code(spec, folder: str, installed: str) -> None:
    """Remote code saved with transformers 4 that runs under 5: say so before it answers."""
    if not spec.trust_remote_code:
        return
    saved = config_value(folder, "transformers_version") or ""
    major = lambda version: int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0  # noqa: E731
    if saved and major(saved) < major(installed):
        print(f"warning: model '{spec.name}': its code was written for transformers {saved}, this is "
              f"{installed}; if it fails or its answers look wrong, give it `requirements` (see envs/)",
              file=sys.stderr)
