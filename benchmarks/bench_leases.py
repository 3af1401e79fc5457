"""Lease overhead: what one owner per run (claim, fenced writes, heartbeat, release) costs per loop step.

Runs the same goals in-process, on a scripted zero-latency model and a real on-disk SQLite journal, with
the engine as it is (leased) and with a baseline that does what main did before leases: no claim, no fence
in the write transactions, no heartbeat (``UnfencedJournal`` and ``NoKeeper`` below). Rounds
alternate between the two in the same process, so drift and noise hit both alike; the figures are ratios.
Two figures: whole runs (per loop step, what a user sees) and bare journal writes (the fence's cost where it
is largest, with no model or tool time around it).

Usage: python benchmarks/bench_leases.py [--runs 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from agentd import Goal
from agentd.engine import heartbeat
from agentd.journal import Journal, Lease
from agentd.testing import call, feedback, make_test_app, plan

RULES = [
    ("Write the plan", plan(("write it", "write_file"))),
    ("Write the call for step 1", call("write_file", path="a.txt", content="x")),
    ("Write the decision", feedback("done", final_answer="made a.txt")),
]


class UnfencedJournal(Journal):
    """The journal without leases: every lease operation is free, every write unfenced (main before leases)."""

    def _fence(self, run_id, lease):  # type: ignore[no-untyped-def]
        return None

    def claim_run(self, run_id, owner, ttl_s, take_from_dead=True):  # type: ignore[no-untyped-def]
        return Lease(run_id, owner, 0, ttl_s)

    def renew_lease(self, lease):  # type: ignore[no-untyped-def]
        return None

    def release_lease(self, lease, status=None):  # type: ignore[no-untyped-def]
        return None


class NoKeeper:
    """No heartbeat."""

    def hold(self, journal, lease, stop):  # type: ignore[no-untyped-def]
        return heartbeat.HeldLease(journal, lease, stop)

    def drop(self, held):  # type: ignore[no-untyped-def]
        return None


def run_batch(app, runs: int) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """Seconds for ``runs`` goals end to end, and the loop steps (journaled phases) they took."""
    engine, steps = app.engine, 0
    started = time.perf_counter()
    for _ in range(runs):
        run_id = engine.submit(Goal(text="make a.txt", memory=False), hold=True)
        assert engine.run(run_id)["status"] == "succeeded"
        steps += len(app.journal.phases(run_id))
    return time.perf_counter() - started, steps


def write_batch(journal: Journal, writes: int) -> float:
    """Seconds per journaled phase when nothing else happens: the lease's cost where it is largest."""
    run_id = journal.create_run(Goal(text="x"), Path("."), "local")
    lease = journal.claim_run(run_id, "bench:host:1:000000", ttl_s=60)
    started = time.perf_counter()
    for _ in range(writes):
        journal.add_phase(run_id, "context", {"memories": []}, time.time(), lease=lease)
    return (time.perf_counter() - started) / writes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="goals per mode per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    real_keeper = heartbeat.KEEPER
    with tempfile.TemporaryDirectory() as tmp:
        # One app, one journal file, one model for both modes (two apps differ by ~15% on their own): each
        # batch switches the journal's class and the heartbeat, nothing else.
        app, _ = make_test_app(Path(tmp), rules=RULES, settings={"plugins.load": ["workspace"]})
        journal_class = {"baseline": UnfencedJournal, "leased": Journal}
        keeper = {"baseline": NoKeeper(), "leased": real_keeper}
        totals: dict[str, list[float]] = {"baseline": [], "leased": []}
        per_step: dict[str, list[float]] = {"baseline": [], "leased": []}
        per_write: dict[str, list[float]] = {"baseline": [], "leased": []}
        try:
            for mode in ("baseline", "leased"):  # warm-up: imports, first prompts, SQLite page cache
                app.journal.__class__, heartbeat.KEEPER = journal_class[mode], keeper[mode]
                run_batch(app, 10)
            for round_ in range(args.rounds):
                for mode in ("baseline", "leased") if round_ % 2 == 0 else ("leased", "baseline"):  # ABBA
                    app.journal.__class__, heartbeat.KEEPER = journal_class[mode], keeper[mode]
                    seconds, steps = run_batch(app, args.runs)
                    totals[mode].append(seconds / args.runs)
                    per_step[mode].append(seconds / steps)
                    per_write[mode].append(write_batch(app.journal, 500))
        finally:
            heartbeat.KEEPER = real_keeper
            app.journal.__class__ = Journal
            app.close()
    # The machine is shared: the fastest round of each mode is the least disturbed one, and each round's
    # leased/baseline pair ran back to back, so its ratio is the fairest single comparison.
    base, leased = min(per_step["baseline"]), min(per_step["leased"])
    pairs = [lease / base_ for base_, lease in zip(per_step["baseline"], per_step["leased"], strict=True)]
    writes = [lease / base_ for base_, lease in zip(per_write["baseline"], per_write["leased"], strict=True)]
    result = {
        "runs_per_mode": args.runs * args.rounds,
        "ms_per_run_fastest_round": {m: round(min(v) * 1000, 3) for m, v in totals.items()},
        "ms_per_step_fastest_round": {"baseline": round(base * 1000, 4), "leased": round(leased * 1000, 4)},
        "lease_overhead_ms_per_step": round((leased - base) * 1000, 4),
        "ratio_per_step_median_of_rounds": round(statistics.median(pairs), 3),
        "ms_per_journal_write_fastest": {m: round(min(v) * 1000, 4) for m, v in per_write.items()},
        "ratio_per_write_median_of_rounds": round(statistics.median(writes), 3),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
