"""Long-term memory: documents, notes and run episodes in Chroma, searched by meaning.

Layout (why): Chroma's ``where`` filters cost 25-100x an unfiltered query at 100k items (measured: 2 ms vs
50-200 ms), so the common searches never filter. Each kind lives in its own collection for the global scope
(``<prefix>-documents``, ``-episodes``, ``-notes``); everything scoped to a schedule or a run shares one small
``<prefix>-scoped`` collection, where a filter is cheap because it is small.

Documents are chunked with overlap and written so that a file counts as stored only once all of it is
(agentd_memory.documents); what the modules share is in agentd_memory.records.

Each collection records the embedding model that made it; opening it with another model raises
EmbeddingMismatch, and ``reindex`` re-embeds the stored texts with the configured one. The journal, not this,
is the record of what happened: memory is for recall only.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentd.errors import ConfigError

from . import documents
from .documents import embed_text
from .embeddings import Embedder, EmbeddingError, EmbeddingSettings, make_embedder
from .files import chunk_text, expand_paths, read_document
from .records import (
    GLOBAL,
    KINDS,
    EmbeddingMismatch,
    Hit,
    IngestReport,
    MemoryStoreError,
    digest,
    visible_scopes,
)

__all__ = [  # what callers import from here; the records and the document helpers live beside it
    "GLOBAL", "KINDS", "EmbeddingMismatch", "Hit", "IngestReport", "Memory", "MemorySettings", "MemoryStoreError",
    "chunk_text", "close_memories", "embed_text", "expand_paths", "get_memory", "read_document", "shared_embedder",
    "visible_scopes",
]

log = logging.getLogger(__name__)


class MemorySettings(BaseModel):
    """The ``[plugins.memory]`` table (validated here, at the edge)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    backend: Literal["persistent", "http"] = "persistent"
    path: str = ""  # persistent: default AGENTD_HOME/memory
    host: str = "127.0.0.1"  # http: a `chroma run` server
    port: int = Field(8000, ge=1, le=65535)
    ssl: bool = False
    headers: dict[str, str] = Field(default_factory=dict)
    collection_prefix: str = Field("agentd", pattern=r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,60}$")
    embedding: dict[str, Any] = Field(default_factory=dict)  # see agentd_memory.embeddings.EmbeddingSettings
    chunk_chars: int = Field(800, ge=100)
    chunk_overlap: int = Field(120, ge=0)
    max_file_bytes: int = Field(5_000_000, ge=1)
    recall_k: int = Field(4, ge=0, le=50)  # memories added to the planning prompt
    # Cosine similarity a memory needs to enter the plan prompt. On benchmarks/memory_eval, 0.25 keeps 93% of
    # the memories that answer a question and lets in 0.8 unrelated ones per query (0.3: 85% and 0.3).
    # Similarity a memory needs to enter the plan prompt. Measured: other tasks done with the same tools score
    # about 0.30 and only distract small models; the same or a closely related goal scores 0.7+.
    min_score: float = Field(0.40, ge=-1, le=1)
    snippet_chars: int = Field(360, ge=60)
    episodes: bool = True  # write an episode at the end of every run

    @classmethod
    def from_config(cls, config: Any) -> MemorySettings:
        try:
            return cls.model_validate(config.plugin_settings("memory"))
        except ValidationError as exc:
            problems = "; ".join(
                f"plugins.memory.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(f"invalid memory settings: {problems}") from None


class Memory:
    """Long-term memory over one Chroma database; safe to share between threads."""

    def __init__(
        self, settings: MemorySettings, home: Path, embedder: Embedder | None = None, check: bool = True
    ):
        self.settings = settings
        self.home = Path(home)
        try:
            self.embedder = embedder or shared_embedder(settings.embedding, self.home / "cache")
        except EmbeddingError as exc:
            raise MemoryStoreError(str(exc)) from None
        self.check = check
        self._client: Any = None
        self._collections: dict[str, Any] = {}
        self._lock = threading.RLock()

    @classmethod
    def from_config(cls, config: Any, check: bool = True) -> Memory:
        return cls(MemorySettings.from_config(config), config.home, check=check)

    # -- Chroma plumbing ------------------------------------------------------------------------------
    @property
    def path(self) -> Path:
        return Path(self.settings.path).expanduser() if self.settings.path else self.home / "memory"

    @property
    def location(self) -> str:
        s = self.settings
        return f"http{'s' if s.ssl else ''}://{s.host}:{s.port}" if s.backend == "http" else str(self.path)

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def close(self) -> None:
        """Release the Chroma client (its SQLite handles and threads); the next use opens it again."""
        with self._lock:
            client, self._client = self._client, None
            self._collections.clear()
        if client is not None and hasattr(client, "close"):
            client.close()

    def _connect(self) -> Any:
        import chromadb
        from chromadb.config import Settings

        chroma_settings = Settings(anonymized_telemetry=False)
        s = self.settings
        try:
            if s.backend == "http":
                return chromadb.HttpClient(
                    host=s.host, port=s.port, ssl=s.ssl, headers=s.headers or None, settings=chroma_settings
                )
            self.path.mkdir(parents=True, exist_ok=True)
            return chromadb.PersistentClient(path=str(self.path), settings=chroma_settings)
        except Exception as exc:  # chromadb raises ValueError, ConnectionError, httpx errors, ...
            hint = (
                (
                    f"start one with: chroma run --path DIR --host {s.host} --port {s.port}, or set "
                    'plugins.memory.backend = "persistent"'
                )
                if s.backend == "http"
                else "check the folder"
            )
            raise MemoryStoreError(f"cannot open Chroma at {self.location}: {exc}; {hint}") from None

    def collection_name(self, kind: str, scoped: bool = False) -> str:
        return f"{self.settings.collection_prefix}-{'scoped' if scoped else kind + 's'}"

    def _names(self) -> list[str]:
        return [self.collection_name(k) for k in KINDS] + [self.collection_name("", scoped=True)]

    def _collection(self, name: str) -> Any:
        """Open (creating if needed) a collection, checking it was embedded with our model."""
        with self._lock:
            if name in self._collections:
                return self._collections[name]
            model = self.embedder.model_id
            col = self.client().get_or_create_collection(
                name,
                embedding_function=None,
                configuration={"hnsw": {"space": "cosine"}},
                metadata={"agentd_embedding": model},
            )
            stored = (col.metadata or {}).get("agentd_embedding")
            if stored != model:
                if col.count() == 0:
                    col.modify(metadata={"agentd_embedding": model})
                elif self.check:
                    raise EmbeddingMismatch(
                        f"memory collection {name!r} at {self.location} was embedded with {stored!r}, but the "
                        f"configured embedding is {model!r}; run `agentd memory reindex` to re-embed it, or set "
                        "[plugins.memory.embedding] back to the model that made it"
                    )
            self._collections[name] = col
            return col

    def _target(self, kind: str, scope: str) -> Any:
        return self._collection(self.collection_name(kind, scoped=scope != GLOBAL))

    def _embed(self, texts: list[str]) -> list[Any]:
        try:
            return self.embedder(texts)
        except EmbeddingError as exc:
            raise MemoryStoreError(str(exc)) from None

    # -- writing ------------------------------------------------------------------------------------
    def remember(self, text: str, scope: str = GLOBAL, run_id: str | None = None) -> str:
        """Store a note; the same note in the same scope is stored once. Returns its id."""
        text = text.strip()
        if not text:
            raise MemoryStoreError("a note must not be empty")
        note_id = "note-" + digest(scope, text)[:16]
        meta = {
            "kind": "note",
            "scope": scope,
            "run_id": run_id or "",
            "created_at": time.time(),
        }
        self._target("note", scope).upsert(
            ids=[note_id], embeddings=self._embed([text]), documents=[text], metadatas=[meta]
        )
        return note_id

    def add_episode(
        self,
        run_id: str,
        goal: str,
        plan: list[str],
        status: str,
        stop_reason: str = "",
        answer: str = "",
        lessons: list[str] | None = None,
        schedule: str | None = None,
        sources: list[str] | None = None,
    ) -> str:
        """Store what a run tried and learnt: goal, plan, outcome, lessons, and the documents it was given
        (``sources``, so that forgetting a document also forgets the runs that quoted it). Returns its id."""
        lessons = lessons or []
        parts = [f"Goal: {goal}", f"Outcome: {status}" + (f" ({stop_reason})" if stop_reason else "")]
        if answer:
            parts.append(f"Answer: {answer}")
        if plan:
            parts.append("Plan: " + "; ".join(f"{i}. {s}" for i, s in enumerate(plan, 1)))
        if lessons:
            parts.append("Lessons: " + " ".join(f"- {x}" for x in lessons))
        if sources:
            parts.append("Recalled documents: " + " ".join(sources))
        scope = f"schedule:{schedule}" if schedule else GLOBAL
        meta = {
            "kind": "episode",
            "scope": scope,
            "run_id": run_id,
            "goal": goal[:500],
            "status": status,
            "stop_reason": stop_reason,
            "answer": answer[:500],
            "lessons": json.dumps(lessons),
            "created_at": time.time(),
        }
        text = "\n".join(parts)
        episode_id = f"ep-{run_id}"
        self._target("episode", scope).upsert(
            ids=[episode_id], embeddings=self._embed([text]), documents=[text], metadatas=[meta]
        )
        return episode_id

    def ingest(
        self,
        paths: Iterable[str | Path],
        scope: str = GLOBAL,
        on_file: Callable[[str, str, int], None] | None = None,
    ) -> IngestReport:
        """Store text files and folders (recursively) as overlapping chunks; unchanged files are skipped.

        ``on_file(path, status, chunks)`` is called once per file (status: added, replaced, unchanged,
        skipped: REASON) so a caller can draw progress.
        """
        return documents.ingest(self._target("document", scope), self._embed, self.settings, paths, scope, on_file)

    # -- reading ------------------------------------------------------------------------------------
    def search(
        self,
        query: str,
        k: int = 5,
        kind: str | None = None,
        scopes: list[str] | None = None,
        min_score: float | None = None,
    ) -> list[Hit]:
        """The k memories closest in meaning to ``query``; ``scopes`` None searches every scope."""
        if kind is not None and kind not in KINDS:
            raise MemoryStoreError(f"unknown memory kind {kind!r}; choose one of: {', '.join(KINDS)}")
        if k <= 0 or not query.strip():
            return []
        vector = self._embed([query])[0]
        hits: list[Hit] = []
        if scopes is None or GLOBAL in scopes:
            for one in [kind] if kind else KINDS:
                hits += self._query(self._collection(self.collection_name(one)), vector, k, None)
        scoped = None if scopes is None else [s for s in scopes if s != GLOBAL]
        if scoped is None or scoped:
            clauses = ([{"kind": kind}] if kind else []) + ([{"scope": {"$in": scoped}}] if scoped else [])
            where = clauses[0] if len(clauses) == 1 else ({"$and": clauses} if clauses else None)
            hits += self._query(self._collection(self.collection_name("", scoped=True)), vector, k, where)
        hits.sort(key=lambda h: h.score, reverse=True)
        floor = -1.0 if min_score is None else min_score
        return [h for h in hits if h.score >= floor][:k]

    @staticmethod
    def _query(col: Any, vector: Any, k: int, where: dict | None) -> list[Hit]:
        # No count() first: it costs ~20 ms at 100k items, and Chroma returns fewer hits when it has fewer.
        res = col.query(
            query_embeddings=[vector],
            n_results=k,
            where=where,
            include=["documents", "metadatas", "distances"],
        )
        return [
            Hit(id=i, kind=m.get("kind", "?"), text=d or "", score=1.0 - dist, meta=dict(m))
            for i, d, m, dist in zip(
                res["ids"][0], res["documents"][0], res["metadatas"][0], res["distances"][0], strict=True
            )
        ]

    def list(self, kind: str | None = None, limit: int = 50) -> list[Hit]:
        """Newest first: episodes, notes and one entry per ingested document (its chunk 0)."""
        items: list[Hit] = []
        for one in [kind] if kind else KINDS:
            manifest = [{"chunk": 0}] if one == "document" else []
            scoped_where = {"$and": [{"kind": one}, *manifest]} if manifest else {"kind": one}
            for name, where in (
                (self.collection_name(one), manifest[0] if manifest else None),
                (self.collection_name("", scoped=True), scoped_where),
            ):
                res = self._collection(name).get(where=where, include=["documents", "metadatas"])
                items += [
                    Hit(id=i, kind=one, text=d or "", meta=dict(m))
                    for i, d, m in zip(res["ids"], res["documents"], res["metadatas"], strict=True)
                ]
        items.sort(key=lambda h: h.meta.get("created_at", 0), reverse=True)
        return items[:limit]

    def stats(self) -> dict[str, Any]:
        """Counts per collection, the embedding model, where the data lives and how much disk it takes."""
        counts = {name: self._collection(name).count() for name in self._names()}
        docs = self._collection(self.collection_name("document"))
        out: dict[str, Any] = {
            "backend": self.settings.backend,
            "location": self.location,
            "embedding": self.embedder.model_id,
            "collections": counts,
            "documents": len(docs.get(where={"chunk": 0}, include=[])["ids"]),
            "items": sum(counts.values()),
        }
        if self.settings.backend == "persistent" and self.path.is_dir():
            out["disk_bytes"] = sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())
        return out

    # -- forgetting and reindexing -------------------------------------------------------------------
    def forget(self, id: str | None = None, source: str | Path | None = None, run: str | None = None) -> int:
        """Remove one memory by id (a document chunk id removes its whole document), every chunk of a source
        file (or of every file under a folder), or everything a run wrote. Returns how many items went."""
        if sum(x is not None for x in (id, source, run)) != 1:
            raise MemoryStoreError("forget needs exactly one of: an id, a source path, a run id")
        removed = 0
        for name in self._names():
            col = self._collection(name)
            if id is not None:
                found = col.get(ids=[id], include=["metadatas"])
                if not found["ids"]:
                    continue
                meta = found["metadatas"][0]
                where = {"doc_key": meta["doc_key"]} if meta.get("kind") == "document" else None
                removed += _delete(col, ids=None if where else [id], where=where)
            elif run is not None:
                removed += _delete(col, where={"run_id": run})
            else:
                removed += self._forget_source(col, Path(str(source)).expanduser().resolve())
        return removed

    @staticmethod
    def _forget_source(col: Any, path: Path) -> int:
        # Episodes that quote the source (a goal naming it, a plan given its text) go with it: recalled later,
        # they would bring back what was forgotten.
        quoting = col.get(where={"kind": "episode"}, where_document={"$contains": str(path)}, include=[])["ids"]
        if quoting:
            col.delete(ids=quoting)
        removed = _delete(col, where={"source": str(path)})
        if removed or path.is_file():
            return removed + len(quoting)
        # Not a stored file: maybe a folder (or a deleted one); forget every source under it.
        manifests = col.get(where={"chunk": 0}, include=["metadatas"])["metadatas"]
        prefix = str(path).rstrip("/") + "/"
        for source in {m["source"] for m in manifests if str(m.get("source", "")).startswith(prefix)}:
            removed += _delete(col, where={"source": source})
        return removed + len(quoting)

    def reindex(self, on_progress: Callable[[str, int, int], None] | None = None) -> dict[str, int | None]:
        """Re-embed every stored text with the configured model (after changing it).

        Returns items re-embedded per collection (None: it was already made by this model)."""
        client, model = self.client(), self.embedder.model_id
        done: dict[str, int | None] = {}
        existing = {c.name if hasattr(c, "name") else str(c) for c in client.list_collections()}
        for name in self._names():
            tmp = name + "-reindex"
            if tmp in existing and name not in existing:  # an earlier reindex died between delete and rename
                client.get_collection(tmp, embedding_function=None).modify(name=name)
                existing.add(name)
            if name not in existing:
                continue
            old = client.get_collection(name, embedding_function=None)
            if (old.metadata or {}).get("agentd_embedding") == model:
                done[name] = None
                continue
            if tmp in existing:
                client.delete_collection(tmp)
            new = client.create_collection(
                tmp,
                embedding_function=None,
                configuration={"hnsw": {"space": "cosine"}},
                metadata={"agentd_embedding": model},
            )
            total, moved = old.count(), 0
            for offset in range(0, total, 500):
                page = old.get(limit=500, offset=offset, include=["documents", "metadatas"])
                vectors = self._embed(
                    [
                        embed_text(d or "", m)
                        for d, m in zip(page["documents"], page["metadatas"], strict=True)
                    ]
                )
                new.add(
                    ids=page["ids"],
                    embeddings=vectors,
                    documents=page["documents"],
                    metadatas=page["metadatas"],
                )
                moved += len(page["ids"])
                if on_progress:
                    on_progress(name, moved, total)
            client.delete_collection(name)
            new.modify(name=name)
            done[name] = moved
        with self._lock:
            self._collections.clear()
        return done


