"""A run answers directly when no tool applies (a plan of ``{"answer": ...}``), and the outcome checks still
decide whether that answer stands."""

from __future__ import annotations

import pytest

from agentd import Goal
from agentd.engine import gbnf, phases, selection
from agentd.engine.structured import Invalid
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
    assert len(model.calls) == 1 and 'write the answer: {"answer"' in model.calls[0]["messages"][-1].content


def test_a_direct_answer_the_checks_contradict_is_sent_back_to_work_with_no_second_direct_answer(scripted):
    app, model = scripted([{"answer": "I saved your notes in notes.txt"}, plan(("look", "list_files")),
                           call("list_files"), feedback("done", final_answer="There are no notes yet.")],
                          settings=DIRECT)
    run_id, out = run(app, "Where are my notes?")
    verify = [p for p in app.journal.phases(run_id) if p["kind"] == "verify"]
    assert verify and any("notes.txt, which this run did not write" in f["message"] for f in verify[0]["findings"])
    assert '{"answer"' not in model.calls[1]["messages"][-1].content  # the repair plan needs steps
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


def test_direct_answers_can_be_turned_off_and_are_never_offered_where_a_tool_plainly_applies(scripted):
    app, model = scripted([{"answer": "hi"}, plan(("answer", "final_answer")), call("final_answer", answer="hi")],
                          settings={"loop.direct_answers": False})
    run_id, out = run(app, "Say hello to me")
    assert [c["tool"] for c in app.journal.tool_calls(run_id)] == ["final_answer"] and out["status"] == "succeeded"
    assert '{"answer"' not in model.calls[0]["messages"][-1].content
    app, model = scripted([plan(("write it", "write_file")), call("write_file", path="a.txt", content="x"),
                           feedback("done", final_answer="ok")], settings=DIRECT)
    run(app, "Write x into a.txt")  # a file to write: a tool applies
    assert '{"answer"' not in model.calls[0]["messages"][-1].content


def test_a_goal_that_asks_for_something_done_is_never_offered_a_direct_answer(scripted):
    """No file name to go by ("the fruit file"), but "create" asks for something to be done: a tool applies."""
    app, model = scripted([plan(("write it", "write_file")), call("write_file", path="fruit.txt", content="mango"),
                           feedback("done", final_answer="Created fruit.txt.")], settings=DIRECT)
    run(app, "Create the fruit file again, like last time")
    assert '{"answer"' not in model.calls[0]["messages"][-1].content


def test_an_answer_alone_to_a_goal_that_asks_for_something_done_is_sent_back_to_work(scripted):
    """A plan of the answer tool alone says "done" but did nothing: the checks contradict it, and the repair
    plan does the work."""
    answer_only = [plan(("answer", "final_answer")), call("final_answer", answer="Done: the fruit file is created.")]
    app, model = scripted([*answer_only, plan(("write it", "write_file")),
                           call("write_file", path="fruit.txt", content="mango"),
                           feedback("done", final_answer="Created fruit.txt.")])
    run_id, out = run(app, "Create the fruit file again, like last time")
    verify = [p for p in app.journal.phases(run_id) if p["kind"] == "verify"]
    assert verify and [f["check"] for f in verify[0]["findings"]] == ["acted"]
    assert out["status"] == "succeeded" and [c["tool"] for c in app.journal.tool_calls(run_id)][-1] == "write_file"
    app, _ = scripted([*answer_only, *answer_only])
    _, out = run(app, "Create the fruit file again, like last time")  # the repair did nothing either
    assert out["status"] == "failed" and out["stop_reason"] == "unverified"


def test_questions_may_be_answered_and_goals_that_name_a_file_or_ask_to_act_may_not():
    from agentd.engine.verify import needs_tools

    for goal in ["Who wrote Pride and Prejudice?", "Say hello to me", "Calculate the area of a circle of radius 2",
                 "Can you write a book?", "How do I make bread?", "Explain how a compiler works",
                 "Create a haiku about autumn", "Make a list of three fruits"]:
        assert not needs_tools(goal), goal
    for goal in ["Create the fruit file again, like last time", "Remember that my favourite colour is green",
                 "Please delete the old logs", "Can you copy the notes for me?", "Read the notes and then save a summary", "Write kiwi to k.txt",
                 "Run the tests", "Tell me what notes.txt says", "Summarise https://example.com/a",
                 "Read the file and tell me what it says", "Which files are in the workspace?"]:
        assert needs_tools(goal), goal


def test_the_answer_option_leads_only_when_no_tool_shares_a_word_with_the_goal(scripted):
    """A small model takes the option named first: the answer leads where no offered tool is about anything
    the goal says; where one is, "auto" (the tiny profile) offers no answer and true offers it last."""
    text = "How long is a haiku text?"  # write_file writes "text" to a file: a tool may apply
    app, model = scripted([{"answer": "Leonardo da Vinci"}, plan(("answer", "final_answer")),
                           call("final_answer", answer="Short.")])
    run(app, "Who painted the Mona Lisa?")
    run(app, text)
    unmatched, auto = (model.calls[i]["messages"][-1].content.splitlines()[-1] for i in (0, 1))
    assert unmatched.startswith('If none of the tools fits the goal, write the answer: {"answer": "..."}. Else')
    assert auto.startswith("Write the plan") and '{"answer"' not in auto
    app, model = scripted([{"answer": "It is short."}], settings=DIRECT)
    run(app, text)
    last = model.calls[0]["messages"][-1].content.splitlines()[-1]
    assert last.startswith("Write the plan") and last.endswith('write the answer: {"answer": "..."}).')
    assert selection.matching_tools("Who painted the Mona Lisa?", app.tools) == []
    assert "write_file" in selection.matching_tools(text, app.tools)


def test_an_answer_that_says_nothing_is_refused_by_the_parser_and_the_grammar(scripted):
    """The 135M model copied the prompt's placeholder ({"answer": "..."}) when the answer option led."""
    app, _ = scripted()
    with pytest.raises(Invalid):
        phases.parse_plan({"answer": "..."}, app.tools, 3, direct=True)
    assert phases.parse_plan({"answer": "Paris."}, app.tools, 3, direct=True).answer == "Paris."
    grammar = gbnf.to_gbnf(phases.plan_schema(app.tools, 3, direct=True))
    answer_rule = next(line for line in grammar.splitlines() if line.startswith("answer") or "-answer ::=" in line)
    assert answer_rule.split("::=")[1].strip().startswith(f'"\\"" {gbnf.WORD_START} ')
