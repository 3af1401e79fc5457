"""CLI start-up: `agentd --help` and a core command's help against a bare `python -c "import click"`.

`agentd --help` lists the plugins' commands from AGENTD_HOME/cache once a first listing wrote it; the
"(no cache)" row is a new home each time, so each call loads the config and the plugins.

    python benchmarks/bench_cli.py [--rounds 15] [--base /tmp/agentd-base] [--daemon]

With --daemon: also the time from starting `agentd goal --json` to its first streamed event, with a daemon up
(the bare import is timed in those rounds too, so its row has twice the samples).

Each measure is a fresh process; rounds interleave the measures. Printed: min/median/max wall in ms and the
median over the bare click import's median (the ratio is what compares across machines).
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

ROOT = Path(__file__).resolve().parent.parent


def measures(base: str) -> dict[str, tuple[list[str], Path]]:
    found = {
        'python -c "import click"': (["-c", "import click"], ROOT),
        "agentd --help": (["-m", "agentd", "--help"], ROOT),
        "agentd --help (no cache)": (["-m", "agentd", "--help"], ROOT),
        "agentd runs --help": (["-m", "agentd", "runs", "--help"], ROOT),
    }
    if base:
        found |= {f"{name} @base": (args, Path(base)) for name, (args, _) in found.items()
                  if "agentd" in name and "no cache" not in name}
    return found


def wall(args: list[str], tree: Path, home: str, name: str = "") -> float:
    # Bytecode cached (as an installed package has it), in the run's temporary folder.
    agentd_home = home
    if "no cache" in name:
        agentd_home = str(Path(home) / f"fresh-{time.perf_counter_ns()}")  # a new home each time: nothing cached
    env = os.environ | {"PYTHONPATH": f"{tree}{os.pathsep}{tree / 'plugins'}", "AGENTD_HOME": agentd_home,
                        "PYTHONPYCACHEPREFIX": str(Path(home) / "pycache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    started = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, cwd=tree, check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - started) * 1000


def first_event(tree: Path, home: Path) -> float:
    """ms from starting `agentd goal --json` to its first streamed event, with a daemon up on ``home``."""
    env = os.environ | {"PYTHONPATH": f"{tree}{os.pathsep}{tree / 'plugins'}", "AGENTD_HOME": str(home),
                        "PYTHONPYCACHEPREFIX": str(home.parent / "pycache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "agentd", "goal", "--json", "--no-memory", "make out.txt"],
                            env=env, cwd=tree, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    seconds = time.perf_counter() - started
    proc.stdout.read()
    assert proc.wait(60) == 0 and "type" in json.loads(line), line  # a real event, not an early exit
    return seconds * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--base", default="", help="another agentd source tree to time beside this one")
    parser.add_argument("--daemon", action="store_true", help="also: first event of `agentd goal` with a daemon up")
    args = parser.parse_args()
    todo = measures(args.base)
    times: dict[str, list[float]] = {name: [] for name in todo}
    with tempfile.TemporaryDirectory() as home:
        for argv, tree in todo.values():
            wall(argv, tree, home)  # warm the file cache and the bytecode (and write the listing cache)
        for _ in range(args.rounds):
            for name, (argv, tree) in todo.items():
                times[name].append(wall(argv, tree, home, name))
        if args.daemon:
            first_events(args, Path(home), times)
    bare = statistics.median(times['python -c "import click"'])
    print(f"\nCLI start-up, {args.rounds} interleaved rounds, fresh process each, {os.cpu_count()} CPUs (ms)")
    print(f"  {'command':<34} {'min':>7} {'median':>7} {'max':>7}  {'/ import click':>14}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:<34} {min(values):7.1f} {median:7.1f} {max(values):7.1f}  {median / bare:13.2f}x")


def first_events(args: argparse.Namespace, root: Path, times: dict[str, list[float]]) -> None:
    """`agentd goal` against a running daemon (bench_daemon's scripted, zero-latency home)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_daemon import Daemon, make_home

    daemon = Daemon(make_home(root / "daemon", 2, "scripted-lean"))
    trees = {"agentd goal: first event": ROOT} | ({"agentd goal: first event @base": Path(args.base)} if args.base else {})
    try:
        for tree in trees.values():
            first_event(tree, daemon.home)  # warm
        bare = 'python -c "import click"'
        for _ in range(args.rounds):  # the bare import again in these rounds: the load may have changed
            times[bare].append(wall(["-c", "import click"], ROOT, str(root)))
            for name, tree in trees.items():
                times.setdefault(name, []).append(first_event(tree, daemon.home))
    finally:
        daemon.stop()


if __name__ == "__main__":
    main()
