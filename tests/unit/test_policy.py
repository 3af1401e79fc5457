"""Policy by side-effect category: goal allowlists (`agentd.policy.allowed`) and the config's deny lists."""

from __future__ import annotations

import pytest

from agentd import Goal
from agentd.errors import ConfigError
from agentd.policy import allowed, allowlist_problems, is_name_entry
from agentd.testing import call, feedback, make_test_app, plan
from agentd.tools import Tool


def make_tool(name: str, effects: tuple[str, ...], plugin: str = "files") -> Tool:
    def fn(x: str) -> str:
        """A stand-in tool."""
        return x

    tool = Tool.from_function(fn, name=name, side_effects=effects)
    tool.plugin = plugin
    return tool


READ = make_tool("read_file", ("reads_files",))
WRITE = make_tool("write_file", ("writes_files",))
FETCH = make_tool("fetch_url", ("network",), plugin="web")
PURE = make_tool("final_answer", ())
RUN = make_tool("run_python", ("runs_code", "writes_files"), plugin="code")
ALL = (READ, WRITE, FETCH, PURE, RUN)


@pytest.mark.parametrize(
    ("allowlist", "expected"),
    [
        (None, {"read_file", "write_file", "fetch_url", "final_answer", "run_python"}),
        ([], set()),
        (["write_file"], {"write_file"}),
        (["effect:reads_files"], {"read_file", "final_answer"}),
        (["category:reads_files"], {"read_file", "final_answer"}),
        (["effect:reads_files", "effect:network"], {"read_file", "fetch_url", "final_answer"}),
        (["effect:writes_files"], {"write_file", "final_answer"}),  # run_python also runs code
        (["effect:writes_files", "effect:runs_code"], {"write_file", "final_answer", "run_python"}),
        (["effect:none"], {"final_answer"}),
        (["plugin:web", "read_file"], {"fetch_url", "read_file"}),
        (["effect:teleports"], {"final_answer"}),  # unknown effects admit nothing more than effect-free tools
    ],
)
def test_allowed_by_name_plugin_and_effect(allowlist, expected):
    assert {t.name for t in ALL if allowed(t, allowlist)} == expected


def test_allowlist_problems_names_entries_that_can_never_match():
    problems = allowlist_problems(["read_file", "effect:network", "effect:none", "category:teleports", " "])
    assert len(problems) == 2
    assert "'category:teleports': unknown side effect" in problems[0] and "reads_files" in problems[0]


def test_only_plain_entries_are_tool_names():
    entries = ["read_file", "effect:network", "category:runs_code", "plugin:web"]
    assert [e for e in entries if is_name_entry(e)] == ["read_file"]


def write_then_read():
    return [
        plan(("write", "write_file"), ("read", "read_file")),
        call("write_file", path="a.txt", content="hello"),
        feedback("continue"),
        call("read_file", path="a.txt"),
        feedback("give_up", summary="could not write"),
    ]


def test_denied_effects_veto_calls_and_tell_the_model(tmp_path):
    settings = {"plugins.policy": {"deny_effects": ["writes_files"]}}
    app, _ = make_test_app(tmp_path, write_then_read(), settings=settings)
    outcome = app.engine.run(app.engine.submit(Goal(text="write a.txt then read it")))
    observations = [p["observation"] for p in app.journal.phases(outcome["run_id"]) if p["kind"] == "tool"]
    assert observations[0]["result"]["error"] == (
        "not allowed: write_file has side effects writes_files, which the configuration denies "
        "(plugins.policy.deny_effects); use a tool without them (policy from policy)"
    )
    assert "no file 'a.txt'" in observations[1]["result"]["error"]  # reading was allowed, writing never ran
    assert [c["tool"] for c in app.journal.tool_calls(outcome["run_id"])] == ["read_file"]


def test_denied_tools_by_name(tmp_path):
    settings = {"plugins.policy": {"deny_tools": ["write_file"]}}
    app, _ = make_test_app(tmp_path, write_then_read(), settings=settings)
    outcome = app.engine.run(app.engine.submit(Goal(text="write a.txt then read it")))
    first = next(p["observation"] for p in app.journal.phases(outcome["run_id"]) if p["kind"] == "tool")
    assert "write_file is denied by the configuration" in first["result"]["error"]


def test_without_a_policy_table_everything_runs(tmp_path):
    replies = write_then_read()
    replies[-1] = feedback("done", final_answer="hello")
    app, _ = make_test_app(tmp_path, replies)
    outcome = app.engine.run(app.engine.submit(Goal(text="write a.txt then read it")))
    assert outcome["status"] == "succeeded"
    assert [c["status"] for c in app.journal.tool_calls(outcome["run_id"])] == ["finished", "finished"]


def test_unknown_denied_effects_are_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown side effects \\['teleports'\\]"):
        make_test_app(tmp_path, settings={"plugins.policy": {"deny_effects": ["teleports"]}})


def test_a_goal_allowlist_by_effect_runs_reads_unattended(tmp_path):
    replies = [plan(("look", "list_files")), call("list_files"), feedback("done", final_answer="empty")]
    app, _ = make_test_app(tmp_path, replies)
    outcome = app.engine.run(app.engine.submit(Goal(text="what is here?", allowed_tools=["effect:reads_files"])))
    assert outcome["status"] == "succeeded"


def test_a_goal_allowlist_by_effect_still_parks_writes(tmp_path):
    replies = [plan(("write", "write_file")), call("write_file", path="a.txt", content="x")]
    app, _ = make_test_app(tmp_path, replies)
    outcome = app.engine.run(app.engine.submit(Goal(text="write a.txt", allowed_tools=["effect:reads_files"])))
    assert outcome["status"] == "awaiting_approval"
    assert not (tmp_path / "workspaces" / outcome["run_id"] / "a.txt").exists()
