"""Attached folders through a real daemon: `agentd goal --dir` sends them, the daemon checks them against its
own `[workspace] allowed_dirs`, and the run's tools read the folder (scripted model, see test_daemon.py)."""

from __future__ import annotations

import json

import pytest
import test_daemon
from test_daemon import cli, script, write_home

make_daemon = test_daemon.make_daemon  # the fixture, shared

pytestmark = pytest.mark.integration


def test_goal_with_a_dir_through_the_daemon(make_daemon, tmp_path):
    inbox = tmp_path / "user" / "inbox"
    inbox.mkdir(parents=True)
    (inbox / "notes.txt").write_text("The meeting is on Tuesday.")
    home = tmp_path / "home"
    write_home(home)
    rules = script()["rules"]
    rules[:0] = [["Goal: READ NOTE.*Write the plan", {"steps": [{"intent": "read the note", "tool": "read_file"}]}],
                 ["Write the call for step 1: read the note$", {"tool": "read_file", "args": {"path": "inbox/notes.txt"}}]]
    (home / "script.json").write_text(json.dumps({"rules": rules}))
    with open(home / "configs" / "agentd.toml", "a") as fh:
        fh.write(f"[workspace]\nallowed_dirs = [{json.dumps(str(tmp_path / 'user'))}]\n")
    d = make_daemon(home=home)
    done = cli(home, "goal", "--json", "--dir", str(inbox), "READ NOTE")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    [seen] = [e for e in events if e["type"] == "observation"]
    assert seen["ok"] and "Tuesday" in seen["output"]
    run = d.run(events[-1]["run_id"])
    assert run["goal_spec"]["dirs"] == [{"name": "inbox", "path": str(inbox.resolve()), "mode": "ro"}]
    refused = d.post("/runs", json={"text": "READ NOTE", "dirs": ["/usr"]})
    assert refused.status_code == 400 and "[workspace] allowed_dirs" in refused.json()["detail"]
