"""Documents in memory: files and folders read, cut into overlapping chunks, embedded and written so that a file
counts as stored only once all of it is.

A file's chunk 0 carries its manifest (content sha256, chunk count) and is written last, so "chunk 0 present with
the same sha" means the file is fully stored: re-ingesting it is a no-op, and a changed file replaces its chunks
(new ones written first, stale ones deleted, then the new manifest). The Memory (agentd_memory.store) gives the
collection and the embedding model.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .files import chunk_text, expand_paths, read_document
from .records import GLOBAL, IngestReport, digest


@dataclass
class _Doc:
    path: Path
    key: str  # stable per (scope, path): chunk ids are doc-KEY-N
    chunks: list[tuple[str, dict[str, Any]]]  # (text, metadata)
    old_count: int  # chunks of the version stored before (0: new file)


def ingest(
    col: Any,
    embed: Callable[[list[str]], list[Any]],
    settings: Any,
    paths: Iterable[str | Path],
    scope: str = GLOBAL,
    on_file: Callable[[str, str, int], None] | None = None,
) -> IngestReport:
    """Store text files and folders (recursively) as overlapping chunks in ``col`` (the documents' collection
    of ``scope``), embedded by ``embed``, cut as ``settings`` (MemorySettings) say; unchanged files are skipped.

    ``on_file(path, status, chunks)`` is called once per file (status: added, replaced, unchanged,
    skipped: REASON) so a caller can draw progress.
    """
    started = time.time()
    report = IngestReport()
    pending: list[_Doc] = []
    for path in expand_paths(paths):
        status, doc = _prepare(settings, col, path, scope)
        if doc is None:
            if status == "unchanged":
                report.unchanged.append(str(path))
            else:
                report.skipped.append((str(path), status))
            if on_file:
                on_file(str(path), status, 0)
            continue
        pending.append(doc)
        if sum(len(d.chunks) for d in pending) >= 64:
            _store(col, embed, pending, report, on_file)
            pending = []
    _store(col, embed, pending, report, on_file)
    report.seconds = time.time() - started
    return report


def _prepare(settings: Any, col: Any, path: Path, scope: str) -> tuple[str, _Doc | None]:
    try:
        size = path.stat().st_size
        if size > settings.max_file_bytes:
            return f"skipped: larger than max_file_bytes ({size} > {settings.max_file_bytes})", None
        raw = path.read_bytes()
    except OSError as exc:
        return f"skipped: {exc.strerror or exc}", None
    s = settings
    sha = hashlib.sha256(raw + f"|{s.chunk_chars}/{s.chunk_overlap}".encode()).hexdigest()
    key = digest(scope, str(path))[:16]
    old = col.get(ids=[f"doc-{key}-0"], include=["metadatas"])
    old_meta = old["metadatas"][0] if old["ids"] else {}
    if old_meta.get("file_sha") == sha:
        return "unchanged", None
    try:
        pages = read_document(path, raw)
    except ValueError as exc:
        return f"skipped: {exc}", None
    chunks = []
    for page, text in pages:
        for body, start, end in chunk_text(text, s.chunk_chars, s.chunk_overlap):
            meta = {
                "kind": "document",
                "scope": scope,
                "source": str(path),
                "start_line": start,
                "end_line": end,
                "created_at": time.time(),
            }
            if page:
                meta["page"] = page
            chunks.append((body, meta))
    if not chunks:
        return "skipped: no text", None
    for i, (_, meta) in enumerate(chunks):
        meta["chunk"] = i
        meta["doc_key"] = key
    chunks[0][1].update(file_sha=sha, n_chunks=len(chunks), size=len(raw))
    return ("replaced" if old_meta else "added"), _Doc(
        path, key, chunks, int(old_meta.get("n_chunks", 0))
    )


def _upsert(col: Any, rows: list[tuple[str, str, dict]], vectors: list[Any], which: list[int]) -> None:
    for part in _batches(which, 2000):
        col.upsert(
            ids=[rows[i][0] for i in part],
            embeddings=[vectors[i] for i in part],
            documents=[rows[i][1] for i in part],
            metadatas=[rows[i][2] for i in part],
        )


def _store(
    col: Any, embed: Callable[[list[str]], list[Any]], docs: list[_Doc], report: IngestReport, on_file: Any
) -> None:
    """Embed and write a batch of files: other chunks, then stale deletions, then each manifest chunk."""
    if not docs:
        return
    rows = [(_chunk_id(meta), text, meta) for d in docs for text, meta in d.chunks]
    vectors = embed([embed_text(text, meta) for _, text, meta in rows])
    manifests = [i for i, row in enumerate(rows) if row[2]["chunk"] == 0]
    others = [i for i, row in enumerate(rows) if row[2]["chunk"] != 0]
    _upsert(col, rows, vectors, others)
    stale = [f"doc-{d.key}-{i}" for d in docs for i in range(len(d.chunks), d.old_count)]
    if stale:
        col.delete(ids=stale)
    _upsert(col, rows, vectors, manifests)  # last: a file counts as stored once its manifest is
    for d in docs:
        status = "replaced" if d.old_count else "added"
        (report.replaced if d.old_count else report.added).append(str(d.path))
        report.chunks += len(d.chunks)
        if on_file:
            on_file(str(d.path), status, len(d.chunks))


def embed_text(text: str, meta: dict[str, Any]) -> str:
    """What gets embedded: a document chunk is prefixed with its file name, which queries often mention."""
    if meta.get("kind") == "document" and meta.get("source"):
        return f"{Path(meta['source']).name}: {text}"
    return text


def _chunk_id(meta: dict[str, Any]) -> str:
    return f"doc-{meta['doc_key']}-{meta['chunk']}"


def _batches(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
