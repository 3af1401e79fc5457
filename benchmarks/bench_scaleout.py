"""Scale-out benchmark: goals/s with 1, 2 and 3 daemons sharing one PostgreSQL journal vs 1 daemon on SQLite,
the time until a kill -9'd daemon's runs are finished by the others, and GET /status p95 under load.

Real daemon processes (``python -m agentd daemon run``), each on its own AGENTD_HOME, a scripted model with a
fixed delay per call (standing in for inference, so daemons have something to overlap) and a throwaway
PostgreSQL cluster started here (tests/pg_cluster.py: Debian's ``postgresql`` package). Every configuration
runs the same goals in the same process run; the figures that matter are the ratios to 1 daemon on SQLite.
On one small machine the daemons compete for the same cores: see docs/scale-out.md for what changes across
machines.

Usage: python benchmarks/bench_scaleout.py [--goals 120] [--delay 0.05] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pg_cluster import Cluster, find_bindir  # noqa: E402

from agentd.journal import Journal  # noqa: E402

ENDED = ("succeeded", "failed", "cancelled", "stopped")


def script(delay_s: float) -> dict:
    return {
        "rules": [
            ["Write the plan", {"steps": [{"intent": "write it", "tool": "write_file"}]}],
            ["Write the call for step", {"tool": "write_file", "args": {"path": "out.txt", "content": "x"}}],
            ["Write the decision", {"decision": "done", "summary": "ok", "final_answer": "done"}],
        ],
        "delay_s": delay_s,
    }


class Daemon:
    def __init__(self, home: Path, url: str, workers: int, delay_s: float, ttl: float) -> None:
        (home / "configs").mkdir(parents=True)
        (home / "script.json").write_text(json.dumps(script(delay_s)))
        journal = f'journal_url = "{url}"\n' if url else ""
        (home / "configs" / "agentd.toml").write_text(
            f'{journal}[models.local]\nprovider = "scripted"\nscript = "{home / "script.json"}"\n'
            f'[loop]\nlease_ttl_s = {ttl}\n[plugins]\nload = ["workspace"]\n[plugins.daemon]\nworkers = {workers}\n'
        )
        self.home = home
        log = open(home / "daemon.log", "ab")  # noqa: SIM115 - the daemon writes it until it stops
        self.proc = subprocess.Popen([sys.executable, "-m", "agentd", "daemon", "run"], stdout=log, stderr=log,
                                     env=os.environ | {"AGENTD_HOME": str(home)})
        self.client = httpx.Client(transport=httpx.HTTPTransport(uds=str(home / "agentd.sock")),
                                   base_url="http://agentd", timeout=30)

    def wait_up(self) -> Daemon:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.client.get("/health").status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError((self.home / "daemon.log").read_text()[-2000:])

    def submit(self, text: str) -> str:
        return self.client.post("/runs", json={"text": text}).json()["run_id"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)
        self.client.close()


def ended(journal: Journal) -> int:
    marks = ", ".join("?" * len(ENDED))
    return int(journal._query(f"SELECT COUNT(*) FROM runs WHERE status IN ({marks})", ENDED)[0][0])


def status_probe(daemon: Daemon, stop: threading.Event, samples: list[float]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        daemon.client.get("/status")
        samples.append(time.perf_counter() - started)
        time.sleep(0.05)


def measure(url: str, daemons: int, goals: int, args: argparse.Namespace, root: Path) -> dict:
    """Submit every goal (round robin over the daemons), time until all have ended; /status p95 meanwhile."""
    homes = [root / f"d{daemons}-{i}-{time.monotonic_ns()}" for i in range(daemons)]
    started = [Daemon(h, url, args.workers, args.delay, args.ttl) for h in homes]
    journal = Journal(url or homes[0] / "agentd.db")
    try:
        for d in started:
            d.wait_up()
        before = ended(journal)
        samples: list[float] = []
        stop = threading.Event()
        probe = threading.Thread(target=status_probe, args=(started[0], stop, samples))
        t0 = time.perf_counter()
        probe.start()
        for i in range(goals):
            started[i % daemons].submit(f"goal {i}")
        while ended(journal) - before < goals:
            time.sleep(0.05)
        seconds = time.perf_counter() - t0
        stop.set()
        probe.join()
        p95 = statistics.quantiles(samples, n=20)[-1] if len(samples) > 20 else max(samples)
        return {"goals_per_s": round(goals / seconds, 2), "status_p95_ms": round(p95 * 1000, 1)}
    finally:
        for d in started:
            d.stop()
        journal.close()


def takeover(url: str, args: argparse.Namespace, root: Path) -> float:
    """Seconds from kill -9 of a daemon mid-run until the others have ended every run it held."""
    homes = [root / f"takeover-{i}" for i in range(3)]
    daemons = [Daemon(h, url, args.workers, args.delay, args.ttl) for h in homes]
    journal = Journal(url)
    try:
        for d in daemons:
            d.wait_up()
        ids = [daemons[0].submit(f"held {i}") for i in range(args.workers * 2)]
        while not journal._query("SELECT 1 FROM runs WHERE status = 'running' AND lease_owner LIKE ?",
                                 (f"%:{daemons[0].proc.pid}:%",)):
            time.sleep(0.01)
        held = [r["id"] for r in journal._query("SELECT id FROM runs WHERE lease_owner LIKE ?",
                                                 (f"%:{daemons[0].proc.pid}:%",))]
        daemons[0].proc.kill()
        killed = time.perf_counter()
        while any(journal.get_run(r)["status"] not in ENDED for r in held + ids):
            time.sleep(0.02)
        return time.perf_counter() - killed
    finally:
        for d in daemons:
            d.stop()
        journal.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--goals", type=int, default=120)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds per scripted model call")
    parser.add_argument("--workers", type=int, default=2, help="workers per daemon")
    parser.add_argument("--ttl", type=float, default=2.0, help="lease ttl (takeover waits for it on other hosts)")
    args = parser.parse_args()
    bindir = find_bindir()
    if bindir is None:
        sys.exit("PostgreSQL is not installed: apt-get install postgresql")
    cluster = Cluster(bindir).start()
    root = Path(tempfile.mkdtemp(prefix="agentd-bench-scaleout-"))
    try:
        results = {"sqlite x1": measure("", 1, args.goals, args, root)}
        for n in (1, 2, 3):
            results[f"postgresql x{n}"] = measure(cluster.new_database(), n, args.goals, args, root)
        base = results["sqlite x1"]["goals_per_s"]
        for row in results.values():
            row["vs_sqlite_x1"] = round(row["goals_per_s"] / base, 2)
        results["takeover_s"] = round(takeover(cluster.new_database(), args, root), 2)  # type: ignore[assignment]
        print(json.dumps({"goals": args.goals, "delay_s": args.delay, "workers": args.workers,
                          "cpus": os.cpu_count(), "results": results}, indent=1))
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
