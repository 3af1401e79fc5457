"""Dashboard benchmark: how long each page takes with 10,000 runs in the journal (the issue's budget: 200 ms).

Fills a fresh journal with N runs (mixed statuses, a tenth of them scheduled, each with its run_started and
run_finished events, every 50th parked for approval with its approval_needed phase), mounts the dashboard on
the daemon's API and times each page in-process through Starlette's test client (template rendering and
journal queries included; no network). Run twice: with the dashboard's indexes and without them, so the
indexes' effect is a ratio measured in the same run.

Usage: python benchmarks/bench_dashboard.py [--runs 10000] [--repeat 20]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins"), str(ROOT / "tests" / "unit")]

STATUSES = ["succeeded"] * 6 + ["failed", "stopped", "cancelled"]


def fill(journal, n: int) -> list[str]:
    """N runs with their events, written in one transaction (the benchmark is about reading)."""
    rng = random.Random(7)
    ids, now = [], time.time()
    with journal._tx() as db:
        for i in range(n):
            run_id = f"20260101-{i:06d}-{rng.randrange(16**6):06x}"
            status = "awaiting_approval" if i % 50 == 0 else rng.choice(STATUSES)
            schedule = f"sched-{i % 7}" if i % 10 == 0 else None
            created = now - (n - i) * 30
            goal = f"Summarise report {i} about {rng.choice(['sales', 'logs', 'mail', 'weather'])}"
            db.execute(
                "INSERT INTO runs (id, goal, goal_json, status, workspace, model, schedule, usage_json, created_at,"
                " finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, goal, json.dumps({"text": goal}), status, "/tmp/none", "local", schedule,
                 json.dumps({"prompt_tokens": 900, "completion_tokens": 60}), created, created + 20),
            )
            db.execute("INSERT INTO events (run_id, type, data_json, ts) VALUES (?, 'run_started', '{}', ?)",
                       (run_id, created))
            if status == "awaiting_approval":
                call = {"tool": "write_file", "args": {"path": "out.txt", "content": "x"}}
                db.execute("INSERT INTO phases VALUES (?, 1, 'approval_needed', ?, ?, ?)",
                           (run_id, json.dumps({"call": call}), created, created))
            else:
                outcome = {"status": status, "verified": i % 3 != 0}
                db.execute("INSERT INTO events (run_id, type, data_json, ts) VALUES (?, 'run_finished', ?, ?)",
                           (run_id, json.dumps(outcome), created + 20))
            ids.append(run_id)
    return ids


def pages(ids: list[str], before: float) -> dict[str, str]:
    return {
        "runs (first page)": "/",
        "runs ?status=failed": "/?status=failed",
        "runs ?q=search": "/?q=report+4242",
        "runs page 100": f"/?before={before}",
        "run": f"/ui/runs/{ids[len(ids) // 2 + 1]}",
        "approvals": "/ui/approvals",
        "report (24 h)": "/ui/report",
        "schedules": "/ui/schedules",
        "tools": "/ui/tools",
    }


def measure(client, paths: dict[str, str], repeat: int) -> dict[str, tuple[float, float]]:
    out = {}
    for name, path in paths.items():
        client.get(path)  # warm caches (templates compile once)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            response = client.get(path)
            times.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200, (path, response.status_code)
        times.sort()
        out[name] = (statistics.median(times), times[int(len(times) * 0.95) - 1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    from fastapi.testclient import TestClient
    from test_dashboard import dashboard

    from agentd.testing import make_test_app

    with tempfile.TemporaryDirectory() as tmp:
        app, _ = make_test_app(Path(tmp), [], settings={"plugins.memory": {"enabled": False}})
        t0 = time.perf_counter()
        ids = fill(app.journal, args.runs)
        print(f"filled {args.runs} runs in {time.perf_counter() - t0:.1f}s")
        client, _ = dashboard(app)
        assert isinstance(client, TestClient)
        before = app.journal.get_run(ids[len(ids) - 100 * 50])["created_at"]
        paths = pages(ids, before)
        with_indexes = measure(client, paths, args.repeat)
        app.journal._db.execute("DROP INDEX runs_status_created")
        app.journal._db.execute("DROP INDEX runs_schedule_created")
        without = measure(client, paths, args.repeat)
        app.close()

    print(f"\n{'page':<22} {'median ms':>10} {'p95 ms':>8} {'no-index median':>16} {'ratio':>6}")
    worst = 0.0
    for name, (median, p95) in with_indexes.items():
        bare = without[name][0]
        worst = max(worst, p95)
        print(f"{name:<22} {median:>10.1f} {p95:>8.1f} {bare:>16.1f} {bare / median:>6.2f}")
    print(f"\nslowest p95: {worst:.1f} ms ({'within' if worst < 200 else 'OVER'} the 200 ms budget)")


if __name__ == "__main__":
    main()
