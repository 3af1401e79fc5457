"""schedules.toml problems (issue 22, item 5): every problem, with file and entry, plainly; doctor fails."""

from __future__ import annotations

import json
import re

from click.testing import CliRunner

from agentd.cli import cli
from agentd.config import load_config
from agentd.schedule.file import doctor_checks, import_file
from agentd.schedule.scheduler import Scheduler

FILE = """
[schedules.good]
goal = "Write a haiku"
every = "1h"

[schedules.broken]
goal = "Summarise"
cron = "61 * * * *"
timezone = "Mars/Olympus"
allowed_tools = ["nope"]
colour = "red"

[schedules.empty]
every = "soon"
max_steps = 0
"""


def configure(home):
    script = home / "script.json"
    script.write_text(json.dumps({"replies": []}))
    (home / "configs").mkdir(exist_ok=True)
    (home / "configs" / "agentd.toml").write_text(f'[models.local]\nprovider = "scripted"\nscript = "{script}"\n')
    path = home / "configs" / "schedules.toml"
    path.write_text(FILE)
    return path


def test_every_problem_of_every_entry_is_reported_with_file_and_entry(scripted, home):
    path = configure(home)
    app, _ = scripted([])
    store = Scheduler(app.config, app.journal, lambda g, f: "x", tools=app.tools).store
    report = import_file(store, app.config, app.tools)
    assert report.added == ["good"]
    broken = [e for e in report.errors if e.startswith(f"{path} [schedules.broken]: ")]
    empty = [e for e in report.errors if e.startswith(f"{path} [schedules.empty]: ")]
    assert len(broken) + len(empty) == len(report.errors)
    assert [any(word in e for e in broken) for word in ("unknown keys colour", "Mars/Olympus", "not registered: nope")] \
        == [True, True, True]
    assert [any(word in e for e in empty) for word in ("`goal`", "'soon' is not a duration", "max_steps must be")] \
        == [True, True, True]


def test_schedule_list_shows_problems_without_literal_markup_on_a_terminal(home, pty_run):
    path = configure(home)
    code, output = pty_run(["schedule", "list"])
    assert code == 0, output
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output).replace("\r", "")
    assert "[red]" not in plain and "[/]" not in plain
    assert f"problem: {path} [schedules.broken]: unknown keys colour" in plain
    assert "\x1b[" in output  # coloured on a terminal ...
    piped = CliRunner().invoke(cli, ["schedule", "list"])
    assert "\x1b[" not in piped.output and "[red]" not in piped.output  # ... plain when piped
    assert f"problem: {path} [schedules.empty]: " in piped.output


def test_doctor_fails_on_invalid_entries(home):
    path = configure(home)
    checks = doctor_checks(load_config())
    failed = [detail for name, ok, detail in checks if name == "schedules file" and not ok]
    assert any(d.startswith(f"{path} [schedules.broken]: ") for d in failed)
    assert "2 of 3 entries invalid" in failed[-1]
    path.write_text('[schedules.good]\ngoal = "Write a haiku"\nevery = "1h"\n')
    assert ("schedules file", True, f"1 declared in {path}") in doctor_checks(load_config())
