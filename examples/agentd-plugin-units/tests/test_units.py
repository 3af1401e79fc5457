"""The plugin's own tests: the tool through agentd's executor, and a whole goal with a scripted model."""

from __future__ import annotations

import agentd_units
import pytest

from agentd import Goal, ToolContext
from agentd.testing import call, feedback, make_test_app, plan
from agentd.tools import Tool, execute


def run(tmp_path, precision=None, **args):
    tool = Tool.from_function(agentd_units.convert_units)
    settings = {} if precision is None else {"precision": precision}
    return execute(tool, args, ToolContext(run_id="t", workspace=tmp_path, settings=settings))


@pytest.mark.parametrize(
    ("value", "src", "dst", "expected"),
    [(5, "km", "mi", 3.10686), (100, "C", "F", 212.0), (32, "F", "K", 273.15), (2, "h", "min", 120.0),
     (1, "lb", "g", 453.59237)],
)
def test_conversions(tmp_path, value, src, dst, expected):
    result = run(tmp_path, value=value, from_unit=src, to_unit=dst)
    assert result.error is None
    assert result.data["value"] == pytest.approx(expected, rel=1e-5)


def test_precision_setting_rounds_the_text(tmp_path):
    assert run(tmp_path, precision=3, value=5, from_unit="km", to_unit="mi").output == "5 km = 3.11 mi"


def test_mixed_dimensions_and_unknown_units_are_errors_the_model_can_read(tmp_path):
    assert "pick units of one kind" in run(tmp_path, value=1, from_unit="kg", to_unit="m").error
    assert "to_unit" in run(tmp_path, value=1, from_unit="kg", to_unit="furlong").error
    assert "absolute zero" in run(tmp_path, value=-500, from_unit="C", to_unit="K").error


def test_schema_comes_from_the_signature():
    tool = Tool.from_function(agentd_units.convert_units)
    props = tool.parameters["properties"]
    assert props["value"]["type"] == "number"
    assert "km" in props["from_unit"]["enum"] and "ctx" not in props
    assert tool.description.startswith("Convert a quantity")


def test_a_goal_calls_the_tool_through_the_installed_entry_point(tmp_path):
    app, _ = make_test_app(tmp_path, [
        plan(("convert", "convert_units")),
        call("convert_units", value=10, from_unit="km", to_unit="mi"),
        feedback("done", final_answer="about 6.2 miles"),
    ])
    assert app.tools["convert_units"].plugin == "units"
    outcome = app.engine.run(app.engine.submit(Goal(text="how many miles is 10 km?")))
    assert outcome["status"] == "succeeded"
    [record] = app.journal.tool_calls(outcome["run_id"])
    assert record["result"]["output"] == "10 km = 6.21371 mi"
