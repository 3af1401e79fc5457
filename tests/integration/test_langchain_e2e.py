"""Real LangChain file-management tools, configured through `[plugins.langchain]`, driven by a scripted goal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentd import Goal
from agentd.testing import call, feedback, make_test_app, plan

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

FILES = "langchain_community.tools.file_management"
SETTINGS = {
    "plugins.langchain": {
        "tools": [
            f"{FILES}.ReadFileTool",
            {"class": f"{FILES}.WriteFileTool", "name": "lc_write"},
            {"class": f"{FILES}.ListDirectoryTool", "name": "lc_list"},
        ]
    }
}


def observations(app, run_id):
    return [p["observation"] for p in app.journal.phases(run_id) if p["kind"] == "tool"]


def test_a_goal_writes_lists_and_reads_through_langchain_tools_in_its_workspace(tmp_path):
    app, _ = make_test_app(tmp_path, [
        plan(("write", "lc_write"), ("list", "lc_list"), ("read", "langchain_read_file")),
        call("lc_write", file_path="notes/todo.txt", text="buy milk"),
        feedback("continue"),
        call("lc_list", dir_path="notes"),
        feedback("continue"),
        call("langchain_read_file", file_path="notes/todo.txt"),
        feedback("done", final_answer="buy milk"),
    ], settings=SETTINGS)
    effects = {n: app.tools[n].side_effects for n in ("lc_write", "lc_list", "langchain_read_file")}
    assert effects == {"lc_write": ("writes_files",), "lc_list": ("reads_files",),
                       "langchain_read_file": ("reads_files",)}
    assert app.tools["read_file"].plugin == "workspace"  # the clash kept both tools
    outcome = app.engine.run(app.engine.submit(Goal(text="note 'buy milk' in notes/todo.txt and read it back")))
    assert outcome["status"] == "succeeded", outcome
    assert (Path(outcome["workspace"]) / "notes" / "todo.txt").read_text() == "buy milk"
    outputs = [o["result"]["output"] for o in observations(app, outcome["run_id"])]
    assert outputs[1] == "todo.txt" and outputs[2] == "buy milk"
    assert app.tools["lc_write"].parameters["required"] == ["file_path", "text"]


def test_langchain_file_tools_cannot_leave_the_workspace(tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("top secret")
    app, _ = make_test_app(tmp_path, [
        plan(("peek", "langchain_read_file")),
        call("langchain_read_file", file_path=str(outside)),
        feedback("give_up", summary="not allowed"),
    ], settings=SETTINGS)
    outcome = app.engine.run(app.engine.submit(Goal(text="read the secret")))
    [observation] = observations(app, outcome["run_id"])
    assert observation["result"]["output"] == ""
    assert "Access denied" in observation["result"]["error"]
    assert "top secret" not in json.dumps(app.journal.phases(outcome["run_id"]))


def test_a_config_denying_writes_stops_langchain_writes_too(tmp_path):
    settings = SETTINGS | {"plugins.policy": {"deny_effects": ["writes_files"]}}
    app, _ = make_test_app(tmp_path, [
        plan(("write", "lc_write")),
        call("lc_write", file_path="a.txt", text="x"),
        feedback("give_up"),
    ], settings=settings)
    outcome = app.engine.run(app.engine.submit(Goal(text="write a.txt")))
    [observation] = observations(app, outcome["run_id"])
    assert "lc_write has side effects writes_files" in observation["result"]["error"]
    assert not (Path(outcome["workspace"]) / "a.txt").exists()
