"""A GGUF file's metadata and tensor table, read without loading the model or its vocabulary.

`read_gguf(path)` returns (metadata, tensors): the key/value pairs as Python values, and each
tensor's name, shape, ggml type, size in bytes and absolute data offset. Arrays of strings (the
tokenizer's tokens and merges, hundreds of thousands of them) are stepped over and kept only as
their length (`StringArray`): `gguf.GGUFReader` builds a numpy view of every element, which takes
seconds for a 135M model and about a minute for a Llama 3 vocabulary, and the plan and the GPU
sizing need none of them. Byte sizes per ggml type come from the `gguf` package's table.
Handles GGUF versions 2 and 3, either byte order; raises ValueError on a file that is not a
GGUF or is cut inside its header.
"""
from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

# GGUF value types -> struct format (8: string, 9: array, handled apart).
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class StringArray:
    """An array of strings left unread: only how many there are."""
    count: int

    def __len__(self) -> int:
        return self.count


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    n_bytes: int
    data_offset: int  # from the start of the file


class _Cursor:
    def __init__(self, buf, order: str):
        self.buf, self.order, self.pos = buf, order, 0

    def take(self, fmt: str, count: int = 1):
        size = struct.calcsize(fmt) * count
        if self.pos + size > len(self.buf):
            raise ValueError("the GGUF header is cut short")
        values = struct.unpack_from(f"{self.order}{count}{fmt}", self.buf, self.pos)
        self.pos += size
        return values[0] if count == 1 else values

    def many(self, fmt: str, count: int) -> tuple:
        return tuple(self.take(fmt, count)) if count != 1 else (self.take(fmt),)

    def string(self) -> str:
        n = self.take("Q")
        if self.pos + n > len(self.buf):
            raise ValueError("the GGUF header is cut short")
        text = bytes(self.buf[self.pos:self.pos + n]).decode("utf-8", errors="replace")
        self.pos += n
        return text

    def value(self, kind: int):
        if kind in _SCALARS:
            return self.take(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind != _ARRAY:
            raise ValueError(f"unknown GGUF value type {kind}")
        item, count = self.take("I"), self.take("Q")
        if item == _STRING:
            try:
                for _ in range(count):  # step over each: a length, then its bytes
                    self.pos += struct.unpack_from(f"{self.order}Q", self.buf, self.pos)[0] + 8
            except struct.error:
                raise ValueError("the GGUF header is cut short") from None
            if self.pos > len(self.buf):
                raise ValueError("the GGUF header is cut short")
            return StringArray(count)
        if item in _SCALARS:
            return list(self.many(_SCALARS[item], count))
        return [self.value(item) for _ in range(count)]  # arrays of arrays


def read_gguf(path: str | Path) -> tuple[dict, list[Tensor]]:
    from gguf.constants import GGML_QUANT_SIZES

    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            order = "<" if struct.unpack_from("<I", buf, 4)[0] < 0x10000 else ">"
            cur = _Cursor(buf, order)
            cur.pos = 4
            version = cur.take("I")
            if version < 2:
                raise ValueError(f"{path}: GGUF version {version} is too old (2 or later)")
            n_tensors, n_kv = cur.take("Q"), cur.take("Q")
            meta = {}
            for _ in range(n_kv):
                key = cur.string()
                meta[key] = cur.value(cur.take("I"))
            infos = []
            for _ in range(n_tensors):
                name = cur.string()
                shape = cur.many("Q", cur.take("I"))
                infos.append((name, shape, cur.take("I"), cur.take("Q")))
            align = int(meta.get("general.alignment", 32))
            start = cur.pos + (-cur.pos % align)
    tensors = []
    for name, shape, kind, offset in infos:
        if kind not in GGML_QUANT_SIZES:
            raise ValueError(f"{path}: tensor {name} has an unknown ggml type {kind}")
        block, type_size = GGML_QUANT_SIZES[kind]
        elements = 1
        for dim in shape:
            elements *= dim
        tensors.append(Tensor(name, shape, kind, elements * type_size // block, start + offset))
    return meta, tensors
