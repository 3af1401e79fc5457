"""Schedule parsing and validation: clear errors before anything is stored; the TOML file round trip."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from agentd.errors import ConfigError
from agentd.schedule.file import export_toml, import_file, read_file, schedules_path
from agentd.schedule.scheduler import Scheduler
from agentd.schedule.spec import Schedule, fire_times, make_trigger, parse_duration, validate


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800), ("2s", 2), ("1h30m", 5400), ("90", 90), ("1d", 86400)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5 minutes", "3x"])
def test_bad_durations(text):
    with pytest.raises(ConfigError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"cron": "0 25 * * *"}, "not valid"),
        ({"cron": "0 2 * *"}, "needs 5 fields"),
        ({"cron": "0 2 * * 9"}, "out of range"),
        ({"every": "30m", "timezone": "Mars/Olympus"}, "unknown timezone"),
        ({"every": "soon"}, "not a duration"),
        ({"at": "next tuesday"}, "not a date"),
        ({"cron": "0 2 * * *", "every": "1h"}, "exactly one"),
        ({}, "exactly one"),
    ],
)
def test_bad_triggers(kw, message):
    with pytest.raises(ConfigError, match=message):
        validate(Schedule(name="n", goal="g", **kw))


def test_bad_names_tools_and_models(scripted):
    app, _ = scripted([])
    with pytest.raises(ConfigError, match="schedule name"):
        validate(Schedule(name="no spaces", goal="g", every="1h"))
    with pytest.raises(ConfigError, match="not registered: nope"):
        validate(Schedule(name="n", goal="g", every="1h", allowed_tools=["nope"]), app.tools)
    with pytest.raises(ConfigError, match="unknown model"):
        validate(Schedule(name="n", goal="g", every="1h", model="gpt-9"), app.tools, app.config)


def test_allowlist_by_effect_and_plugin(scripted):
    pytest.importorskip("agentd.policy")
    app, _ = scripted([])
    ok = Schedule(name="n", goal="g", every="1h", allowed_tools=["effect:reads_files", "plugin:workspace"])
    assert validate(ok, app.tools) is ok
    with pytest.raises(ConfigError, match="unknown side effect"):
        validate(Schedule(name="n", goal="g", every="1h", allowed_tools=["effect:teleports"]), app.tools)
    with pytest.raises(ConfigError, match="no tools come from plugin:nowhere"):
        validate(Schedule(name="n", goal="g", every="1h", allowed_tools=["plugin:nowhere"]), app.tools)


def test_crontab_weekdays_count_from_sunday():
    """`1-5` means Monday to Friday as in crontab (APScheduler itself counts from Monday)."""
    trigger = make_trigger(Schedule(name="n", goal="g", cron="0 9 * * 1-5"))
    start = datetime(2027, 1, 16, tzinfo=timezone.utc).timestamp()  # a Saturday
    days = [t.strftime("%a") for t in fire_times(trigger, start, start + 7 * 86400)]
    assert days == ["Mon", "Tue", "Wed", "Thu", "Fri"]


def _write(home, text):
    path = home / "configs" / "schedules.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_toml_file_round_trip(scripted, home):
    app, _ = scripted([])
    store = Scheduler(app.config, app.journal, lambda g, f: "x", tools=app.tools).store
    _write(home, """
[schedules.digest]
goal = "Summarise inbox/ into digest.md"
cron = "0 2 * * *"
timezone = "Europe/Paris"
misfire = "all"
grace = "10m"
allowed_tools = ["read_file", "write_file"]
max_steps = 4

[schedules.poll]
goal = "Check the feed"
every = "30m"
""")
    report = import_file(store, app.config, app.tools)
    assert sorted(report.added) == ["digest", "poll"] and not report.errors
    digest = store.get("digest")
    assert digest.grace_s == 600 and digest.misfire.value == "all" and digest.source == "file"
    assert "run_python" not in store.get("poll").allowed_tools  # default: workspace-only tools
    # Export, re-import into an empty home: the same declarations.
    exported = export_toml(store.all())
    assert import_file(store, app.config, app.tools).to_dict() == {
        "added": [], "updated": [], "removed": [], "conflicts": [], "errors": []}
    path = schedules_path(app.config)
    path.write_text(exported)
    assert {n: t for n, t in read_file(path).items()} == {s.name: s.spec() for s in store.all()}
    assert import_file(store, app.config, app.tools).to_dict()["updated"] == []


def test_file_changes_conflicts_and_errors(scripted, home):
    app, _ = scripted([])
    store = Scheduler(app.config, app.journal, lambda g, f: "x", tools=app.tools).store
    store.add(Schedule(name="mine", goal="cli one", every="1h"))
    _write(home, """
[schedules.a]
goal = "one"
every = "1h"
[schedules.mine]
goal = "file one"
every = "2h"
[schedules.broken]
goal = "x"
cron = "61 * * * *"
""")
    report = import_file(store, app.config, app.tools)
    assert report.added == ["a"]
    assert report.conflicts and "mine" in report.conflicts[0]
    assert report.errors and "broken" in report.errors[0]
    assert store.get("mine").goal == "cli one"  # the store wins
    store.set_paused("a", True)
    _write(home, '[schedules.a]\ngoal = "two"\nevery = "1h"\n')
    assert import_file(store, app.config, app.tools).updated == ["a"]
    assert store.get("a").goal == "two" and store.get("a").paused
    _write(home, "")
    assert import_file(store, app.config, app.tools).removed == ["a"]
    assert [s.name for s in store.all()] == ["mine"]
    _write(home, '[schedules.x]\ngoal = "g"\nevery = "1h"\ncolour = "red"\n')
    assert "unknown keys colour" in import_file(store, app.config, app.tools).errors[0]


def test_doctor_checks(scripted, home):
    from agentd.schedule.file import doctor_checks

    app, _ = scripted([])
    assert doctor_checks(app.config) == [("schedules file", True, "none declared")]
    Scheduler(app.config, app.journal, lambda g, f: "x", tools=app.tools).store.add(
        Schedule(name="n", goal="g", every="1h"))
    _write(home, "[schedules.x\n")
    (file_check, ok_file, why), (sched_check, ok_daemon, advice) = doctor_checks(app.config)
    assert not ok_file and "not valid TOML" in why
    assert not ok_daemon and "start the daemon" in advice
