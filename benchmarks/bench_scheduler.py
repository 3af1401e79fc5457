"""Fire lateness of the scheduler: scheduled time vs the moment the run is enqueued, over N fires.

Standalone: ``python benchmarks/bench_scheduler.py [--fires 100] [--schedules 4] [--json]``. It starts the real
Scheduler (APScheduler 3 + SQLAlchemy job store in a temporary agentd.db) with ``--schedules`` schedules firing
every second, and a submit that journals a real queued run (the engine's submit, scripted model, no loop run).
Reports p50 / p95 / max lateness in milliseconds. About fires/schedules seconds of wall time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path


def measure(fires: int, schedules: int) -> dict[str, float]:
    from agentd.schedule.scheduler import Scheduler
    from agentd.schedule.spec import Schedule
    from agentd.testing import make_test_app

    with tempfile.TemporaryDirectory() as tmp:
        app, _ = make_test_app(Path(tmp), [], settings={"plugins.load": ["workspace"]})
        enqueued: list[tuple[str, float]] = []
        done = threading.Event()

        def submit(goal, fire_id):  # noqa: ANN001
            at = time.time()
            run_id = app.engine.submit(goal)
            enqueued.append((fire_id, at))
            if len(enqueued) >= fires:
                done.set()
            return run_id

        scheduler = Scheduler(app.config, app.journal, submit, tools=app.tools)
        for i in range(schedules):
            # A wide grace so no fire counts as missed; the finisher thread ends each queued run so the
            # max-one-instance rule never skips a fire (only enqueue lateness is measured).
            scheduler.store.add(Schedule(name=f"bench-{i}", goal="benchmark", every="1s", grace_s=60))
        finisher = threading.Thread(target=_finish_runs, args=(app, done), daemon=True)
        finisher.start()
        scheduler.start()
        done.wait(timeout=fires / schedules * 3 + 30)
        scheduler.shutdown()
        fire_times = {f.id: f.scheduled_at for f in scheduler.store.fires()}
        app.close()
    late_ms = sorted((at - fire_times[fid]) * 1000 for fid, at in enqueued[:fires])
    return {
        "fires": len(late_ms),
        "p50_ms": round(statistics.median(late_ms), 1),
        "p95_ms": round(late_ms[max(0, int(len(late_ms) * 0.95) - 1)], 1),
        "max_ms": round(late_ms[-1], 1),
        "mean_ms": round(statistics.fmean(late_ms), 1),
    }


def _finish_runs(app, done: threading.Event) -> None:  # noqa: ANN001
    """Mark queued runs finished so the max-one-instance rule does not skip the next fire."""
    from agentd.records import RunStatus

    while not done.is_set():
        for run in app.journal.list_runs(limit=100, status="queued"):
            app.journal.set_status(run["id"], RunStatus.succeeded)
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fires", type=int, default=100)
    parser.add_argument("--schedules", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.fires, args.schedules)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"fire lateness over {result['fires']} fires ({args.schedules} schedules, every 1 s): "
              f"p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms, max {result['max_ms']} ms, "
              f"mean {result['mean_ms']} ms")


if __name__ == "__main__":
    main()
