"""Recall evaluation for agentd memory: can a question find the one memory that answers it?

Data (all in this folder, written for this evaluation): ``documents/`` (8 short notes, runbooks and policies),
``episodes.jsonl`` (16 past runs: goal, plan, outcome, lessons) and ``questions.jsonl`` (41 questions, each
answered by exactly one document passage or one episode, worded differently from it). A document hit counts
when it comes from the right file *and* its chunk contains the answer phrase; an episode hit when it is the
right run.

    python benchmarks/memory_eval/evaluate.py                      # the offline model vs the lexical fake
    python benchmarks/memory_eval/evaluate.py --embedding minilm-int8 --json

Prints recall@1, recall@5 and MRR, overall and per kind.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load(name: str) -> list[dict]:
    return [
        json.loads(line) for line in (HERE / name).read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def build(embedding: str, home: Path, chunk_chars: int, chunk_overlap: int):
    from agentd_memory.store import Memory, MemorySettings

    settings = MemorySettings(
        embedding={"provider": embedding}, chunk_chars=chunk_chars, chunk_overlap=chunk_overlap
    )
    memory = Memory(settings, home)
    memory.ingest([HERE / "documents"])
    for ep in load("episodes.jsonl"):
        memory.add_episode(ep["run_id"], ep["goal"], ep["plan"], ep["status"], ep["stop_reason"], ep["answer"],
                           ep["lessons"])  # fmt: skip
    return memory


def matches(hit, expected: dict) -> bool:
    if expected["kind"] == "episode":
        return hit.id == f"ep-{expected['run_id']}"
    return (
        hit.kind == "document"
        and Path(hit.meta.get("source", "")).name == expected["source"]
        and expected["contains"].lower() in hit.text.lower()
    )


def evaluate(embedding: str, k: int, chunk_chars: int, chunk_overlap: int) -> dict:
    questions = load("questions.jsonl")
    with tempfile.TemporaryDirectory() as tmp:
        memory = build(embedding, Path(tmp), chunk_chars, chunk_overlap)
        started = time.perf_counter()
        ranks: list[tuple[str, int | None]] = []  # (kind, 1-based rank or None)
        misses = []
        for q in questions:
            hits = memory.search(q["question"], k=k)
            rank = next((i for i, h in enumerate(hits, 1) if matches(h, q["expected"])), None)
            ranks.append((q["expected"]["kind"], rank))
            if rank != 1:
                misses.append(
                    {"question": q["question"], "rank": rank, "top": hits[0].provenance if hits else None}
                )
        seconds = time.perf_counter() - started
        items = memory.stats()["items"]

    def summary(rows: list[tuple[str, int | None]]) -> dict:
        n = len(rows) or 1
        return {
            "n": len(rows),
            "recall@1": sum(r == 1 for _, r in rows) / n,
            f"recall@{k}": sum(r is not None for _, r in rows) / n,
            "mrr": sum(1 / r for _, r in rows if r) / n,
        }

    return {
        "embedding": embedding,
        "items": items,
        "all": summary(ranks),
        "document": summary([r for r in ranks if r[0] == "document"]),
        "episode": summary([r for r in ranks if r[0] == "episode"]),
        "search_ms": round(1000 * seconds / len(questions), 1),
        "misses": misses,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--embedding", action="append", help="provider(s) to compare (default: minilm-int8, hash)"
    )
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("--chunk-chars", type=int, default=800)
    parser.add_argument("--chunk-overlap", type=int, default=120)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--show-misses", action="store_true")
    args = parser.parse_args(argv)
    results = [
        evaluate(e, args.k, args.chunk_chars, args.chunk_overlap)
        for e in args.embedding or ["minilm-int8", "hash"]
    ]
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    head = f"{'embedding':<14} {'part':<9} {'n':>3} {'recall@1':>9} {f'recall@{args.k}':>9} {'MRR':>6}"
    print(head + f" {'ms/query':>9}\n" + "-" * (len(head) + 10))
    for r in results:
        for part in ("all", "document", "episode"):
            s = r[part]
            ms = f"{r['search_ms']:>9}" if part == "all" else ""
            print(f"{r['embedding']:<14} {part:<9} {s['n']:>3} {s['recall@1']:>9.3f} {s[f'recall@{args.k}']:>9.3f} "
                  f"{s['mrr']:>6.3f} {ms}")  # fmt: skip
        if args.show_misses:
            for miss in r["misses"]:
                print(f"    miss (rank {miss['rank']}): {miss['question']}  -> top: {miss['top']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
