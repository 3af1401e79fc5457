"""The Scheduler with an injected clock and a fake submit: fire times, misfire policies, overlap, dedupe."""

from __future__ import annotations

import pytest

from agentd.errors import AgentdError
from agentd.schedule.scheduler import Scheduler
from agentd.schedule.spec import Schedule
from agentd.schedule.store import FireStatus

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z, a round minute


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def env(scripted, journal_url, monkeypatch):
    """(scheduler, app, clock, submitted) where submit creates a real queued run in the journal."""
    monkeypatch.setenv("AGENTD_JOURNAL_URL", journal_url)  # the CLI's commands open the same journal
    app, _ = scripted([], settings={"journal_url": journal_url})  # on SQLite, then on PostgreSQL
    clock = Clock(T0)
    submitted: list[str] = []

    def submit(goal, fire_id):
        submitted.append(fire_id)
        return app.engine.submit(goal)

    scheduler = Scheduler(app.config, app.journal, submit, tools=app.tools, clock=clock)
    return scheduler, app, clock, submitted


def add(scheduler, name="job", **kw):
    spec = {"goal": "write a digest", "every": "10s", "grace_s": 1.0} | kw
    return scheduler.store.add(Schedule(name=name, **spec), now=scheduler.clock())


def finish_runs(app):
    from agentd.records import RunStatus

    for run in app.journal.list_runs(status="queued"):
        app.journal.set_status(run["id"], RunStatus.succeeded)


def test_fires_on_time_at_each_trigger_time(env):
    scheduler, app, clock, submitted = env
    add(scheduler)
    clock.now = T0 + 9.5
    assert scheduler.tick("job") == []
    clock.now = T0 + 10.2
    [fire] = scheduler.tick("job")
    assert fire.status == FireStatus.enqueued and not fire.missed
    assert fire.id == "job@2027-01-15T08:00:10+00:00"
    run = app.journal.get_run(fire.run_id)
    assert run["schedule"] == "job" and run["goal_spec"]["allowed_tools"] == []
    finish_runs(app)
    clock.now = T0 + 20.0
    assert [f.id for f in scheduler.tick("job")] == ["job@2027-01-15T08:00:20+00:00"]
    assert submitted == ["job@2027-01-15T08:00:10+00:00", "job@2027-01-15T08:00:20+00:00"]


@pytest.mark.parametrize(("policy", "runs"), [("skip", 0), ("once", 1), ("all", 3)])
def test_daemon_down_across_three_fires(env, policy, runs):
    scheduler, app, clock, submitted = env
    add(scheduler, misfire=policy)
    clock.now = T0 + 35  # fires due at +10, +20, +30; all past the 1 s grace
    scheduler.catch_up()
    fires = scheduler.store.fires("job")
    assert [f.scheduled_at - T0 for f in fires] == [10, 20, 30]
    assert all(f.missed for f in fires)
    assert scheduler.store.missed_count("job") == 3
    assert len(submitted) == runs
    assert len([r for r in app.journal.list_runs() if r["schedule"] == "job"]) == runs
    if policy == "once":
        assert submitted == ["job@2027-01-15T08:00:30+00:00"]
    # Starting again later does not fire the same times twice.
    scheduler.catch_up()
    assert len(scheduler.store.fires("job")) == 3


def test_a_fire_is_never_enqueued_twice(env):
    scheduler, app, clock, submitted = env
    add(scheduler)
    clock.now = T0 + 10.5
    scheduler.tick("job")
    scheduler.tick("job")
    other = Scheduler(app.config, app.journal, lambda g, f: submitted.append(f) or "x", tools=app.tools, clock=clock)
    other.tick("job")  # a second scheduler (e.g. a restarted daemon) sees the recorded fire
    assert submitted == ["job@2027-01-15T08:00:10+00:00"]


def test_overlap_is_recorded_not_run(env):
    scheduler, app, clock, submitted = env
    add(scheduler)
    clock.now = T0 + 10
    [first] = scheduler.tick("job")
    clock.now = T0 + 20  # the first run is still queued
    [second] = scheduler.tick("job")
    assert second.status == FireStatus.skipped_overlap and first.run_id in second.detail
    assert len(submitted) == 1
    with pytest.raises(AgentdError, match="already has run"):
        scheduler.run_now("job")
    finish_runs(app)
    clock.now = T0 + 30
    [third] = scheduler.tick("job")
    assert third.status == FireStatus.enqueued


