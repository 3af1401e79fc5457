"""Direct calls (``loop.direct_calls``): when one tool call reaches the goal, the plan reply is that call, so plan
and act take one model call; a call that works ends the run by the rules, the outcome checks deciding whether
its result stands. Goals that take more steps keep the full loop; "auto" (the default) keeps it too for goals
that name a file to write or ask for a tool."""

from __future__ import annotations

from agentd import Goal, Tool
from agentd.engine import gbnf, phases
from agentd.testing import call, feedback, plan

OFF, ON = {"loop.direct_calls": "off"}, {"loop.direct_calls": "on"}


def run(app, goal):
    run_id = app.engine.submit(Goal(text=goal))
    return run_id, app.engine.run(run_id)


def kinds(app, run_id):
    return [p["kind"] for p in app.journal.phases(run_id)]


def test_a_one_call_goal_takes_one_model_call_for_plan_and_act(scripted, home):
    app, model = scripted([call("read_file", path="notes.txt")])
    run_id = app.engine.submit(Goal(text="What does notes.txt say?"))
    (app.config.workspaces / run_id / "notes.txt").write_text("buy milk")
    out = app.engine.run(run_id)
    assert out["status"] == "succeeded" and "buy milk" in out["final_answer"] and len(model.calls) == 1
    assert kinds(app, run_id) == ["context", "plan", "critique", "tool", "feedback", "stop"]
    assert "if one tool call reaches the goal, write that call" in model.calls[0]["messages"][-1].content


def test_with_direct_calls_on_a_file_goal_takes_one_model_call_too(scripted):
    app, model = scripted([call("write_file", path="kiwi.txt", content="kiwi")], settings=ON)
    run_id, out = run(app, "Write kiwi to kiwi.txt")
    assert out["status"] == "succeeded" and out["verified"] is True and out["final_answer"] == "Wrote kiwi.txt."
    assert len(model.calls) == 1 and out["usage"]["model_calls"] == 1
    assert [c["tool"] for c in app.journal.tool_calls(run_id)] == ["write_file"]
    assert kinds(app, run_id) == ["context", "plan", "critique", "tool", "feedback", "stop"]
    assert (app.config.workspaces / run_id / "kiwi.txt").read_text() == "kiwi"
    assert "if one tool call reaches the goal, write that call" in model.calls[0]["messages"][-1].content


def test_auto_keeps_plan_act_and_feedback_for_goals_that_name_a_file_to_write_or_ask_for_a_tool(scripted):
    for goal, tool, settings in [("Write kiwi to kiwi.txt", "list_files", None),
                                 ("Use Python to print 2 + 2", "run_python", None),
                                 ("What does notes.txt say?", "list_files", OFF)]:
        args = {"code": "print(2 + 2)"} if tool == "run_python" else {}
        app, model = scripted([plan(("do it", tool)), call(tool, **args), feedback("done", final_answer="4")],
                              settings=settings)
        run_id, out = run(app, goal)
        assert len(model.calls) == 3 and "act" in kinds(app, run_id), goal
        assert "reaches the goal, write that call" not in model.calls[0]["messages"][-1].content


def test_a_goal_no_tool_applies_to_ends_with_a_direct_answer_and_no_tool_call(scripted):
    app, model = scripted([{"answer": "Hello! How can I help?"}], settings={"loop.direct_answers": True})
    run_id, out = run(app, "Say hello to me")
    assert out["status"] == "succeeded" and out["final_answer"] == "Hello! How can I help?"
    assert app.journal.tool_calls(run_id) == [] and out["steps"] == 0 and len(model.calls) == 1
    request = model.calls[0]["messages"][-1].content
    assert 'write the answer: {"answer"' in request and "write that call" in request


def test_a_multi_step_goal_still_uses_the_full_loop(scripted, home):
    app, model = scripted(settings=ON, replies=[
        plan(("read the notes", "read_file"), ("write the copy", "write_file")),
        call("read_file", path="notes.txt"), feedback("continue"),
        call("write_file", path="copy.txt", content="buy milk"), feedback("done", final_answer="Copied."),
    ])
    run_id = app.engine.submit(Goal(text="Read notes.txt and write its text into copy.txt"))
    (app.config.workspaces / run_id / "notes.txt").write_text("buy milk")
    out = app.engine.run(run_id)
    assert out["status"] == "succeeded" and len(model.calls) == 5
    assert "write that call" in model.calls[0]["messages"][-1].content  # a call was offered; the model planned
    assert kinds(app, run_id).count("act") == 2
    assert [c["tool"] for c in app.journal.tool_calls(run_id)] == ["read_file", "write_file"]


