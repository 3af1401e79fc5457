"""Follow-ups and re-attaching through a real daemon process (#18): `goal --continue` submits to the daemon, a
busy thread is refused, `runs follow last` streams a detached run to its end with `agentd goal`'s exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import test_daemon
from test_daemon import cli

pytestmark = pytest.mark.integration
make_daemon = test_daemon.make_daemon  # the fixture: a real daemon process on a scripted home


def test_continue_and_follow_through_the_daemon(make_daemon):
    d = make_daemon()
    first = cli(d.home, "goal", "--json", "Create item-01.txt")
    assert first.returncode == 0, first.stderr
    started = json.loads(first.stdout.splitlines()[-1])
    (d.home / "hold").touch()
    detached = cli(d.home, "goal", "--continue", "last", "--detach", "SLOW job")
    assert detached.returncode == 0, detached.stderr
    slow_id = detached.stdout.strip()
    deadline = time.monotonic() + 60
    while not (d.home / "workspaces" / started["run_id"] / "calls.log").exists():  # the earlier run's workspace
        assert time.monotonic() < deadline, d.log.read_text()
        time.sleep(0.05)
    busy = cli(d.home, "goal", "--continue", started["run_id"], "Create item-02.txt")
    assert busy.returncode != 0 and f"run {slow_id} of this conversation is still running" in busy.stderr
    follower = subprocess.Popen([sys.executable, "-m", "agentd", "runs", "follow", "last", "--json"],
                                env=os.environ | {"AGENTD_HOME": str(d.home)}, stdout=subprocess.PIPE, text=True)
    assert json.loads(follower.stdout.readline())["type"] == "run_started"  # attached while it runs
    (d.home / "hold").unlink()
    rest, _ = follower.communicate(timeout=60)
    assert follower.returncode == 0
    outcome = json.loads(rest.splitlines()[-1])
    assert outcome["type"] == "run_finished" and outcome["status"] == "succeeded"
    run = d.run(slow_id)
    assert run["thread_id"] == started["run_id"] and run["workspace"] == started["workspace"]
    assert [r["thread_id"] for r in d.get("/runs").json()] == [started["run_id"]] * 2


def test_chat_through_the_daemon_keeps_one_thread(make_daemon):
    d = make_daemon()
    chat = subprocess.run([sys.executable, "-m", "agentd", "chat"], env=os.environ | {"AGENTD_HOME": str(d.home)},
                          input="Create item-01.txt\nCreate item-02.txt\n", capture_output=True, text=True, timeout=60)
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.count("succeeded (done)") == 2 and "no daemon running" not in chat.stderr
    first, second = reversed(d.get("/runs").json())
    assert second["thread_id"] == first["id"] and second["goal_spec"]["continues"] == first["id"]
    assert sorted(p.name for p in (d.home / "workspaces" / first["id"]).iterdir()) == ["item-01.txt", "item-02.txt"]
