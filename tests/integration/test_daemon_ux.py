"""A newcomer and the daemon (issue 22): `agentd daemon reload` and SIGHUP, the stale-config warning, a bad
daemon setting at start (item 4), and live progress streamed through the daemon (item 2).

A real daemon process on a temporary home (the scripted model and helpers of test_daemon.py).
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
import test_daemon
from test_daemon import cli, write_home

pytestmark = pytest.mark.integration
make_daemon = test_daemon.make_daemon  # the fixture: a real daemon process on a scripted home


def add_model(home, name: str) -> None:
    path = home / "configs" / "agentd.toml"
    text = path.read_text()
    time.sleep(0.01)  # a later mtime than the daemon's read, even on coarse clocks
    path.write_text(text + f'[models.{name}]\nprovider = "scripted"\nscript = "{home / "script.json"}"\n')


def test_reload_applies_a_new_model_and_refuses_a_bad_config_keeping_the_old(make_daemon):
    d = make_daemon()
    add_model(d.home, "api2")
    before = cli(d.home, "goal", "Create item-01.txt", "--model", "api2")
    assert before.returncode != 0 and "unknown model 'api2'" in before.stderr
    assert "config on disk changed after the daemon read it" in before.stderr  # the CLI says why
    reloaded = cli(d.home, "daemon", "reload")
    assert reloaded.returncode == 0 and "reloaded; models: api2, local" in reloaded.stdout, reloaded.stderr
    after = cli(d.home, "goal", "Create item-01.txt", "--model", "api2", "--json")
    assert after.returncode == 0, after.stdout + after.stderr
    assert "config on disk changed" not in after.stderr

    good = (d.home / "configs" / "agentd.toml").read_text()
    (d.home / "configs" / "agentd.toml").write_text(good + "[loop]\nmax_stepz = 3\n")
    refused = cli(d.home, "daemon", "reload")
    assert refused.returncode == 2
    [line] = refused.stderr.strip().splitlines()
    assert "reload refused, the old configuration stays in force" in line and "loop.max_stepz" in line
    assert "reload refused" in d.log.read_text()
    run_id = d.submit("Create item-02.txt", model="api2")  # the daemon serves on with the old config
    d.wait([run_id])
    assert d.run(run_id)["status"] == "succeeded"


def test_sighup_reloads(make_daemon):
    d = make_daemon()
    add_model(d.home, "api3")
    os.kill(d.proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + 30
    while "configuration reloaded" not in d.log.read_text():
        assert time.monotonic() < deadline, d.log.read_text()
        time.sleep(0.1)
    done = cli(d.home, "goal", "Create item-03.txt", "--model", "api3", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["status"] == "succeeded"


def test_a_bad_daemon_setting_at_start_exits_2_and_is_in_daemon_log(tmp_path):
    home = tmp_path / "bad"
    write_home(home, daemon={"workerz": 3})
    started = cli(home, "daemon", "start")
    assert started.returncode == 2, started.stdout + started.stderr
    assert "plugins.daemon.workerz: unknown key" in started.stderr
    assert "plugins.daemon.workerz: unknown key" in (home / "logs" / "daemon.log").read_text()
    assert not (home / "agentd.sock").exists()


def test_progress_streams_through_the_daemon(make_daemon, tmp_path):
    home = tmp_path / "slow"
    write_home(home, delay_s=0.8)  # each scripted reply takes 0.8 s, reported as tokens meanwhile
    d = make_daemon(home=home)
    done = cli(d.home, "goal", "--json", "Create item-05.txt")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    progress = [e for e in events if e["type"] == "progress"]
    assert progress and {"plan", "act", "feedback"} >= {e["phase"] for e in progress}
    assert max(e["tokens"] for e in progress) > 0 and max(e["model_calls"] for e in progress) >= 2
    assert all("seq" not in e for e in progress)  # live only: not journaled, never replayed