# -- process-wide cache ---------------------------------------------------------------------------------
_OPEN: dict[str, Memory] = {}
_OPEN_LOCK = threading.Lock()


_EMBEDDERS: dict[str, Embedder] = {}
_EMBEDDERS_LOCK = threading.Lock()  # taken inside _OPEN_LOCK (get_memory builds a Memory holding it)


def shared_embedder(settings: dict[str, Any], cache_dir: Path | None = None) -> Embedder:
    """One embedder per embedding configuration per process: a loaded model (~100 MB for the default one) is
    shared by every home's Memory, instead of loaded again for each. Derived model files (the fused copy) go in
    the ``cache_dir`` of the home that asked first."""
    key = json.dumps(settings, sort_keys=True, default=str)
    with _EMBEDDERS_LOCK:
        if key not in _EMBEDDERS:
            _EMBEDDERS[key] = make_embedder(EmbeddingSettings.parse(settings), cache_dir)
        return _EMBEDDERS[key]


def close_memories(home: Path) -> None:
    """Close and forget the Memory objects opened for ``home`` (their Chroma clients: SQLite handles and
    threads); the embedding model stays loaded for the next home. The next use opens the store again."""
    with _OPEN_LOCK:
        closing = [key for key, m in _OPEN.items() if m.home == Path(home)]
        opened = [_OPEN.pop(key) for key in closing]
    for memory in opened:
        memory.close()


def get_memory(config: Any) -> Memory:
    """The Memory for this config, opened once per process (opening Chroma and the model is slow)."""
    settings = MemorySettings.from_config(config)
    key = json.dumps([str(config.home), settings.model_dump()], sort_keys=True, default=str)
    with _OPEN_LOCK:
        if key not in _OPEN:
            _OPEN[key] = Memory(settings, config.home)
        return _OPEN[key]


def _delete(col: Any, ids: list[str] | None = None, where: dict | None = None) -> int:
    found = col.get(ids=ids, where=where, include=[])["ids"]
    if found:
        col.delete(ids=found)
    return len(found)
