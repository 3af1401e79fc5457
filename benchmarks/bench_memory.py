"""Benchmark agentd memory: ingest throughput, search latency at scale, disk use. Prints a table.

    python benchmarks/bench_memory.py                         # defaults: ~3-4 minutes on 2 cores
    python benchmarks/bench_memory.py --ingest-chunks 200 --sizes 10000

1. **Ingest**: real text (Python standard-library sources: code and docstrings) is ingested through
   ``Memory.ingest`` with the real offline model (all-MiniLM-L6-v2 int8): chunks/s end to end, the embedding
   share of it, and disk per 1,000 chunks.
2. **Scale**: for each size, a fresh store is filled with *precomputed* vectors (embedding 100k chunks would take
   hours on 2 cores): each is a real chunk embedding from step 1 plus Gaussian noise, renormalised, so the
   vectors cluster like real ones. Metadata and a short text ride along as in real use. Searches then go through
   ``Memory.search`` and embed every query for real; p50/p95 include that embedding. For comparison the same
   query is timed raw (vector given) and with a ``where`` filter on one big collection, the layout memory avoids.
"""

from __future__ import annotations

import argparse
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

QUERIES = [
    "how do I parse command line arguments", "read a file line by line", "compress data with gzip",
    "format a date as ISO 8601", "start a thread and wait for it", "match a regular expression",
    "send an e-mail over SMTP", "copy a directory tree", "compute a SHA-256 hash", "sort a list of records",
    "open a TCP socket", "decode JSON text", "retry when the network fails", "log a warning message",
    "generate random numbers", "make a temporary directory", "measure elapsed time", "escape HTML characters",
    "walk a folder recursively", "parse a URL into parts",
]  # fmt: skip


