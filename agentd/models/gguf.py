"""Read a GGUF file's header, metadata and tensor table without loading its weights.

A GGUF file is: magic ``GGUF``, a version, the tensor and key/value counts, the key/value metadata, the tensor
table (name, shape, type, offset), then the aligned tensor data. Reading up to the tensor table is enough to know
the architecture, the parameter count, the quantization, the trained context and the chat template, and to tell
whether the data section is all there (a partial download is the common broken file).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

MAGIC = b"GGUF"
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
MAX_KEYS = 1_000_000  # far above any real file: a bigger count means the header is garbage
MAX_COUNT = 1 << 40  # no length or count in a real file comes near this; a cut file fails on reading instead
KEEP_ARRAY = 64  # arrays longer than this (token lists) are skipped, only their length is kept

# ggml tensor types: (elements per block, bytes per block); from ggml.h / gguf-py's GGML_QUANT_SIZES.
TENSOR_TYPES = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82),
    23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2),
    34: (256, 54), 35: (256, 66), 39: (32, 17),
}
# general.file_type: llama.cpp's LLAMA_FTYPE_MOSTLY_* names, i.e. the quantization people know a file by.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
    12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
    19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL",
    26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0",
    37: "TQ2_0", 38: "MXFP4_MOE",
}


class GGUFError(Exception):
    """The file is not a readable, complete GGUF; the message says why."""


@dataclass
class GGUFInfo:
    """What a GGUF file says about itself."""

    path: str
    version: int
    metadata: dict[str, Any]  # scalars and short arrays; long arrays as {"array_of": n}
    parameters: int  # elements over all tensors
    file_size: int
    expected_size: int | None  # None when a tensor type is unknown to this reader
    tensor_types: dict[str, int] = field(default_factory=dict)  # ggml type id -> tensor count

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    def arch_key(self, name: str, default: Any = None) -> Any:
        return self.metadata.get(f"{self.architecture}.{name}", default)

    @property
    def name(self) -> str:
        return str(self.metadata.get("general.name", "") or Path(self.path).stem)

    @property
    def quantization(self) -> str:
        file_type = self.metadata.get("general.file_type")
        if file_type is None:
            return ""
        return FILE_TYPES.get(int(file_type), f"type {file_type}")

    @property
    def context_length(self) -> int:
        return int(self.arch_key("context_length", 0) or 0)

    @property
    def chat_template(self) -> str:
        return str(self.metadata.get("tokenizer.chat_template", "") or "")

    @property
    def params_b(self) -> float:
        """Parameters in billions (0.135 for SmolLM2-135M)."""
        return self.parameters / 1e9

    def kv_bytes_per_token(self) -> int:
        """The f16 K and V cache llama.cpp allocates per context token (0 when the metadata lacks the shape)."""
        layers = int(self.arch_key("block_count", 0) or 0)
        heads = int(self.arch_key("attention.head_count", 0) or 0)
        kv_heads = int(self.arch_key("attention.head_count_kv", heads) or heads)
        key_len = int(self.arch_key("attention.key_length", 0) or 0)
        value_len = int(self.arch_key("attention.value_length", 0) or 0)
        if not (key_len and value_len):
            embedding = int(self.arch_key("embedding_length", 0) or 0)
            key_len = value_len = embedding // heads if heads else 0
        return layers * kv_heads * (key_len + value_len) * 2

    def summary(self) -> dict[str, Any]:
        """The facts `agentd models list/info` show."""
        return {
            "architecture": self.architecture,
            "name": self.name,
            "parameters": self.parameters,
            "size_label": self.metadata.get("general.size_label", ""),
            "quantization": self.quantization,
            "context_length": self.context_length,
            "chat_template": bool(self.chat_template),
            "file_size": self.file_size,
            "gguf_version": self.version,
        }


class _Reader:
    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f, self.size = f, size

    def take(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) < n:
            raise GGUFError(
                f"truncated: the file ends inside its header at byte {self.f.tell()} of {self.size} "
                "(a partial download?)"
            )
        return data

    def skip(self, n: int) -> None:
        if self.f.tell() + n > self.size:
            raise GGUFError(f"truncated: the header needs byte {self.f.tell() + n} but the file has {self.size}")
        self.f.seek(n, os.SEEK_CUR)

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def count(self, what: str) -> int:
        n = self.unpack("<Q")
        if n > MAX_COUNT:
            raise GGUFError(f"corrupt header: a {what} of {n}")
        return n

    def string(self) -> str:
        return self.take(self.count("string length")).decode("utf-8", errors="replace")

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.unpack(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item_kind, n = self.unpack("<I"), self.count("array length")
            if n > KEEP_ARRAY:
                self.skip_values(item_kind, n)
                return {"array_of": n}
            return [self.value(item_kind) for _ in range(n)]
        raise GGUFError(f"corrupt header: unknown value type {kind}")

    def skip_values(self, kind: int, n: int) -> None:
        if kind in _SCALARS:
            self.skip(struct.calcsize(_SCALARS[kind]) * n)
        elif kind == _STRING:
            for _ in range(n):
                self.skip(self.count("string length"))
        else:
            for _ in range(n):
                self.value(kind)


def read_gguf(path: str | Path) -> GGUFInfo:
    """The file's metadata and tensor table; GGUFError names what is wrong with a broken or partial file."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as exc:
        raise GGUFError(f"cannot read it: {exc.strerror or exc}") from None
    return _read_cached(str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=256)
def _read_cached(path: str, size: int, mtime_ns: int) -> GGUFInfo:
    try:
        with open(path, "rb") as f:
            return _parse(_Reader(f, size), path)
    except OSError as exc:
        raise GGUFError(f"cannot read it: {exc.strerror or exc}") from None


def _parse(r: _Reader, path: str) -> GGUFInfo:
    head = r.f.read(4)
    if head != MAGIC:
        raise GGUFError(f"not a GGUF file (it starts with {head!r}, not {MAGIC!r})")
    version = r.unpack("<I")
    if version not in (2, 3):
        raise GGUFError(f"GGUF version {version} is not supported (2 and 3 are)")
    n_tensors, n_keys = r.count("tensor"), r.count("key")
    if n_keys > MAX_KEYS:
        raise GGUFError(f"corrupt header: {n_keys} metadata keys")
    metadata = {}
    for _ in range(n_keys):
        key = r.string()
        metadata[key] = r.value(r.unpack("<I"))
    parameters, data_end, types = 0, 0, dict[str, int]()
    known = True
    for _ in range(n_tensors):
        r.string()  # tensor name
        dims = [r.unpack("<Q") for _ in range(r.unpack("<I"))]
        kind, offset = r.unpack("<I"), r.unpack("<Q")
        elements = 1
        for d in dims:
            elements *= d
        parameters += elements
        types[str(kind)] = types.get(str(kind), 0) + 1
        if kind in TENSOR_TYPES:
            per_block, block_bytes = TENSOR_TYPES[kind]
            data_end = max(data_end, offset + elements // per_block * block_bytes)
        else:
            known = False
    alignment = int(metadata.get("general.alignment", 32) or 32)
    data_start = -(-r.f.tell() // alignment) * alignment
    expected = data_start + data_end if known else None
    if expected is not None and r.size < expected:
        raise GGUFError(
            f"truncated: {r.size} bytes of the {expected} its tensor table needs (a partial download?)"
        )
    return GGUFInfo(path, version, metadata, parameters, r.size, expected, types)
