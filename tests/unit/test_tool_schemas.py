"""Schema-only tools (``Tool(name, description, parameters=schema, fn=...)``): every call is checked against
the schema before the tool runs, by hand (`agentd tools run`) and inside a goal, where the model is told."""

from __future__ import annotations

import json
import textwrap

from click.testing import CliRunner

from agentd import Goal, Tool, hookimpl
from agentd.cli import cli
from agentd.engine import phases
from agentd.testing import call, feedback, plan

SCHEMA = {
    "type": "object",
    "properties": {"count": {"type": "integer", "description": "how many times to ring"}},
    "required": ["count"],
}

PLUGIN = '''
    from pathlib import Path
    from agentd import Tool, hookimpl

    SCHEMA = {schema}
    RUNS = Path({runs!r})

    def ring(**args):
        with RUNS.open("a") as fh:
            fh.write(repr(args) + "\\n")
        return "rang " + str(args["count"]) + " times"

    @hookimpl
    def register_tools(register):
        register(Tool("ring", "Ring the bell.", parameters=SCHEMA, fn=ring))
'''


def bell_plugin(home, runs):
    (home / "plugins").mkdir(exist_ok=True)
    source = textwrap.dedent(PLUGIN).format(schema=json.dumps(SCHEMA), runs=str(runs))
    (home / "plugins" / "bell.py").write_text(source)


def test_tools_run_refuses_a_call_without_the_required_integer_or_with_a_string(home, tmp_path):
    runs = tmp_path / "runs.txt"
    bell_plugin(home, runs)
    missing = CliRunner().invoke(cli, ["tools", "run", "ring", "--json"])
    assert missing.exit_code == 1
    assert "invalid arguments for ring: args: 'count' is a required property" in json.loads(missing.output)["error"]
    text = CliRunner().invoke(cli, ["tools", "run", "ring", "--arg", "count=three", "--json"])
    assert text.exit_code == 1 and "count: 'three' is not of type 'integer'" in json.loads(text.output)["error"]
    assert not runs.exists()  # the tool never ran
    good = CliRunner().invoke(cli, ["tools", "run", "ring", "--arg", "count=3", "--json"])
    assert good.exit_code == 0 and json.loads(good.output)["output"] == "rang 3 times"
    assert runs.read_text() == "{'count': 3}\n"


class Bell:
    """The same tool registered in-process, counting its runs."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def ring(self, **args):
        self.calls.append(args)
        return f"rang {args['count']} times"

    @hookimpl
    def register_tools(self, register):
        register(Tool("ring", "Ring the bell.", parameters=SCHEMA, fn=self.ring))


def test_a_goal_tells_the_model_its_call_was_invalid_and_never_runs_the_tool(scripted):
    bell = Bell()
    bad = [call("ring"), call("ring", count="three"), call("ring", count="3")]
    app, model = scripted([plan(("ring the bell", "ring")), *bad, feedback("give_up", "cannot ring")],
                          extra_plugins=(bell,))
    run_id = app.engine.submit(Goal(text="Ring the bell three times"))
    out = app.engine.run(run_id)
    assert bell.calls == []  # the tool never ran
    retries = [c["messages"][-1].content for c in model.calls[2:4]]
    assert "'count' is a required property" in retries[0] and "'three' is not of type 'integer'" in retries[1]
    tool = [p for p in app.journal.phases(run_id) if p["kind"] == "tool"][0]
    error = tool["observation"]["result"]["error"]
    assert "invalid arguments for ring" in error and "'3' is not of type 'integer'" in error
    assert out["status"] == "failed" and out["stop_reason"] == "gave_up"


def test_a_valid_call_of_a_schema_only_tool_runs(scripted):
    bell = Bell()
    app, _ = scripted([plan(("ring the bell", "ring")), call("ring", count=3), feedback("done", final_answer="rang")],
                      extra_plugins=(bell,))
    out = app.engine.run(app.engine.submit(Goal(text="Ring the bell three times")))
    assert bell.calls == [{"count": 3}] and out["status"] == "succeeded"


def test_an_unreadable_schema_is_not_enforced_and_the_tool_stays_callable():
    tool = Tool("odd", "An odd schema.", parameters={"type": "object", "required": "count"}, fn=lambda **a: "ok")
    assert tool.validate({"x": 1}) == {"x": 1}


WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "the city name, e.g. Paris"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius",
                 "description": "temperature scale"},
        "days": {"type": "integer", "description": "how many days ahead"},
    },
    "required": ["city"],
}


class Weather:
    @hookimpl
    def register_tools(self, register):
        register(Tool("weather", "The weather forecast for a city.", parameters=WEATHER, fn=lambda **a: "sunny"))


def test_the_act_prompt_shows_the_goal_and_each_parameters_type_and_description(scripted):
    goal = "Will it rain in Lyon tomorrow?"
    app, model = scripted([plan(("look it up", "weather")), call("weather", city="Lyon", days=1),
                           feedback("done", final_answer="sunny")], extra_plugins=(Weather(),))
    app.engine.run(app.engine.submit(Goal(text=goal)))
    act = model.calls[1]["messages"]
    request = act[-1].content
    assert act[-3].content.startswith(f"Goal: {goal}\n")  # the plan turn, just above: not repeated for step 1
    assert request.startswith("Arguments of weather:\n") and request.endswith("Write the call for step 1: look it up\n")
    assert "- city (string, required): the city name, e.g. Paris" in request
    assert '- unit ("celsius"|"fahrenheit", optional, default "celsius"): temperature scale' in request
    assert "- days (integer, optional): how many days ahead" in request
    later = phases.act_request(2, "look again", goal, app.tools["weather"])
    assert later.startswith(f"Goal: {goal}\nArguments of weather:\n")
    system = act[0].content
    assert '- weather(city: string, unit?: "celsius"|"fahrenheit" = "celsius", days?: integer): The weather' in system
