"""`agentd goal` with a daemon up submits without loading the config; the daemon checks the goal against its own
and a refusal reaches the user as the same message and exit code an in-process run gives (issue 20).

A real daemon process on a temporary home (the scripted model and helpers of test_daemon.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import test_daemon
from test_daemon import cli

pytestmark = pytest.mark.integration
make_daemon = test_daemon.make_daemon  # the fixture: a real daemon process on a scripted home

REFUSED = [
    (["--model", "nope"], "error: unknown model 'nope'; configured models: local (see `agentd models list`)"),
    (["--profile", "huge"], "error: unknown profile 'huge'; profiles: large, small, tiny"),
    (["--dir", "/etc"], "error: /etc is not under [workspace] allowed_dirs"),
    (["--continue", "0badc0de"], "error: no run '0badc0de'"),
]


def in_process(tmp_path, args: list[str]) -> subprocess.CompletedProcess:
    """The same command on a copy of the home with no daemon: the in-process path's message and exit code."""
    home = tmp_path / "alone"
    test_daemon.write_home(home)
    return cli(home, "goal", *args, "Create item-01.txt")


@pytest.mark.parametrize(("args", "message"), REFUSED)
def test_a_goal_the_daemon_refuses_exits_as_in_process_and_stores_nothing(make_daemon, tmp_path, args, message):
    d = make_daemon()
    through = cli(d.home, "goal", *args, "Create item-01.txt")
    assert through.returncode == 2, through.stdout + through.stderr
    assert through.stderr.startswith(message), through.stderr
    alone = in_process(tmp_path, args)
    error = [line for line in alone.stderr.replace(str(tmp_path / "alone"), str(d.home)).splitlines()
             if line.startswith("error:")]
    assert (alone.returncode, error) == (2, through.stderr.strip().splitlines())
    assert d.get("/runs").json() == []  # nothing was queued


def test_the_client_submits_without_loading_the_config_and_the_daemon_fills_in_its_budgets(make_daemon):
    d = make_daemon()
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('loaded:', sorted(m for m in ('pydantic', 'agentd.config', 'agentd.plugins')"
        " if m in sys.modules), file=sys.stderr))\n"
        "from agentd.cli import main\n"
        "sys.argv = ['agentd', 'goal', '--json', '--max-steps', '7', 'Create item-02.txt']\n"
        "main()\n"
    )
    env = os.environ | {"AGENTD_HOME": str(d.home)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "loaded: []" in done.stderr
    outcome = json.loads(done.stdout.splitlines()[-1])
    assert outcome["status"] == "succeeded"
    goal = d.run(outcome["run_id"])["goal_spec"]
    assert goal["budgets"]["max_steps"] == 7  # given on the command line
    assert goal["budgets"]["max_replans"] == 2  # the daemon's [loop] default
