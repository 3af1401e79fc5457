"""Read a GGUF file's header, metadata and tensor table without loading its weights.

A GGUF file is: magic ``GGUF``, a version, the tensor and key/value counts, the key/value metadata, the tensor
table (name, shape, type, offset), then the aligned tensor data. Reading up to the tensor table is enough to know
the architecture, the parameter count, the quantization, the trained context and the chat template, and to tell
whether the data section is all there (a partial download is the common broken file).
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

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
        return FILE_TYPES.get(_int(file_type), f"type {file_type}")

    @property
    def context_length(self) -> int:
        return _int(self.arch_key("context_length"))

    @property
    def chat_template(self) -> str:
        return str(self.metadata.get("tokenizer.chat_template", "") or "")

    @property
    def params_b(self) -> float:
        """Parameters in billions (0.135 for SmolLM2-135M)."""
        return self.parameters / 1e9

    def kv_bytes_per_token(self) -> int:
        """The f16 K and V cache llama.cpp allocates per context token (0 when the metadata lacks the shape)."""
        layers = _int(self.arch_key("block_count"))
        heads = _int(self.arch_key("attention.head_count"))
        kv_heads = _int(self.arch_key("attention.head_count_kv")) or heads  # a per-layer list: not read here
        key_len = _int(self.arch_key("attention.key_length"))
        value_len = _int(self.arch_key("attention.value_length"))
        if not (key_len and value_len):
            embedding = _int(self.arch_key("embedding_length"))
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


def _int(value: Any) -> int:
    """A metadata number as an int; 0 when the file stores something else there."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class _Reader:
    """Walks the header in a memory map: token lists have 100k+ strings, so no read call per item."""

    def __init__(self, buf: Any, size: int) -> None:
        self.buf, self.size, self.pos = buf, size, 0

    def _need(self, n: int) -> None:
        if self.pos + n > self.size:
            raise GGUFError(
                f"truncated: the file ends inside its header (it needs byte {self.pos + n}, the file has "
                f"{self.size}; a partial download?)"
            )

    def take(self, n: int) -> bytes:
        self._need(n)
        data = self.buf[self.pos : self.pos + n]
        self.pos += n
        return bytes(data)

    def skip(self, n: int) -> None:
        self._need(n)
        self.pos += n

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        self._need(size)
        value = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += size
        return value

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
            buf, pos, size, unpack_from = self.buf, self.pos, self.size, struct.unpack_from
            for _ in range(n):
                if pos + 8 > size:
                    pos = size + 1  # cut inside the list
                    break
                pos += 8 + unpack_from("<Q", buf, pos)[0]
            self.pos = min(pos, size + 1)  # past the end: _need reports the truncation
            self._need(0)
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
    if size < len(MAGIC):
        raise GGUFError(f"not a GGUF file (it has {size} bytes)")
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _parse(_Reader(buf, size), path)
    except (OSError, ValueError) as exc:  # ValueError: mmap of a file that shrank to nothing
        raise GGUFError(f"cannot read it: {getattr(exc, 'strerror', None) or exc}") from None
    except RecursionError:
        raise GGUFError("corrupt header: arrays nested without end") from None


def _parse(r: _Reader, path: str) -> GGUFInfo:
    head = bytes(r.buf[:4])
    r.pos = 4
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
    alignment = _int(metadata.get("general.alignment")) or 32
    data_start = -(-r.pos // alignment) * alignment
    expected = data_start + data_end if known else None
    if expected is not None and r.size < expected:
        raise GGUFError(
            f"truncated: {r.size} bytes of the {expected} its tensor table needs (a partial download?)"
        )
    return GGUFInfo(path, version, metadata, parameters, r.size, expected, types)
