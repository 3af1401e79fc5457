"""Warm starts: the hello goal in a fresh `agentd goal` process, with llama.cpp's prompt-head state saved by an
earlier process (warm) against the same goal with ``prefix_cache = false`` (cold: today's behaviour, the
baseline), interleaved in one run.

    python benchmarks/bench_warm.py [--reps 4] [--goal TEXT]

Each process loads the bundled model and runs the goal with --no-memory (so runs stay comparable: a stored
memory would change later prompts). The warm home is primed by one untimed run first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL = "Create a file named hello.txt containing the word hello"


def make_home(root: Path, name: str, prefix_cache: bool) -> Path:
    home = root / name
    (home / "configs").mkdir(parents=True)
    (home / "configs" / "agentd.toml").write_text(
        f'default_model = "local"\n[models.local]\nprefix_cache = {str(prefix_cache).lower()}\n'
    )
    return home


def run_goal(home: Path, goal: str) -> tuple[float, str, float]:
    env = os.environ | {"AGENTD_HOME": str(home)}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "agentd", "goal", goal, "--json", "--no-memory"],
        env=env, capture_output=True, text=True, timeout=900,
    )
    wall = time.perf_counter() - started
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    outcome = lines[-1] if lines else {}
    model_s = (outcome.get("usage") or {}).get("model_seconds", 0.0)
    return wall, outcome.get("status", f"rc={done.returncode}"), model_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--goal", default=GOAL)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        homes = {"cold (prefix_cache = false)": make_home(root, "cold", False),
                 "warm (state saved earlier)": make_home(root, "warm", True)}
        run_goal(homes["warm (state saved earlier)"], args.goal)  # primes the warm home's cache
        results: dict[str, list[tuple[float, str, float]]] = {name: [] for name in homes}
        for rep in range(args.reps):
            order = list(homes) if rep % 2 == 0 else list(reversed(homes))
            for name in order:
                results[name].append(run_goal(homes[name], args.goal))
                print(f"  rep {rep + 1} {name}: {results[name][-1][0]:.2f} s {results[name][-1][1]}", flush=True)
    base = statistics.median(w for w, _, _ in results["cold (prefix_cache = false)"])
    print(f"\nhello goal in a fresh process, {args.reps} interleaved reps (load average {os.getloadavg()[0]:.1f})")
    print(f"  {'':28} {'min s':>7} {'median s':>9} {'max s':>7} {'model s':>8} {'/ cold':>7}  statuses")
    for name, runs in results.items():
        walls = [w for w, _, _ in runs]
        statuses = ",".join(sorted({s for _, s, _ in runs}))
        print(f"  {name:28} {min(walls):7.2f} {statistics.median(walls):9.2f} {max(walls):7.2f} "
              f"{statistics.median(m for _, _, m in runs):8.2f} {statistics.median(walls) / base:6.2f}x  {statuses}")


if __name__ == "__main__":
    main()
