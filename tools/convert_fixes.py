"""llama.cpp's convert_hf_to_gguf.py, run with fixes for its known bugs applied in memory.

    python tools/convert_fixes.py CONVERTER_DIR/convert_hf_to_gguf.py MODEL_DIR --outfile F --outtype f16

quantize.py runs the converter of the installed llama-cpp-python's own llama.cpp version through
this file. Each fix checks that the bug is there (the converter's source still has the faulty
line), so a converter that has it fixed runs as it is; the files on disk are never edited.

Fixed here:
- Baichuan (BaiChuanForCausalLM, Baichuan-7B; llama-cpp-python 0.3.36): `modify_tensors` hands
  every tensor but W_pack back to itself instead of to its base class, so converting recurses
  until RecursionError. Fix: the base class maps those tensors, as before the converter was split
  into modules.
Not handled: bugs of other architectures (add a fix here when one is found).
"""
from __future__ import annotations

import inspect
import os
import runpy
import sys
from pathlib import Path


def fix_baichuan() -> bool:
    try:
        from conversion import baichuan
    except ImportError:  # a converter without that module: nothing to fix
        return False
    cls = baichuan.BaichuanModel
    buggy = "yield from self.modify_tensors(data_torch, self.map_tensor_name(name), bid)"
    if buggy not in inspect.getsource(cls.modify_tensors):
        return False
    original = cls.modify_tensors

    def modify_tensors(self, data_torch, name, bid):
        if bid is not None and name == f"model.layers.{bid}.self_attn.W_pack.weight":
            yield from original(self, data_torch, name, bid)  # its own unpacking of q, k, v
        else:
            yield from super(cls, self).modify_tensors(data_torch, name, bid)

    cls.modify_tensors = modify_tensors
    return True


def main() -> None:
    script = Path(sys.argv[1]).resolve()
    # What the script itself does first: its own folder and gguf-py on the path.
    sys.path.insert(0, str(script.parent))
    if "NO_LOCAL_GGUF" not in os.environ:
        sys.path.insert(1, str(script.parent / "gguf-py"))
    if fix_baichuan():
        print("convert_fixes: Baichuan's modify_tensors recursion fixed", file=sys.stderr)
    sys.argv = [str(script), *sys.argv[2:]]
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
