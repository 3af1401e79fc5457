"""What memory's modules share: the kinds and scopes of memories, memory's errors, and the records a search and an
ingest give back."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

from agentd.errors import AgentdError

KINDS = ("document", "episode", "note")
GLOBAL = "global"


class MemoryStoreError(AgentdError):
    """Memory cannot be opened, read or written; the message says what to do."""


class EmbeddingMismatch(MemoryStoreError):
    """A collection was embedded with another model than the configured one."""


@dataclass
class Hit:
    """One memory found by a search (or listed), with where it came from."""

    id: str
    kind: str
    text: str
    score: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def provenance(self) -> str:
        m = self.meta
        if self.kind == "document":
            where = f"{m.get('source', '?')}#{m.get('chunk', 0)}"
            if m.get("page"):
                where += f" p.{m['page']}"
            return where + f" lines {m.get('start_line', '?')}-{m.get('end_line', '?')}"
        date = time.strftime("%Y-%m-%d", time.localtime(m.get("created_at", 0)))
        return f"{self.kind} {date}" + (f" run {m['run_id']}" if m.get("run_id") else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "score": round(self.score, 4),
            "provenance": self.provenance,
            "text": self.text,
            "meta": self.meta,
        }


@dataclass
class IngestReport:
    """What an ingest did, file by file."""

    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    chunks: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "replaced": self.replaced,
            "unchanged": self.unchanged,
            "skipped": [list(s) for s in self.skipped],
            "chunks": self.chunks,
            "seconds": round(self.seconds, 3),
        }


def visible_scopes(run_id: str | None = None, schedule: str | None = None) -> list[str]:
    """What a run may recall: global memories, its schedule's, and its own."""
    scopes = [GLOBAL]
    if schedule:
        scopes.append(f"schedule:{schedule}")
    if run_id:
        scopes.append(f"run:{run_id}")
    return scopes


def digest(*parts: str) -> str:
    """A stable id for ``parts`` (a note's text in its scope, a file's path in its scope)."""
    return hashlib.sha1("\0".join(parts).encode()).hexdigest()
