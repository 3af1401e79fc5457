"""Follow-ups (#18): `--continue` works in the earlier run's workspace and thread, plans with the earlier goal,
answer and files in view, and is refused while a run of the thread has not ended."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3

import httpx
import pytest
from click.testing import CliRunner
from test_cli import configure, invoke

from agentd import Goal
from agentd.cli import cli
from agentd.daemon.api import create_api
from agentd.daemon.server import Daemon, DaemonSettings
from agentd.daemon.worker import RunQueue
from agentd.engine.state import LoopState
from agentd.journal import MIGRATIONS, Journal, ThreadBusy
from agentd.testing import call, feedback, plan

WRITE_A = [plan(("write a.txt", "write_file")), call("write_file", path="a.txt", content="alpha"),
           feedback("done", final_answer="wrote a.txt with alpha")]
READ_A = [plan(("read a.txt", "read_file")), call("read_file", path="a.txt"),
          feedback("done", final_answer="it says alpha")]


def test_a_follow_up_works_in_the_earlier_workspace_and_thread_with_its_goal_answer_and_files(scripted):
    app, model = scripted(WRITE_A + READ_A)
    first = app.engine.submit(Goal("Create a.txt"))
    assert app.engine.run(first)["status"] == "succeeded"
    second = app.engine.submit(Goal("What does it say?", continues="last"))
    outcome = app.engine.run(second)
    assert outcome["status"] == "succeeded", outcome
    rows = {r["id"]: r for r in app.journal.list_runs()}
    assert rows[first]["thread_id"] == first  # a new run begins its own thread
    assert rows[second]["thread_id"] == first and rows[second]["workspace"] == rows[first]["workspace"]
    assert rows[second]["goal_spec"]["continues"] == first  # "last" is journaled as the id it meant
    assert app.journal.tool_calls(second)[0]["result"]["output"] == "alpha"  # the earlier run's file, read
    plan_prompt = model.calls[3]["messages"][-1].content
    assert plan_prompt.splitlines()[:4] == [
        "Previous goal: Create a.txt", "Previous answer: wrote a.txt with alpha", "Files in the workspace: a.txt",
        "Goal: What does it say?",
    ]
    assert "Previous goal" not in model.calls[0]["messages"][-1].content  # a first run has no earlier one


def test_a_follow_up_lists_files_newest_first_and_bounded(scripted, tmp_path):
    from agentd import threads

    workspace = tmp_path / "ws"
    workspace.mkdir()
    for i in range(threads.LISTED_FILES + 3):
        (workspace / f"f{i:02}.txt").write_text("x")
        os.utime(workspace / f"f{i:02}.txt", (1000 + i, 1000 + i))
    seen = threads.previous_context({"id": "r", "goal": "g", "final_answer": "", "status": "succeeded"}, workspace)
    assert seen["files"][0] == f"f{threads.LISTED_FILES + 2:02}.txt" and len(seen["files"]) == threads.LISTED_FILES
    assert seen["more_files"] == 3


def test_resume_rebuilds_the_follow_up_view_from_the_journal():
    state = LoopState(run_id="r", goal=Goal("x"))
    state.apply("context", {"memories": [], "previous": {"goal": "earlier", "files": ["a.txt"]}})
    assert state.previous == {"goal": "earlier", "files": ["a.txt"]}


def test_a_run_of_the_thread_that_has_not_ended_refuses_a_follow_up(scripted):
    app, _ = scripted(WRITE_A)
    first = app.engine.submit(Goal("Create a.txt"))  # queued: about to work in that workspace
    with pytest.raises(ThreadBusy, match=f"run {first} of this conversation is still queued"):
        app.engine.submit(Goal("again", continues=first))
    app.engine.run(first)
    second = app.engine.submit(Goal("again", continues=first))
    with pytest.raises(ThreadBusy, match=f"run {second} .* still queued.*agentd runs cancel {second}"):
        app.engine.submit(Goal("and again", continues=first))  # the thread is busy, whichever run is named


def test_cli_continue_forms_and_errors(home):
    configure(home, WRITE_A)  # each command reads the script afresh
    assert invoke("goal", "Create a.txt", "--json").exit_code == 0
    configure(home, READ_A)
    # `--continue "text"`: the text is the goal and the last run is continued.
    result = invoke("goal", "--continue", "What does it say?", "--json")
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.output.strip().splitlines()[-1])
    assert outcome["final_answer"] == "it says alpha"
    result = invoke("goal", "--continue", outcome["run_id"][:19], "Again?")  # a prefix: 3 of its 6 hex digits
    assert result.exit_code == 0, result.output
    assert f"continuing run {outcome['run_id']}" in result.output
    listing = invoke("runs", "list").output.splitlines()
    assert listing[0].split()[:5] == ["run", "status", "stop", "reason", "created"] and "thread" in listing[0]
    threads = {line.split()[0]: line.split()[5] for line in listing[1:]}
    assert len(set(threads.values())) == 1 and len(threads) == 3
    for args, message in [(["goal", "--continue"], "Missing argument 'TEXT'"),
                          (["goal", "--continue", "0000", "x"], "no run '0000'")]:
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2 and message in result.output, result.output


def test_the_api_takes_continues_and_shows_thread_ids(tmp_path):
    from agentd.testing import make_test_app

    app, _ = make_test_app(tmp_path, WRITE_A, settings={"plugins.load": ["workspace"]})
    first = app.engine.submit(Goal("Create a.txt"))

    async def scenario() -> list[httpx.Response]:
        daemon = Daemon(app.config, DaemonSettings(workers=1))
        daemon.app, daemon.queue = app, RunQueue(app.engine, workers=1)
        transport = httpx.ASGITransport(create_api(daemon), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            busy = await c.post("/runs", json={"text": "again", "continues": "last"})
            app.engine.run(first)
            made = await c.post("/runs", json={"text": "again", "continues": "last"})
            listed = await c.get("/runs")
            one = await c.get(f"/runs/{made.json()['run_id']}")
            return [busy, made, listed, one]

    try:
        busy, made, listed, one = asyncio.run(scenario())
    finally:
        app.close()
    assert busy.status_code == 409 and "still queued" in busy.json()["detail"]
    assert made.status_code == 201
    assert [r["thread_id"] for r in listed.json()] == [first, first]
    assert one.json()["thread_id"] == first and one.json()["goal_spec"]["continues"] == first


def test_an_older_journal_gives_each_run_its_own_thread(tmp_path):
    path = tmp_path / "journal.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    old = MIGRATIONS[: MIGRATIONS.index(next(m for m in MIGRATIONS if m.__name__ == "m003_run_threads"))]
    for migration in old:
        migration(db)
        db.execute("INSERT INTO migrations VALUES (?, 0)", (migration.__name__,))
    db.execute("INSERT INTO runs (id, goal, goal_json, status, workspace, created_at) VALUES"
               " ('r1', 'g', '{\"text\": \"g\"}', 'succeeded', '/w', 0)")
    db.close()
    journal = Journal(path)
    assert journal.get_run("r1")["thread_id"] == "r1"
    journal.close()