def test_a_direct_call_that_fails_goes_on_in_the_full_loop(scripted):
    app, model = scripted([call("read_file", path="missing.txt"), feedback("continue"),
                           call("list_files"), feedback("done", final_answer="The workspace is empty.")])
    run_id, out = run(app, "Show me what missing.txt says")
    assert [c["tool"] for c in app.journal.tool_calls(run_id)] == ["read_file", "list_files"]
    assert len(model.calls) == 4 and "act" in kinds(app, run_id)
    assert out["final_answer"] == "The workspace is empty."


def test_a_direct_call_whose_result_the_checks_contradict_does_not_stand(scripted):
    app, model = scripted([call("write_file", path="k.txt", content="apple"),
                           call("write_file", path="k.txt", content="kiwi")], settings=ON)
    run_id, out = run(app, "Write kiwi to k.txt")
    verify = [p for p in app.journal.phases(run_id) if p["kind"] == "verify"]
    assert verify and "does not contain 'kiwi'" in verify[0]["findings"][0]["message"]
    assert out["status"] == "succeeded" and len(model.calls) == 2  # the repair round wrote it right
    assert (app.config.workspaces / run_id / "k.txt").read_text() == "kiwi"


def test_a_direct_call_is_validated_against_its_schema_and_re_asked(scripted):
    seen = []
    app, model = scripted([call("add", a="one", b=2), call("add", a=1, b=2)])
    tool = Tool("add", "Add two integers.", parameters={
        "type": "object", "properties": {"a": {"type": "integer", "description": "first"}, "b": {"type": "integer"}},
        "required": ["a", "b"]}, fn=lambda a, b: seen.append((a, b)) or str(a + b))
    app.tools.register_for("test")(tool)
    run_id, out = run(app, "Add 1 and 2")
    assert seen == [(1, 2)] and len(model.calls) == 2
    assert "That reply was not valid" in model.calls[1]["messages"][-1].content
    plan_phase = next(p for p in app.journal.phases(run_id) if p["kind"] == "plan")
    assert plan_phase["plan"]["call"] == {"tool": "add", "args": {"a": 1, "b": 2}, "reasoning": ""}
    assert "- a (integer, required): first" in model.calls[0]["messages"][0].content  # the contract, up front


def test_the_plan_grammar_offers_each_tools_call_and_plans_of_two_steps_or_more(scripted):
    app, _ = scripted()
    schema = phases.plan_schema(app.tools, 3, calls=True, paths=["a.txt"])
    calls = [o for o in schema["anyOf"] if "tool" in o["properties"]]
    steps = [o for o in schema["anyOf"] if "steps" in o["properties"]]
    assert {o["properties"]["tool"]["const"] for o in calls} == set(app.tools.names())
    write = next(o for o in calls if o["properties"]["tool"]["const"] == "write_file")
    assert write["properties"]["args"]["properties"]["path"] == {"type": "string", "enum": ["a.txt"]}
    assert steps[0]["properties"]["steps"]["minItems"] == 2
    gbnf.to_gbnf(schema)  # llama.cpp can take it
    asked = phases.plan_schema(app.tools, 3, first=["run_python"], calls=True)
    assert [o["properties"]["tool"]["const"] for o in asked["anyOf"] if "tool" in o["properties"]] == ["run_python"]
    assert "anyOf" not in phases.plan_schema(app.tools, 1, first=["run_python"], calls=True)  # the call alone


def test_a_goal_asking_for_a_tool_gets_its_call_or_a_plan_starting_with_it(scripted):
    app, model = scripted([call("list_files"), call("run_python", code="print(17*23)")], settings=ON)
    run_id, out = run(app, "What is 17 * 23? Use Python to compute it.")
    first = next(p for p in app.journal.phases(run_id) if p["kind"] == "plan")
    assert "retry_errors" in first and first["plan"]["call"]["tool"] == "run_python"
