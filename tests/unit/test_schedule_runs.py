"""Scheduled runs end to end in-process: allowlist → awaiting_approval → approve → finished; the report;
the real APScheduler timer with a short interval; the CLI."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from agentd.cli.commands.schedule import report as report_cmd
from agentd.cli.commands.schedule import schedule as schedule_cmd
from agentd.schedule.report import build_report, render_text
from agentd.schedule.scheduler import Scheduler
from agentd.schedule.spec import Schedule
from agentd.testing import call, feedback, plan


def test_allowlist_parks_then_approve_finishes(scripted):
    app, model = scripted([
        plan(("write the digest", "write_file")),
        call("write_file", path="digest.md", content="3 new files"),
        feedback("done", final_answer="wrote digest.md"),
    ])
    engine = app.engine
    scheduler = Scheduler(app.config, app.journal, lambda goal, fid: engine.submit(goal), tools=app.tools)
    scheduler.store.add(Schedule(name="digest", goal="Write digest.md", every="1d", allowed_tools=["read_file"],
                                 memory=False, misfire="skip"))
    start = time.time() - 60
    run_id = scheduler.run_now("digest")
    assert engine.run(run_id)["status"] == "awaiting_approval"
    assert app.journal.tool_calls(run_id) == []  # the tool outside the allowlist did not run

    parked = build_report(app.journal, since=start)
    [waiting] = parked["awaiting_approval"]
    assert waiting["run_id"] == run_id and waiting["wants"]["tool"] == "write_file"
    assert "wants write_file" in render_text(parked)

    engine.decide(run_id, approved=True)
    outcome = engine.run(run_id)
    assert outcome["status"] == "succeeded" and outcome["final_answer"] == "wrote digest.md"
    done = build_report(app.journal, since=start)
    [ran] = done["runs"]
    assert ran["status"] == "succeeded" and ran["artifacts"] == ["digest.md"] and ran["kind"] == "manual"
    assert done["awaiting_approval"] == [] and done["outcomes"] == {"succeeded": 1}
    text = render_text(done)
    assert "answer: wrote digest.md" in text and "artifacts: digest.md" in text


def test_deny_stops_the_run(scripted):
    app, _ = scripted([plan(("run code", "run_python")), call("run_python", code="print(1)")])
    engine = app.engine
    scheduler = Scheduler(app.config, app.journal, lambda goal, fid: engine.submit(goal), tools=app.tools)
    scheduler.store.add(Schedule(name="code", goal="Run some code", every="1d", allowed_tools=[], memory=False))
    run_id = scheduler.run_now("code")
    assert engine.run(run_id)["status"] == "awaiting_approval"
    engine.decide(run_id, approved=False)
    outcome = engine.run(run_id)
    assert outcome["stop_reason"] == "denied"


def test_report_lists_misses_and_overlaps(scripted):
    app, _ = scripted([])
    now = [time.time()]
    scheduler = Scheduler(app.config, app.journal, lambda goal, fid: app.engine.submit(goal), tools=app.tools,
                          clock=lambda: now[0])
    scheduler.store.add(Schedule(name="a", goal="g", every="10s", grace_s=1, misfire="once"), now=now[0])
    now[0] += 25
    scheduler.catch_up()  # +10 missed, +20 missed and caught up
    now[0] += 5.5
    scheduler.tick("a")  # +30: the caught-up run is still queued → skipped_overlap
    data = build_report(app.journal, since=now[0] - 3600, now=now[0])
    assert [f["status"] for f in data["missed"]] == ["missed"]
    assert [f["status"] for f in data["skipped"]] == ["skipped_overlap"]
    assert [r["late"] for r in data["runs"]] == [True]
    text = render_text(data)
    assert "1 missed; 1 skipped" in text and "missed (policy once)" in text and "caught up" in text


def test_real_timer_fires_and_records(scripted, monkeypatch):
    """APScheduler with the SQLAlchemy job store in agentd.db, a 1 s interval, and a fake submit."""
    app, _ = scripted([])
    submitted: list[str] = []
    scheduler = Scheduler(app.config, app.journal, lambda goal, fid: submitted.append(fid) or f"run-{fid}",
                          tools=app.tools)
    scheduler.store.add(Schedule(name="tick", goal="g", every="1s", grace_s=5))
    scheduler.start()
    try:
        deadline = time.monotonic() + 20
        while len(submitted) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        status = scheduler.status()
    finally:
        scheduler.shutdown()
    assert len(submitted) >= 2 and len(set(submitted)) == len(submitted)
    assert status["running"] and status["schedules"][0]["name"] == "tick"
    tables = {r[0] for r in app.journal._query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"sched_apscheduler_jobs", "sched_schedules", "sched_fires"} <= tables
    fires = scheduler.store.fires("tick")
    assert [f.id for f in fires][: len(submitted)] == submitted


def test_timer_picks_up_schedules_added_while_running(scripted):
    app, _ = scripted([])
    submitted: list[str] = []
    scheduler = Scheduler(app.config, app.journal, lambda goal, fid: submitted.append(fid) or "r", tools=app.tools)
    scheduler.settings.sync_interval_s = 0.2
    scheduler.start()
    try:
        other = Scheduler(app.config, app.journal, lambda g, f: "x", tools=app.tools)  # like the CLI
        other.store.add(Schedule(name="late-comer", goal="g", every="1s", grace_s=5))
        deadline = time.monotonic() + 20
        while not submitted and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        scheduler.shutdown()
    assert submitted and submitted[0].startswith("late-comer@")


@pytest.fixture
def cli(home):
    runner = CliRunner()

    def invoke(group, *args):
        result = runner.invoke(group, list(args), catch_exceptions=False, standalone_mode=False)
        return result

    return invoke


def test_cli_add_list_pause_remove(cli, home):
    from agentd.errors import ConfigError

    cli(schedule_cmd, "add", "nightly", "--cron", "0 2 * * *", "--timezone", "Europe/Paris", "Summarise inbox")
    with pytest.raises(ConfigError, match="exists"):
        cli(schedule_cmd, "add", "nightly", "--every", "1h", "again")
    with pytest.raises(ConfigError, match="not registered"):
        cli(schedule_cmd, "add", "x", "--every", "1h", "--allow", "teleport", "g")
    cli(schedule_cmd, "pause", "nightly")
    data = json.loads(cli(schedule_cmd, "list", "--json").output)
    [row] = data["schedules"]
    assert row["paused"] and row["next_run"] is None and data["daemon_running"] is False
    assert row["trigger"] == "cron 0 2 * * * (Europe/Paris)"
    cli(schedule_cmd, "resume", "nightly")
    listed = cli(schedule_cmd, "list").output
    assert "daemon is not running" in listed and "nightly" in listed
    cli(schedule_cmd, "remove", "nightly")
    assert json.loads(cli(schedule_cmd, "list", "--json").output)["schedules"] == []
    assert "0 run(s)" in cli(report_cmd, "--since", "1h").output


def test_cli_run_now_in_process(cli, home):
    """`agentd schedule run NAME` without a daemon: the run happens here, with the schedule's allowlist."""
    script = home / "script.json"
    script.write_text(json.dumps({"rules": [
        ["Write the plan", plan(("write it", "write_file"))],
        ["Write the call for step", call("write_file", path="note.txt", content="hi")],
        ["Write the decision", feedback("done", final_answer="wrote note.txt")],
    ]}))
    (home / "configs").mkdir(exist_ok=True)
    (home / "configs" / "agentd.toml").write_text(
        f'[models.local]\nprovider = "scripted"\nscript = "{script}"\n[plugins]\nload = ["workspace"]\n')
    cli(schedule_cmd, "add", "note", "--every", "1d", "--no-memory", "Write note.txt")
    result = CliRunner().invoke(schedule_cmd, ["run", "note", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["final_answer"] == "wrote note.txt"
    cli(schedule_cmd, "add", "parked", "--every", "1d", "--allow", "read_file", "--no-memory", "Write note.txt")
    assert CliRunner().invoke(schedule_cmd, ["run", "parked", "--json"]).exit_code == 4  # awaiting approval
    data = json.loads(cli(report_cmd, "--json").output)
    assert [r["schedule"] for r in data["awaiting_approval"]] == ["parked"]
    assert {r["status"] for r in data["runs"]} == {"succeeded", "awaiting_approval"}


def test_cli_refuses_a_past_at(cli, home):
    from agentd.errors import ConfigError

    with pytest.raises(ConfigError, match="in the past"):
        cli(schedule_cmd, "add", "old", "--at", "2001-01-01 09:00", "g")
    assert json.loads(cli(schedule_cmd, "list", "--json").output)["schedules"] == []
