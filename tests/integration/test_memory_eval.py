"""The recall evaluation and the benchmark as regression guards (real model, small sizes for the benchmark)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_offline_model_recalls_the_answering_memory_far_better_than_word_overlap():
    evaluate = load(BENCH / "memory_eval" / "evaluate.py").evaluate
    real, lexical = evaluate("minilm-int8", 5, 800, 120), evaluate("hash", 5, 800, 120)
    assert real["all"]["n"] == 41
    assert real["all"]["recall@1"] >= 0.85 and real["all"]["recall@5"] >= 0.9
    assert real["all"]["mrr"] > lexical["all"]["mrr"] + 0.2


def test_the_benchmark_runs_end_to_end_at_a_tiny_size(capsys):
    main = load(BENCH / "bench_memory.py").main
    assert main(["--ingest-chunks", "10", "--sizes", "300", "--queries", "4"]) == 0
    out = capsys.readouterr().out
    assert "chunks/s" in out and "MB per 1,000 chunks" in out
    row = [line for line in out.splitlines() if line.strip().startswith("300 ")]
    assert len(row) == 1 and row[0].count("ms") == 5
