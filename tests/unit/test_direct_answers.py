"""A run answers directly when no tool applies (a plan of ``{"answer": ...}``), and the outcome checks still
decide whether that answer stands."""

from __future__ import annotations

from agentd import Goal
from agentd.engine import gbnf, phases
from agentd.testing import call, feedback, plan

DIRECT = {"loop.direct_answers": True}


def run(app, goal):
    run_id = app.engine.submit(Goal(text=goal))
    return run_id, app.engine.run(run_id)


def test_a_goal_no_tool_applies_to_ends_with_a_direct_answer_and_no_tool_call(scripted):
    app, model = scripted([{"answer": "Hello! How can I help?"}], settings=DIRECT)
    run_id, out = run(app, "Say hello to me")
    assert out["status"] == "succeeded" and out["final_answer"] == "Hello! How can I help?"
    assert app.journal.tool_calls(run_id) == [] and out["steps"] == 0
    kinds = [p["kind"] for p in app.journal.phases(run_id)]
    assert kinds == ["context", "plan", "stop"]
    assert len(model.calls) == 1 and "if no tool applies, write the answer" in model.calls[0]["messages"][-1].content


def test_a_direct_answer_the_checks_contradict_is_sent_back_to_work_with_no_second_direct_answer(scripted):
    app, model = scripted([{"answer": "I saved your notes in notes.txt"}, plan(("look", "list_files")),
                           call("list_files"), feedback("done", final_answer="There are no notes yet.")],
                          settings=DIRECT)
    run_id, out = run(app, "Where are my notes?")
    verify = [p for p in app.journal.phases(run_id) if p["kind"] == "verify"]
    assert verify and any("notes.txt, which this run did not write" in f["message"] for f in verify[0]["findings"])
    assert "if no tool applies" not in model.calls[1]["messages"][-1].content  # the repair plan needs steps
    assert out["status"] == "succeeded" and out["final_answer"] == "There are no notes yet."
    assert [c["tool"] for c in app.journal.tool_calls(run_id)] == ["list_files"]


def test_a_goal_asking_for_a_tool_cannot_be_answered_directly(scripted, home):
    app, _ = scripted([{"answer": "391"}, plan(("compute", "run_python")), call("run_python", code="print(17*23)"),
                       feedback("done", final_answer="391")], settings=DIRECT)
    run_id, _ = run(app, "What is 17 * 23? Use Python to compute it.")
    first = [p for p in app.journal.phases(run_id) if p["kind"] == "plan"][0]
    assert "retry_errors" in first and first["plan"]["steps"][0]["tool"] == "run_python"


def test_the_plan_grammar_offers_the_answer_only_when_direct_answers_are_on(scripted):
    app, _ = scripted()
    tools = app.tools
    direct = gbnf.to_gbnf(phases.plan_schema(tools, 3, direct=True))
    assert '"\\"answer\\""' in direct
    assert '"\\"answer\\""' not in gbnf.to_gbnf(phases.plan_schema(tools, 3))
    assert '"\\"answer\\""' not in gbnf.to_gbnf(phases.plan_schema(tools, 3, first=["run_python"], direct=True))


def test_direct_answers_are_off_by_default_and_never_offered_where_a_tool_plainly_applies(scripted):
    app, model = scripted([{"answer": "hi"}, plan(("answer", "final_answer")), call("final_answer", answer="hi")])
    run_id, out = run(app, "Say hello to me")
    assert [c["tool"] for c in app.journal.tool_calls(run_id)] == ["final_answer"] and out["status"] == "succeeded"
    assert "if no tool applies" not in model.calls[0]["messages"][-1].content
    app, model = scripted([plan(("write it", "write_file")), call("write_file", path="a.txt", content="x"),
                           feedback("done", final_answer="ok")], settings=DIRECT)
    run(app, "Write x into a.txt")  # a file to write: a tool applies
    assert "if no tool applies" not in model.calls[0]["messages"][-1].content
