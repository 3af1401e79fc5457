"""`agentd goal` and friends as a user meets them: messages and exit codes."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from agentd.cli import cli
from agentd.testing import call, feedback, plan


def configure(home, replies=None, extra=""):
    script = home / "script.json"
    script.write_text(json.dumps({"replies": replies or []}))
    (home / "configs").mkdir(exist_ok=True)
    (home / "configs" / "agentd.toml").write_text(
        f'[models.local]\nprovider = "scripted"\nscript = "{script}"\n{extra}'
    )


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_goal_succeeds_with_exit_0_and_json_outcome_last(home):
    configure(home, [plan(("write", "write_file")), call("write_file", path="hello.txt", content="hello"),
                     feedback("done", final_answer="wrote hello.txt")])
    result = invoke("goal", "Create hello.txt", "--json")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.strip().splitlines()]
    outcome = lines[-1]
    assert outcome["type"] == "run_finished" and outcome["status"] == "succeeded"
    assert {"status", "stop_reason", "final_answer", "workspace", "usage"} <= set(outcome)
    assert (home / "workspaces" / outcome["run_id"] / "hello.txt").read_text() == "hello"
    assert [line["type"] for line in lines if line["type"] != "progress"][:2] == ["run_started", "plan"]


def test_live_trace_shows_plan_critique_calls_and_answer(home):
    configure(home, [plan(("write", "write_file")), call("write_file", path="a.txt", content="x"),
                     feedback("done", final_answer="all good")])
    result = invoke("goal", "Create a.txt")
    assert result.exit_code == 0
    for text in ("plan", "critique: approve", "step 1 → write_file", "ok wrote 1 characters", "answer: all good",
                 "workspace"):
        assert text in result.output


def test_gave_up_exits_1_and_budget_exits_3(home):
    configure(home, [plan(("write", "write_file")), call("write_file", path="a.txt", content="x"),
                     feedback("give_up", "cannot")])
    assert invoke("goal", "x").exit_code == 1
    configure(home, [plan(("write", "write_file"), ("again", "write_file")),
                     call("write_file", path="a.txt", content="x"), feedback("continue"),
                     call("write_file", path="b.txt", content="y")])
    assert invoke("goal", "x", "--max-steps", "1").exit_code == 3


@pytest.mark.parametrize(
    ("args", "config", "message"),
    [
        (["goal", "   "], "", "the goal is empty"),
        (["goal", "x", "--model", "gpt9"], "", "unknown model 'gpt9'"),
        (["goal", "x"], "[loop]\nmax_steps = 'lots'\n", "loop.max_steps"),
    ],
)
def test_usage_and_config_errors_exit_2_with_a_message(home, args, config, message):
    configure(home, extra=config)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_missing_model_file_exits_2_before_a_run_is_stored(home):
    (home / "configs").mkdir()
    (home / "configs" / "agentd.toml").write_text('[models.local]\npath = "/nowhere/model.gguf"\n')
    result = CliRunner().invoke(cli, ["goal", "x"])
    assert result.exit_code == 2 and "model file not found: /nowhere/model.gguf" in result.output
    assert "[]" in invoke("runs", "list", "--json").output


def test_runs_list_and_show(home):
    configure(home, [plan(("write", "write_file")), call("write_file", path="a.txt", content="x"),
                     feedback("done", final_answer="fine")])
    invoke("goal", "make a.txt", "--json")
    runs = json.loads(invoke("runs", "list", "--json").output)
    assert runs[0]["status"] == "succeeded" and runs[0]["goal"] == "make a.txt"
    shown = json.loads(invoke("runs", "show", runs[0]["id"], "--json").output)
    kinds = [p["kind"] for p in shown["phases"]]
    assert kinds[:3] == ["context", "plan", "critique"] and shown["tool_calls"][0]["tool"] == "write_file"
    assert shown["phases"][1]["prompt"][0][0] == "system"  # prompts are journaled
    assert "answer: fine" in invoke("runs", "show", runs[0]["id"]).output


def test_tools_list_run_and_plugins_list(home):
    configure(home)
    tools = json.loads(invoke("tools", "list", "--json").output)
    names = {t["name"]: t for t in tools["tools"]}
    assert names["write_file"]["plugin"] == "workspace" and names["write_file"]["side_effects"] == ["writes_files"]
    result = CliRunner().invoke(cli, ["tools", "run", "write_file", "--arg", "path=n.txt", "--arg", "content=5",
                                      "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["artifacts"] == ["n.txt"]
    bad = CliRunner().invoke(cli, ["tools", "run", "read_file", "--arg", "path=../../etc/passwd"])
    assert bad.exit_code == 1 and "leaves the workspace" in bad.output
    plugins = json.loads(invoke("plugins", "list", "--json").output)["plugins"]
    sources = {p["name"]: p["source"] for p in plugins}
    assert sources["workspace"] == "entry point" and sources["critics"] == "built-in"


def test_config_show_masks_keys(home):
    configure(home, extra='[models.api]\nprovider = "openai"\nmodel = "m"\napi_key = "sk-secret"\n')
    out = invoke("config", "show", "--json").output
    assert "sk-secret" not in out and json.loads(out)["models"]["api"]["api_key"] == "***"
