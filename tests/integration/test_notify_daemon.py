"""A real daemon (background process) tells a schedule's owner through Apprise when a run waits for approval,
and logs every run's start and end, which `agentd logs --run ID` shows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from receivers import JsonReceiver

pytestmark = pytest.mark.integration

PLAN = {"steps": [{"intent": "write the note", "tool": "write_file"}]}
CALL = {"tool": "write_file", "args": {"path": "note.txt", "content": "hello"}}


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agentd", *args], env=os.environ | {"AGENTD_HOME": str(home)},
                          capture_output=True, text=True, timeout=120)


def test_parked_scheduled_run_notifies_and_is_logged(tmp_path):
    home = tmp_path / "home"
    (home / "configs").mkdir(parents=True)
    script = home / "script.json"
    script.write_text(json.dumps({"rules": [["Write the plan", PLAN], ["Write the call for step", CALL]]}))
    with JsonReceiver() as receiver:
        (home / "configs" / "agentd.toml").write_text(
            f'notify = ["{receiver.url}"]\n\n[models.local]\nprovider = "scripted"\nscript = "{script}"\n\n'
            '[plugins]\nload = ["workspace"]\n\n[plugins.daemon]\nworkers = 1\ndrain_timeout_s = 1.0\n'
        )
        started = _cli(home, "daemon", "start")
        assert started.returncode == 0, started.stderr
        try:
            added = _cli(home, "schedule", "add", "notes", "--every", "1d", "--allow", "read_file",
                         "--no-memory", "Write note.txt")
            assert added.returncode == 0, added.stderr
            ran = _cli(home, "schedule", "run", "notes", "--json")
            outcome = json.loads(ran.stdout.strip().splitlines()[-1])
            assert outcome["status"] == "awaiting_approval", ran.stdout + ran.stderr
            assert receiver.arrived.wait(30), (home / "logs" / "daemon.log").read_text()
        finally:
            _cli(home, "daemon", "stop")
    (body,) = receiver.bodies
    assert "schedule notes waits for your approval" in body["title"]
    assert f"agentd runs approve {outcome['run_id']}" in body["message"]
    shown = _cli(home, "logs", "--run", outcome["run_id"])
    assert shown.returncode == 0, shown.stderr
    assert f"run {outcome['run_id']} started: goal=\"Write note.txt\"" in shown.stdout
    assert f"run {outcome['run_id']} ended: awaiting_approval" in shown.stdout
    assert "serving on" not in shown.stdout  # only the lines about that run
