"""A whole run with a scripted model whose act step calls run_python: the real sandbox computes, the model sees it."""

from __future__ import annotations

import pytest

from agentd import Goal
from agentd.testing import call, feedback, plan

pytestmark = pytest.mark.integration


def test_goal_sees_the_sandboxed_result(scripted):
    seen: list[str] = []

    def judge(prompt: str) -> dict:
        seen.append(prompt)
        return feedback("done", summary="computed", final_answer="17*23 = 391")

    app, _ = scripted([plan(("compute 17*23", "run_python")), call("run_python", code="print(17*23)"), judge])
    run_id = app.engine.submit(Goal(text="What is 17*23? Compute it with Python."))
    outcome = app.engine.run(run_id)

    assert outcome["status"] == "succeeded"
    [tool_call] = app.journal.tool_calls(run_id)
    assert tool_call["tool"] == "run_python"
    assert tool_call["result"]["error"] is None
    assert tool_call["result"]["output"].split("stdout:\n")[1].strip() == "391"
    assert "391" in seen[0]  # the feedback prompt carried the observation to the model


def test_failing_code_is_an_observation_not_a_crash(scripted):
    app, _ = scripted([
        plan(("divide", "run_python")),
        call("run_python", code="print(1/0)"),
        feedback("give_up", summary="the code failed"),
    ])
    run_id = app.engine.submit(Goal(text="divide by zero"))
    app.engine.run(run_id)
    [tool_call] = app.journal.tool_calls(run_id)
    assert "ZeroDivisionError" in tool_call["result"]["error"]
    assert tool_call["result"]["data"]["exit_code"] == 1
