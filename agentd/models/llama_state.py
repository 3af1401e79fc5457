"""Warm starts for in-process llama.cpp: the KV state of the prompt's constant start, kept per model and prefix.

Every prompt of a run starts with the same head: the system message and the worked examples (about 1.7k tokens
with the bundled model's default tools). llama-cpp-python reuses a matching prefix of its KV cache within one
process, but each `agentd goal` without a daemon is a new process that evaluated the head again: more than half
of a short goal's wall time on this machine. ``PrefixCache.warm`` makes the head's state outlive the process:

- **hot**: the context already holds the head (a daemon, or the second call of a run): nothing to do;
- **memory**: another head was evaluated since (a different tool set): its state is copied back from memory;
- **disk**: a state file in ``AGENTD_HOME/cache/llama-state`` for this model file and head: loaded;
- **built**: none of these: the head is evaluated alone (the call would have done it anyway), then saved.

A state file is named by a digest of everything its contents depend on (llama-cpp-python's version, the model
file's path, size and mtime, the context size, the head's tokens), so a changed model or prompt never meets a
stale state; it is owner-only, written to a temporary name and renamed, checked by length and CRC before use,
and the directory keeps only the newest few. The cache is an optimisation: any failure (a full disk, a corrupt
file, a llama.cpp refusal) is logged and the call goes on cold.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import struct
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..home import keep_newest, read_checked, write_checked

log = logging.getLogger(__name__)

MAGIC = b"agentd-llama-state\x00v1\n"
KEEP_FILES = 6  # heads differ per tool set; a few cover a user's usual ones (~40 MB each for the bundled model)
KEEP_IN_MEMORY = 2


class PrefixStore:
    """State files and an in-memory LRU of them, by key; pure Python (no llama.cpp), so it is unit-tested alone."""

    def __init__(self, directory: Path | None, keep_files: int = KEEP_FILES, keep_in_memory: int = KEEP_IN_MEMORY):
        self.directory = directory
        self.keep_files = keep_files
        self.keep_in_memory = keep_in_memory
        self._memory: OrderedDict[str, tuple[list[int], bytearray]] = OrderedDict()
        self._warned = False

    def get(self, key: str) -> tuple[str, list[int], bytearray] | None:
        """(where it came from, tokens, state) for ``key``, or None."""
        if key in self._memory:
            self._memory.move_to_end(key)
            tokens, state = self._memory[key]
            return "memory", tokens, state
        found = self._read(key)
        if found is None:
            return None
        self._remember(key, *found)
        return "disk", *found

    def put(self, key: str, tokens: Sequence[int], state: bytearray) -> None:
        """Keep a state in memory and, when a directory is set, on disk (never raises)."""
        self._remember(key, list(tokens), state)
        if self.directory is not None:
            self._write(key, tokens, state)

    def path(self, key: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{key}.kv"

    def _remember(self, key: str, tokens: list[int], state: bytearray) -> None:
        self._memory[key] = (tokens, state)
        self._memory.move_to_end(key)
        while len(self._memory) > self.keep_in_memory:
            self._memory.popitem(last=False)

    def _read(self, key: str) -> tuple[list[int], bytearray] | None:
        path = self.path(key)
        if path is None:
            return None

        def tokens_and_state(f: Any, header: dict[str, Any]) -> tuple[list[int], bytearray]:
            packed = f.read(4 * header["n_tokens"])
            state = bytearray(header["state_bytes"])
            if len(packed) != 4 * header["n_tokens"] or f.readinto(state) != len(state) or f.read(1):
                raise ValueError("truncated or too long")
            if zlib.crc32(state) != header["crc32"] or zlib.crc32(packed) != header["tokens_crc32"]:
                raise ValueError("checksum mismatch")
            return list(struct.unpack(f"<{header['n_tokens']}i", packed)), state

        return read_checked(path, MAGIC, key, tokens_and_state, "llama.cpp state file")

    def _write(self, key: str, tokens: Sequence[int], state: bytearray) -> None:
        path = self.path(key)
        assert path is not None and self.directory is not None
        packed = struct.pack(f"<{len(tokens)}i", *tokens)
        header = {
            "key": key, "n_tokens": len(tokens), "state_bytes": len(state),
            "crc32": zlib.crc32(state), "tokens_crc32": zlib.crc32(packed),
        }
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_checked(path, MAGIC, header, (packed, state))
        except OSError as exc:
            if not self._warned:  # a full or read-only disk: say it once per process, then go on cold
                self._warned = True
                log.warning("cannot save llama.cpp's prompt state in %s (%s); goals start cold until it can",
                            self.directory, exc.strerror or exc)
            return
        keep_newest(self.directory, "*.kv", self.keep_files)


class PrefixCache:
    """Puts a head's KV state into a loaded ``llama_cpp.Llama`` before a call (``warm``); see the module doc."""

    def __init__(self, llama: Any, model_path: Path) -> None:
        self.llama = llama
        self.store = PrefixStore(None)
        self._identity = _identity(llama, model_path)
        self._tokens: dict[tuple[tuple[str, str], ...], list[int] | None] = {}
        self.counts = {"hot": 0, "memory": 0, "disk": 0, "built": 0, "off": 0}

    def warm(self, head: Sequence[tuple[str, str]], cache_dir: Path | None = None) -> str:
        """Make the context start with ``head``'s state; returns how (hot, memory, disk, built or off).
        States are kept on disk in ``cache_dir``/llama-state (memory only without one)."""
        self.store.directory = cache_dir / "llama-state" if cache_dir is not None else None
        how = self._warm(tuple(head))
        self.counts[how] += 1
        return how

    def _warm(self, head: tuple[tuple[str, str], ...]) -> str:
        tokens = self.head_tokens(head)
        if not tokens:
            return "off"
        llama = self.llama
        n = len(tokens)
        if llama.n_tokens >= n and list(llama.input_ids[:n]) == tokens:
            return "hot"
        key = hashlib.sha256(self._identity + struct.pack(f"<{n}i", *tokens)).hexdigest()[:32]
        found = self.store.get(key)
        try:
            if found is not None and found[1] == tokens and self._restore(tokens, found[2]):
                return found[0]
            llama.reset()
            llama.eval(tokens)
            self.store.put(key, tokens, self._save())
            return "built"
        except Exception:  # an optimisation must never fail the call: start it cold
            log.warning("llama.cpp prompt-state warm start failed; this call starts cold", exc_info=True)
            llama.reset()
            return "off"

    def head_tokens(self, head: tuple[tuple[str, str], ...]) -> list[int]:
        """The tokens every prompt starting with ``head`` starts with, as this model's chat format renders it:
        the common start of the head followed by two different user turns. Empty when the format is unknown."""
        if head not in self._tokens:
            try:
                one = self._prompt_tokens([*head, ("user", "A")])
                two = self._prompt_tokens([*head, ("user", "Z")])
                common = 0
                while common < min(len(one), len(two)) and one[common] == two[common]:
                    common += 1
                self._tokens[head] = one[:common]
            except Exception:
                log.info("cannot render the prompt head through this model's chat format", exc_info=True)
                self._tokens[head] = None
            if len(self._tokens) > 16:
                self._tokens.pop(next(iter(self._tokens)))
        return self._tokens[head] or []

    def _prompt_tokens(self, messages: list[tuple[str, str]]) -> list[int]:
        """The prompt tokens llama-cpp-python's chat handler builds for ``messages``, without generating."""
        from llama_cpp import llama_chat_format

        llama = self.llama
        handler = (
            llama.chat_handler
            or llama._chat_handlers.get(llama.chat_format)
            or llama_chat_format.get_chat_completion_handler(llama.chat_format)
        )
        try:
            handler(llama=_Capture(llama), messages=[{"role": r, "content": t} for r, t in messages])
        except _Captured as captured:
            return list(captured.tokens)
        raise RuntimeError("the chat handler did not ask for a completion")

    def _restore(self, tokens: list[int], state: bytearray) -> bool:
        import llama_cpp

        llama = self.llama
        llama.reset()
        llama._ctx.kv_cache_clear()
        buffer = (ctypes.c_uint8 * len(state)).from_buffer(state)
        if not llama_cpp.llama_state_seq_set_data(llama._ctx.ctx, buffer, len(state), 0):
            log.warning("llama.cpp refused a saved prompt state; evaluating the prompt head again")
            llama._ctx.kv_cache_clear()
            return False
        llama.input_ids[: len(tokens)] = tokens
        llama.n_tokens = len(tokens)
        llama._requires_eval = True  # the logits are not restored: the next call decodes at least one token
        return True

    def _save(self) -> bytearray:
        import llama_cpp

        ctx = self.llama._ctx.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, 0)
        state = bytearray(size)
        written = llama_cpp.llama_state_seq_get_data(ctx, (ctypes.c_uint8 * size).from_buffer(state), size, 0)
        if not written or written > size:
            raise RuntimeError(f"llama.cpp copied {written} of {size} state bytes")
        return state[:written] if written < size else state


class _Captured(Exception):
    def __init__(self, tokens: Sequence[int]) -> None:
        super().__init__("prompt captured")
        self.tokens = tokens


class _Capture:
    """Stands in for the Llama in a chat handler: renders and tokenizes the real way, stops at the completion."""

    def __init__(self, llama: Any) -> None:
        self._llama = llama

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llama, name)

    def create_completion(self, prompt: Sequence[int], **kwargs: Any) -> Any:
        raise _Captured(prompt)


def _identity(llama: Any, model_path: Path) -> bytes:
    """What a saved state depends on besides the tokens: the library, the model file, the context's shape."""
    import llama_cpp

    try:
        stat = model_path.stat()
        file = f"{model_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    except OSError:
        file = str(model_path)
    params = getattr(llama, "context_params", None)
    shape = {name: getattr(params, name, None) for name in ("n_ctx", "type_k", "type_v", "flash_attn", "n_seq_max")}
    return json.dumps([llama_cpp.__version__, file, llama.n_ctx(), str(shape)]).encode()
