"""Sandbox cost: per-call overhead of each backend against plain ``python -c pass`` (same run, same interpreter),
the bare cost of the sandbox around ``/bin/true``, and the throughput of 100 sequential small run_python calls.

Run standalone: ``python benchmarks/bench_sandbox.py`` (prints a table; about half a minute on 2 cores).
A runner may call ``run(report)`` instead, with ``report(name, value, unit)``.

Against a baseline in the same run: ``python benchmarks/bench_sandbox.py --baseline /tmp/sandbox-base`` (a
checkout of the previous main, e.g. ``git worktree add /tmp/sandbox-base main``; or set
``AGENTD_BENCH_BASELINE``). Both trees are measured in subprocesses of their own, alternating ``--rounds``
times, and the table gives each backend's per-call cost in this tree as a ratio to the baseline's.
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
from collections.abc import Callable
from pathlib import Path

REPEATS = 15
CALLS = 100


def _median_ms(fn: Callable[[], object], repeats: int = REPEATS) -> float:
    fn()  # warm caches (the backend probe, the page cache) outside the measurement
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def measure(repeats: int = REPEATS, calls: int = CALLS) -> list[dict]:
    """One row per backend that can run here: timings in milliseconds, throughput in calls per second."""
    from agentd_code import run_python
    from agentd_code.execution import choose_interpreter
    from agentd_code.sandbox import SandboxUnavailable, run_sandboxed, select_backend
    from agentd_code.settings import CodeSettings

    from agentd import ToolContext
    from agentd.tools import Tool, execute

    rows = []
    tool = Tool.from_function(run_python)
    with tempfile.TemporaryDirectory(prefix="agentd-bench-") as folder:
        for name in ("bwrap", "subprocess"):
            try:
                backend = select_backend(name)
            except SandboxUnavailable as exc:
                rows.append({"backend": name, "skipped": str(exc)})
                continue
            interp = choose_interpreter(CodeSettings(), backend)
            ws = Path(folder) / name
            plain = _median_ms(lambda exe=interp.executable: subprocess.run([exe, "-c", "pass"], check=True))

            def boxed(argv, backend=backend, ws=ws, interp=interp):
                return run_sandboxed(argv, ws, backend=backend, ro_paths=interp.ro_paths)

            sandboxed = _median_ms(lambda exe=interp.executable, boxed=boxed: boxed([exe, "-c", "pass"]))
            bare = _median_ms(lambda boxed=boxed: boxed(["/bin/true"]))
            ctx = ToolContext(run_id=f"bench-{name}", workspace=ws / "tool", settings={"backend": name})
            started = time.perf_counter()
            for i in range(calls):
                result = execute(tool, {"code": f"x = {i} * 2"}, ctx)
                assert result.ok, result.error
            elapsed = time.perf_counter() - started
            rows.append({
                "backend": name, "python": interp.executable, "plain_python_ms": plain,
                "sandboxed_python_ms": sandboxed, "overhead_ms": sandboxed - plain, "ratio": sandboxed / plain,
                "sandbox_true_ms": bare, "run_python_calls_per_s": calls / elapsed,
                "run_python_ms_per_call": elapsed * 1000 / calls,
            })
    return rows


def run(report: Callable[..., object]) -> list[dict]:
    """Measure and hand each number to ``report(name, value, unit)``; returns the rows too."""
    rows = measure()
    units = {"ratio": "x", "run_python_calls_per_s": "calls/s"}
    for row in rows:
        for key, value in row.items():
            if isinstance(value, float):
                report(f"sandbox.{row['backend']}.{key}", round(value, 3), units.get(key, "ms"))
    return rows


COMPARED = ("sandboxed_python_ms", "sandbox_true_ms", "run_python_ms_per_call")


def measure_tree(tree: Path, repeats: int, calls: int) -> list[dict]:
    """``measure`` run by a subprocess that imports agentd and its plugins from ``tree``."""
    env = {**os.environ, "PYTHONPATH": f"{tree}:{tree / 'plugins'}"}
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_sandbox; "
            f"print(json.dumps(bench_sandbox.measure({repeats}, {calls})))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tree,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(baseline: Path, rounds: int = 3, repeats: int = 9, calls: int = 40) -> list[dict]:
    """Per backend: the median over ``rounds`` alternating runs of each compared figure, here and in the
    baseline tree, and their ratio (here / baseline)."""
    here = Path(__file__).resolve().parents[1]
    samples: dict[tuple[str, str, str], list[float]] = {}
    for _ in range(rounds):
        for label, tree in (("base", baseline), ("new", here)):
            for row in measure_tree(tree, repeats, calls):
                for key in COMPARED:
                    if key in row:
                        samples.setdefault((row["backend"], key, label), []).append(row[key])
    rows = []
    for backend in ("bwrap", "subprocess"):
        row: dict = {"backend": backend}
        for key in COMPARED:
            base, new = samples.get((backend, key, "base")), samples.get((backend, key, "new"))
            if base and new:
                row[key] = (statistics.median(new), statistics.median(base), statistics.median(new) /
                            statistics.median(base))
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default=os.environ.get("AGENTD_BENCH_BASELINE", ""),
                        help="a checkout of the previous main to compare with in the same run")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.baseline:
        print(f"{'backend':<11} {'figure':<24} {'this tree':>10} {'baseline':>10} {'ratio':>6}")
        for row in compare(Path(args.baseline), args.rounds):
            for key in COMPARED:
                if key in row:
                    new, base, ratio = row[key]
                    print(f"{row['backend']:<11} {key:<24} {new:>8.1f}ms {base:>8.1f}ms {ratio:>5.2f}x")
        print(f"medians of {args.rounds} alternating rounds per tree (each round: medians of 9 calls, "
              "40 run_python calls)")
        return
    rows = measure()
    header = (f"{'backend':<11} {'plain py':>9} {'sandboxed':>10} {'overhead':>9} {'ratio':>6} {'/bin/true':>10} "
              f"{'run_python':>11} {'calls/s':>8}")
    print(header)
    print("-" * len(header))
    for row in rows:
        if "skipped" in row:
            print(f"{row['backend']:<11} skipped: {row['skipped']}")
            continue
        print(f"{row['backend']:<11} {row['plain_python_ms']:>7.1f}ms {row['sandboxed_python_ms']:>8.1f}ms "
              f"{row['overhead_ms']:>7.1f}ms {row['ratio']:>5.2f}x {row['sandbox_true_ms']:>8.1f}ms "
              f"{row['run_python_ms_per_call']:>9.1f}ms {row['run_python_calls_per_s']:>8.1f}")
    for row in rows:
        if "python" in row:
            print(f"{row['backend']}: interpreter {row['python']} (plain and sandboxed use the same one)")
    print(f"median of {REPEATS} calls each; run_python = {CALLS} sequential tool calls (runner, snapshot, artifacts)")


if __name__ == "__main__":
    sys.exit(main())
