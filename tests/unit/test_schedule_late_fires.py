"""Issue 15 (10): late fires — `once` runs the latest, a batch never overlaps with itself, the report counts them."""

from __future__ import annotations

import pytest

from agentd.schedule.report import build_report, render_text
from agentd.schedule.scheduler import Scheduler
from agentd.schedule.spec import Schedule
from agentd.schedule.store import FireStatus

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


@pytest.fixture
def env(scripted, journal_url, monkeypatch):
    monkeypatch.setenv("AGENTD_JOURNAL_URL", journal_url)  # the CLI's commands open the same journal
    app, _ = scripted([], settings={"journal_url": journal_url})  # on SQLite, then on PostgreSQL
    now = [T0]
    submitted: list[str] = []

    def submit(goal, fire_id):
        submitted.append(fire_id)
        return app.engine.submit(goal)

    scheduler = Scheduler(app.config, app.journal, submit, tools=app.tools, clock=lambda: now[0])
    return scheduler, app, now, submitted


def add(scheduler, **kw):
    spec = {"goal": "write a digest", "every": "10s", "grace_s": 1.0} | kw
    return scheduler.store.add(Schedule(name="job", **spec), now=scheduler.clock())


def test_once_with_a_long_grace_runs_the_latest_fire_and_records_no_overlap_with_itself(env):
    scheduler, app, now, submitted = env
    add(scheduler, misfire="once", grace_s=3600)
    now[0] = T0 + 35  # +10, +20, +30 all due while the daemon was down, all within the grace time
    scheduler.catch_up()
    fires = scheduler.store.fires("job")
    assert submitted == ["job@2027-01-15T08:00:30+00:00"]  # the latest, not the oldest
    assert [f.status for f in fires] == [FireStatus.missed, FireStatus.missed, FireStatus.enqueued]
    assert not [f for f in fires if f.status == FireStatus.skipped_overlap]


@pytest.mark.parametrize("policy", ["all", "skip", "once"])
def test_a_batch_never_overlaps_with_itself(env, policy):
    scheduler, app, now, submitted = env
    add(scheduler, misfire=policy, grace_s=12)
    now[0] = T0 + 45  # +10, +20 past the grace; +30 and +40 within it
    scheduler.catch_up()
    fires = scheduler.store.fires("job")
    assert not [f for f in fires if f.status == FireStatus.skipped_overlap]
    assert len(submitted) == (4 if policy == "all" else 1)  # skip still runs the on-time latest
    assert submitted[-1] == "job@2027-01-15T08:00:40+00:00"


def test_a_run_still_going_from_before_makes_the_whole_batch_an_overlap_naming_it(env):
    scheduler, app, now, submitted = env
    add(scheduler, misfire="all")
    now[0] = T0 + 10
    [first] = scheduler.tick("job")
    now[0] = T0 + 35  # +20, +30 late while the first run is still queued
    scheduler.tick("job")
    later = scheduler.store.fires("job")[1:]
    assert [f.status for f in later] == [FireStatus.skipped_overlap] * 2
    assert all(first.run_id in f.detail for f in later) and len(submitted) == 1


def test_report_counts_caught_up_fires_as_late_with_due_time_and_timezone(env):
    scheduler, app, now, submitted = env
    add(scheduler, misfire="all", timezone="Europe/Paris")
    now[0] = T0 + 35
    scheduler.catch_up()
    data = build_report(app.journal, since=T0, now=now[0])
    assert len(data["late"]) == 3 and all(f["status"] == "enqueued" for f in data["late"])
    assert [f["due"] for f in data["late"]][0] == "2027-01-15 09:00:10 CET (Europe/Paris)"
    text = render_text(data)
    assert "3 late (3 caught up); 0 missed" in text
    assert "Late (due while the daemon was down or past the grace time):" in text
    assert "due 2027-01-15 09:00:30 CET (Europe/Paris)" in text and "ran as run" in text
    assert all(r["due"] for r in data["runs"])
