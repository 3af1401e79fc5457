"""An on-disk cache of search results and fetched pages: one JSON file per key, expired by age.

Files are plain JSON (``key``, ``kind``, ``created``, ``value``) so the cache can be inspected by hand too;
writes go through a temporary file and an atomic rename, so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class CacheEntry:
    """One cached item as `agentd web cache list` shows it."""

    key: str
    kind: str
    created: float
    age_s: float
    size: int
    expired: bool
    path: Path

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "kind": self.kind,
            "created": self.created,
            "age_s": round(self.age_s, 1),
            "size": self.size,
            "expired": self.expired,
            "path": str(self.path),
        }


class WebCache:
    """Get and put JSON values by key; ``ttl_s = 0`` switches the cache off."""

    def __init__(self, folder: Path, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        self.folder = Path(folder)
        self.ttl_s = ttl_s
        self.clock = clock

    def path_for(self, key: str) -> Path:
        return self.folder / (hashlib.sha256(key.encode("utf-8")).hexdigest()[:40] + ".json")

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached value, or None when missing, expired, unreadable or the cache is off."""
        if self.ttl_s <= 0:
            return None
        record = _read(self.path_for(key))
        if record is None or record.get("key") != key:
            return None
        if self.clock() - float(record.get("created", 0)) > self.ttl_s:
            return None
        value = record.get("value")
        return value if isinstance(value, dict) else None

    def put(self, key: str, kind: str, value: dict[str, Any]) -> None:
        """Store a value; a cache that cannot be written is skipped silently (it is only a cache)."""
        if self.ttl_s <= 0:
            return
        record = {"key": key, "kind": kind, "created": self.clock(), "value": value}
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".json")
        except OSError:
            return
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(record, handle, ensure_ascii=False)
            os.replace(tmp, self.path_for(key))
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def cache_list(
    folder: Path, ttl_s: float = 3600.0, clock: Callable[[], float] = time.time
) -> list[CacheEntry]:
    """Every entry in the cache folder, newest first; unreadable files are listed with kind ``corrupt``."""
    folder = Path(folder)
    now = clock()
    entries = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if path.name.startswith(".tmp-"):
            continue
        record = _read(path) or {}
        created = float(record.get("created", 0) or 0)
        entries.append(
            CacheEntry(
                key=str(record.get("key", "?")),
                kind=str(record.get("kind", "corrupt")) if record else "corrupt",
                created=created,
                age_s=max(0.0, now - created),
                size=path.stat().st_size,
                expired=(not record) or now - created > ttl_s,
                path=path,
            )
        )
    return sorted(entries, key=lambda e: e.created, reverse=True)


def cache_clear(
    folder: Path, expired_only: bool = False, ttl_s: float = 3600.0, clock: Callable[[], float] = time.time
) -> int:
    """Delete cache entries (only expired or unreadable ones with ``expired_only``); returns how many."""
    removed = 0
    for entry in cache_list(folder, ttl_s, clock):
        if expired_only and not entry.expired:
            continue
        with contextlib.suppress(FileNotFoundError):
            entry.path.unlink()
            removed += 1
    return removed