def stdlib_files(limit_bytes: int) -> list[Path]:
    """Standard-library modules (a realistic code-and-prose mix present on every Python), up to a byte budget."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files, total = [], 0
    for path in sorted(root.glob("*.py")):
        size = path.stat().st_size
        if 2_000 < size < 60_000:
            files.append(path)
            total += size
            if total >= limit_bytes:
                break
    return files


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def bench_ingest(tmp: Path, chunks: int) -> tuple[dict, list, list[str]]:
    from agentd_memory.store import Memory, MemorySettings, embed_text

    memory = Memory(MemorySettings(), tmp / "ingest")
    files = stdlib_files(chunks * 700)  # ~700 new characters per 800-character chunk with 120 overlap
    memory.embedder(["warm up"])
    started = time.perf_counter()
    report = memory.ingest(files)
    seconds = time.perf_counter() - started
    col = memory._collection(memory.collection_name("document"))
    sample = col.get(limit=min(256, report.chunks), include=["documents", "metadatas", "embeddings"])
    texts = [embed_text(d, m) for d, m in zip(sample["documents"], sample["metadatas"], strict=True)]
    t0 = time.perf_counter()
    memory.embedder(texts)
    embed_rate = len(texts) / (time.perf_counter() - t0)
    disk = sum(p.stat().st_size for p in memory.path.rglob("*") if p.is_file())
    row = {
        "files": len(files),
        "chunks": report.chunks,
        "seconds": seconds,
        "chunks_per_s": report.chunks / seconds,
        "embed_per_s": embed_rate,
        "disk_per_1k_mb": disk / report.chunks * 1000 / 1e6,
    }
    return row, list(sample["embeddings"]), sample["documents"]


def fill(memory, size: int, seeds, texts: list[str], noise: float) -> float:
    import numpy as np

    rng = np.random.default_rng(0)
    base = np.asarray(seeds, dtype=np.float32)
    col = memory._collection(memory.collection_name("document"))
    started = time.perf_counter()
    for start in range(0, size, 5000):
        n = min(5000, size - start)
        pick = rng.integers(0, len(base), n)
        vectors = base[pick] + rng.normal(0, noise, (n, base.shape[1])).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        ids = [f"doc-bench{(start + i) // 10:07d}-{(start + i) % 10}" for i in range(n)]
        metas = [{"kind": "document", "scope": "global", "source": f"/bench/file{(start + i) // 10}.txt",
                  "chunk": (start + i) % 10, "start_line": 1, "end_line": 20, "created_at": time.time()}
                 for i in range(n)]  # fmt: skip
        col.add(ids=ids, embeddings=vectors, metadatas=metas, documents=[texts[p][:800] for p in pick])
    return time.perf_counter() - started


def bench_scale(tmp: Path, size: int, seeds, texts: list[str], queries: int, noise: float) -> dict:
    from agentd_memory.store import Memory, MemorySettings

    memory = Memory(MemorySettings(), tmp / f"scale{size}")
    memory.embedder(["warm up"])
    insert_s = fill(memory, size, seeds, texts, noise)
    memory.remember("a note so that every collection is searched")
    asks = [
        QUERIES[i % len(QUERIES)] + (f" (variant {i})" if i >= len(QUERIES) else "") for i in range(queries)
    ]
    memory.search(asks[0])  # warm caches
    search = []
    for q in asks:
        t0 = time.perf_counter()
        memory.search(q, k=5)
        search.append(time.perf_counter() - t0)
    col = memory._collection(memory.collection_name("document"))
    vectors = memory.embedder(asks)
    raw, filtered = [], []
    for v in vectors:
        t0 = time.perf_counter()
        col.query(query_embeddings=[v], n_results=5)
        raw.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        col.query(query_embeddings=[v], n_results=5, where={"kind": "document"})
        filtered.append(time.perf_counter() - t0)
    disk = sum(p.stat().st_size for p in memory.path.rglob("*") if p.is_file())
    ms = lambda xs, q: 1000 * percentile(xs, q)  # noqa: E731
    return {
        "size": size,
        "insert_per_s": size / insert_s,
        "search_p50": ms(search, 0.5),
        "search_p95": ms(search, 0.95),
        "raw_p50": ms(raw, 0.5),
        "where_p50": ms(filtered, 0.5),
        "where_p95": ms(filtered, 0.95),
        "disk_per_1k_mb": disk / size * 1000 / 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--ingest-chunks", type=int, default=400, help="chunks of real text to ingest (default 400)"
    )
    parser.add_argument(
        "--sizes", default="10000,100000", help="store sizes for the search part, comma-separated"
    )
    parser.add_argument("--queries", type=int, default=60, help="searches per size")
    parser.add_argument("--noise", type=float, default=0.04, help="per-dimension noise around real vectors")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        print(
            f"ingesting ~{args.ingest_chunks} chunks of standard-library source with the real model ...",
            flush=True,
        )
        ingest, seeds, texts = bench_ingest(Path(tmp), args.ingest_chunks)
        print(f"\nINGEST  {ingest['files']} files, {ingest['chunks']} chunks in {ingest['seconds']:.1f}s")
        print(f"  end to end     {ingest['chunks_per_s']:8.1f} chunks/s")
        print(f"  embedding only {ingest['embed_per_s']:8.1f} chunks/s")
        print(f"  disk           {ingest['disk_per_1k_mb']:8.2f} MB per 1,000 chunks")
        rows = []
        for size in sizes:
            print(f"\nfilling a store with {size:,} precomputed vectors ...", flush=True)
            rows.append(bench_scale(Path(tmp), size, seeds, texts, args.queries, args.noise))
    print(
        "\nSEARCH (k=5; 'search' = Memory.search incl. embedding the query; 'raw' = one collection, vector given;"
    )
    print("        'where' = the same with a metadata filter, the layout memory avoids)")
    head = (f"{'items':>8} {'insert/s':>9} {'search p50':>11} {'search p95':>11} {'raw p50':>8} {'where p50':>10} "
            f"{'where p95':>10} {'MB/1k':>6}")  # fmt: skip
    print(head + "\n" + "-" * len(head))
    for r in rows:
        print(f"{r['size']:>8,} {r['insert_per_s']:>9.0f} {r['search_p50']:>9.1f}ms {r['search_p95']:>9.1f}ms "
              f"{r['raw_p50']:>6.1f}ms {r['where_p50']:>8.1f}ms {r['where_p95']:>8.1f}ms {r['disk_per_1k_mb']:>6.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