def test_pause_and_resume_do_not_count_misses(env):
    scheduler, app, clock, submitted = env
    add(scheduler)
    scheduler.store.set_paused("job", True, now=T0 + 1)
    clock.now = T0 + 45
    assert scheduler.catch_up() == {}
    scheduler.store.set_paused("job", False, now=clock.now)
    assert scheduler.tick("job") == []
    clock.now = T0 + 50
    [fire] = scheduler.tick("job")
    assert fire.status == FireStatus.enqueued
    assert scheduler.store.missed_count("job") == 0


def test_crash_between_record_and_enqueue_is_finished_on_restart(env):
    scheduler, app, clock, submitted = env
    add(scheduler)
    add(scheduler, name="linked")
    clock.now = T0 + 10

    def crash(goal, fire_id):
        raise RuntimeError("daemon killed")

    crashing = Scheduler(app.config, app.journal, crash, tools=app.tools, clock=clock)
    assert crashing.tick("job")[0].status == FireStatus.pending
    # "linked": the run was created but the process died before the fire was marked enqueued.
    assert crashing.tick("linked")[0].status == FireStatus.pending
    orphan = app.engine.submit(__import__("agentd").Goal(text="x", schedule="linked"))
    scheduler.catch_up()
    job = scheduler.store.fires("job")[0]
    linked = scheduler.store.fires("linked")[0]
    assert job.status == FireStatus.enqueued and submitted == [job.id]
    assert linked.status == FireStatus.enqueued and linked.run_id == orphan


def test_once_with_an_on_time_fire_runs_only_that_one(env):
    scheduler, app, clock, submitted = env
    add(scheduler, grace_s=3.0)
    clock.now = T0 + 31  # +10 and +20 late, +30 on time
    scheduler.catch_up()
    assert submitted == ["job@2027-01-15T08:00:30+00:00"]
    assert scheduler.store.missed_count("job") == 2


def test_cron_with_seconds_and_timezone(env):
    scheduler, app, clock, submitted = env
    add(scheduler, every="", cron="*/15 * * * * *", timezone="Europe/Paris", grace_s=0.5)
    clock.now = T0 + 15.1
    assert [f.id for f in scheduler.tick("job")] == ["job@2027-01-15T08:00:15+00:00"]


def test_at_fires_once(env):
    scheduler, app, clock, submitted = env
    add(scheduler, every="", at="2027-01-15 09:00:05", timezone="Europe/Paris")  # = 08:00:05Z
    clock.now = T0 + 5.5
    assert len(scheduler.tick("job")) == 1
    clock.now = T0 + 500
    assert scheduler.tick("job") == []
    assert scheduler.status()["schedules"][0]["next_run"] is None


def test_run_now_and_status(env):
    scheduler, app, clock, submitted = env
    add(scheduler, allowed_tools=["write_file"], max_steps=3, model="local")
    run_id = scheduler.run_now("job")
    goal = app.journal.get_run(run_id)["goal_spec"]
    assert goal["allowed_tools"] == ["write_file"] and goal["budgets"]["max_steps"] == 3
    assert goal["schedule"] == "job" and goal["model"] == "local"
    [info] = scheduler.status()["schedules"]
    assert info["last_run"]["run_id"] == run_id and info["last_run"]["status"] == "queued"
    assert info["next_run"] == "2027-01-15T08:00:10+00:00"
    with pytest.raises(AgentdError, match="no schedule named"):
        scheduler.run_now("nope")


def test_missed_event_while_running_is_recorded(env):
    """APScheduler's EVENT_JOB_MISSED (the process stalled past the grace) goes through the same policy."""
    import threading

    scheduler, app, clock, submitted = env
    add(scheduler, misfire="skip")
    clock.now = T0 + 10 + 5  # 5 s late with a 1 s grace
    before = set(threading.enumerate())
    scheduler._on_missed(type("Event", (), {"job_id": "schedule:job"})())
    for thread in set(threading.enumerate()) - before:
        thread.join(timeout=10)
    [fire] = scheduler.store.fires("job")
    assert fire.status == FireStatus.missed and fire.scheduled_at == T0 + 10 and submitted == []


def test_file_declared_schedule_cannot_be_removed_from_cli(env, home):
    from click.testing import CliRunner

    from agentd.cli.commands.schedule import schedule as schedule_cmd
    from agentd.errors import ConfigError

    scheduler, app, clock, submitted = env
    (home / "configs" / "schedules.toml").write_text('[schedules.f]\ngoal = "g"\nevery = "1h"\n')
    assert scheduler.import_file()["added"] == ["f"]
    with pytest.raises(ConfigError, match="declared in configs/schedules.toml"):
        CliRunner().invoke(schedule_cmd, ["remove", "f"], catch_exceptions=False, standalone_mode=False)
    assert scheduler.store.get("f") is not None
