"""`agentd runs follow ID|last [--since SEQ]` and `runs show last` (#18) without a daemon: the journal's stream,
rendered as `agentd goal` renders it, with its exit codes; Ctrl-C stops following, not the run."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from click.testing import CliRunner
from terminal import run_in_pty
from test_terminal import _home

from agentd import Goal
from agentd.cli import attach, cli
from agentd.journal import Journal
from agentd.testing import call, feedback, make_test_app, plan

REPLIES = [plan(("write notes", "write_file")), call("write_file", path="notes.md", content="x"),
           feedback("done", final_answer="wrote notes.md")]


def _start_goal(env: dict, text: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "agentd", "goal", text, "--no-memory"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_a_run(home) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (home / "agentd.db").exists():
            journal = Journal(home / "agentd.db")
            rows = journal.list_runs(limit=1)
            journal.close()
            if rows:
                return rows[0]["id"]
        time.sleep(0.05)
    raise AssertionError("no run was journaled")


def test_follow_last_shows_a_running_run_as_goal_shows_it_and_exits_alike(tmp_path):
    home, env = _home(tmp_path, REPLIES, delay_s=0.4)
    goal = _start_goal(env, "Write notes.md")
    run_id = _wait_for_a_run(home)
    followed = subprocess.run([sys.executable, "-m", "agentd", "runs", "follow", "last"], env=env,
                              capture_output=True, text=True, timeout=120)
    goal_out, _ = goal.communicate(timeout=120)
    assert goal.returncode == followed.returncode == 0, followed.stderr
    assert followed.stdout == goal_out and f"(run {run_id})" in goal_out and "answer: wrote notes.md" in goal_out
    again = subprocess.run([sys.executable, "-m", "agentd", "runs", "follow", run_id, "--json"], env=env,
                           capture_output=True, text=True, timeout=120)
    events = [json.loads(line) for line in again.stdout.splitlines()]
    assert events[0]["type"] == "run_started" and events[-1]["type"] == "run_finished"  # an ended run replays
    since = subprocess.run([sys.executable, "-m", "agentd", "runs", "follow", run_id, "--json", "--since",
                            str(events[2]["seq"])], env=env, capture_output=True, text=True, timeout=120)
    assert [json.loads(line)["seq"] for line in since.stdout.splitlines()] == [e["seq"] for e in events[3:]]
    shown = subprocess.run([sys.executable, "-m", "agentd", "runs", "show", "last"], env=env,
                           capture_output=True, text=True, timeout=120)
    assert shown.stdout.startswith(f"run {run_id}  succeeded (done)")


def test_follow_exit_codes_match_goal(home, monkeypatch):
    app, _ = make_test_app(home, [plan(("write", "write_file")), call("write_file", path="a.txt", content="x"),
                                  feedback("give_up", "cannot")])
    gave_up = app.engine.submit(Goal("x"))
    app.engine.run(gave_up)
    undriven = app.engine.submit(Goal("y"))  # queued, and no daemon to run it
    app.close()
    ended = CliRunner().invoke(cli, ["runs", "follow", gave_up, "--since", "10000"])
    assert ended.exit_code == 1 and "failed (gave_up)" in ended.output  # past its end: the outcome still shows
    monkeypatch.setattr(attach, "UNDRIVEN_S", 0.3)
    waiting = CliRunner().invoke(cli, ["runs", "follow", undriven])
    assert waiting.exit_code == 1
    assert f"run {undriven} is queued but nothing drives it now" in waiting.output
    assert "agentd daemon start" in waiting.output
    assert CliRunner().invoke(cli, ["runs", "follow", "nope"]).exit_code == 2


def test_ctrl_c_stops_following_and_the_run_goes_on(tmp_path):
    home, env = _home(tmp_path, REPLIES, delay_s=0.6)
    goal = _start_goal(env, "Write notes.md")
    run_id = _wait_for_a_run(home)
    code, out, pressed = run_in_pty(["runs", "follow", run_id], env, cols=100, ctrl_c_after="plan")
    assert code == 130 and pressed is not None and "stopped following run" in out, out
    goal_out, _ = goal.communicate(timeout=120)
    assert goal.returncode == 0 and "succeeded (done)" in goal_out
