"""Every branch of the loop, driven by the scripted model."""

from __future__ import annotations

import json
import threading
import time

import pytest

from agentd import Budgets, Goal, ToolResult, hookimpl
from agentd.engine import phases
from agentd.testing import call, feedback, plan

WRITE = plan(("write the file", "write_file"))


def run(app, goal="make a.txt", **goal_kwargs):
    engine = app.engine
    run_id = engine.submit(Goal(text=goal, **goal_kwargs))
    return run_id, engine.run(run_id)


def kinds(app, run_id):
    return [p["kind"] for p in app.journal.phases(run_id)]


def test_done_writes_the_file_and_succeeds(scripted):
    app, model = scripted([WRITE, call("write_file", path="a.txt", content="x"), feedback("done", final_answer="ok")])
    run_id, out = run(app)
    assert out["status"] == "succeeded" and out["stop_reason"] == "done"
    assert out["final_answer"] == "ok"
    assert (app.config.workspaces / run_id / "a.txt").read_text() == "x"
    assert kinds(app, run_id) == ["context", "plan", "critique", "act", "tool", "feedback", "stop"]
    assert app.journal.get_run(run_id)["status"] == "succeeded"


def test_continue_moves_to_the_next_step(scripted):
    two = plan(("write a", "write_file"), ("write b", "write_file"))
    app, _ = scripted([two, call("write_file", path="a.txt", content="1"), feedback("continue"),
                       call("write_file", path="b.txt", content="2"), feedback("done")])
    run_id, out = run(app)
    assert out["status"] == "succeeded" and out["steps"] == 2
    assert sorted(p.name for p in (app.config.workspaces / run_id).iterdir()) == ["a.txt", "b.txt"]


def test_give_up_fails(scripted):
    app, _ = scripted([WRITE, call("write_file", path="a.txt", content="x"), feedback("give_up", "impossible")])
    _, out = run(app)
    assert out["status"] == "failed" and out["stop_reason"] == "gave_up"


def test_final_answer_tool_ends_the_run(scripted):
    app, _ = scripted([plan(("answer", "final_answer")), call("final_answer", answer="42")])
    _, out = run(app, "Say 42")
    assert out["status"] == "succeeded" and out["final_answer"] == "42"


def test_malformed_json_is_repaired_without_a_retry(scripted):
    broken = '{"steps": [{"intent": "write the file", "tool": "write_file"}'  # unclosed
    app, model = scripted([broken, call("write_file", path="a.txt", content="x"), feedback("done")])
    run_id, out = run(app)
    assert out["status"] == "succeeded"
    plan_phase = next(p for p in app.journal.phases(run_id) if p["kind"] == "plan")
    assert plan_phase["repaired"] is True and plan_phase["attempts"] == 1


def test_invalid_output_is_re_asked_with_the_error(scripted):
    app, model = scripted(["I think we should write a file.", WRITE,
                           call("write_file", path="a.txt", content="x"), feedback("done")])
    run_id, out = run(app)
    assert out["status"] == "succeeded"
    retry_prompt = model.calls[1]["prompt"]
    assert "That reply was not valid" in retry_prompt and "no JSON" in retry_prompt


def test_output_that_never_validates_stops_with_a_reason(scripted):
    app, _ = scripted(["nope", "still nope", "no"])
    run_id, out = run(app)
    assert out["status"] == "failed" and out["stop_reason"] == "invalid_model_output"
    assert "no valid output after 3 attempts" in out["detail"]
    assert app.journal.get_run(run_id)["status"] == "failed"


def test_unknown_tool_in_the_act_is_re_asked(scripted):
    app, model = scripted([WRITE, call("launch_rockets", n=1), call("write_file", path="a.txt", content="x"),
                           feedback("done")])
    _, out = run(app)
    assert out["status"] == "succeeded"
    assert "unknown tool 'launch_rockets'" in model.calls[2]["prompt"]


def test_plan_with_unknown_tool_is_revised_by_the_rule_critic(scripted):
    app, model = scripted([plan(("fly", "teleport")), WRITE, call("write_file", path="a.txt", content="x"),
                           feedback("done")])
    run_id, out = run(app)
    assert out["status"] == "succeeded" and out["replans"] == 1
    critiques = [p["critique"] for p in app.journal.phases(run_id) if p["kind"] == "critique"]
    assert critiques[0]["verdict"] == "revise" and "unknown tool 'teleport'" in critiques[0]["reasons"][0]
    assert critiques[1]["verdict"] == "approve"
    assert "unknown tool 'teleport'" in model.calls[1]["prompt"]  # the reason reached the replanning prompt


def test_model_critic_reject_stops_the_run(scripted):
    app, _ = scripted([WRITE, {"verdict": "reject", "reasons": ["cannot be done"]}],
                      settings={"loop.critic": "model"})
    _, out = run(app)
    assert out["status"] == "failed" and out["stop_reason"] == "plan_rejected"
    assert "cannot be done" in out["detail"]


def test_model_critic_revise_then_approve(scripted):
    app, _ = scripted([WRITE, {"verdict": "revise", "reasons": ["name the file"]}, WRITE,
                       {"verdict": "approve", "reasons": []}, call("write_file", path="a.txt", content="x"),
                       feedback("done")], settings={"loop.critic": "both"})
    _, out = run(app)
    assert out["status"] == "succeeded" and out["replans"] == 1


def test_tool_error_is_data_and_the_loop_goes_on(scripted):
    app, model = scripted([plan(("read it", "read_file")), call("read_file", path="missing.txt"),
                           feedback("give_up", "no such file")], settings={"loop.ground_paths": False})
    run_id, out = run(app)
    assert out["stop_reason"] == "gave_up"
    assert "Error: no file 'missing.txt'" in model.calls[2]["prompt"]  # feedback saw the error


def test_path_traversal_is_refused_as_a_tool_error(scripted):
    app, model = scripted([WRITE, call("write_file", path="../escape.txt", content="x"), feedback("give_up")],
                          settings={"loop.ground_paths": False})
    run_id, _ = run(app)
    assert not (app.config.workspaces / "escape.txt").exists()
    assert "leaves the workspace" in model.calls[2]["prompt"]


def test_repeated_identical_failure_forces_a_replan_then_stops_as_a_loop(scripted):
    same = call("read_file", path="missing.txt")
    two = plan(("read it", "read_file"), ("read it again", "read_file"))
    app, _ = scripted([two, same, feedback("continue"), same, two, same], settings={"loop.ground_paths": False})
    run_id, out = run(app, "tidy the notes", budgets=Budgets(max_replans=5))
    assert out["status"] == "stopped" and out["stop_reason"] == "loop"
    assert "replan" in kinds(app, run_id)


def test_a_step_that_worked_done_again_is_not_a_wrong_turn_but_a_third_time_is_a_loop(scripted):
    """The bundled model plans "write the file" twice; replanning after the second, identical, successful write
    made it overwrite the right file with a wrong one. Only a third identical call ends the run."""
    same = call("write_file", path="a.txt", content="x")
    two = plan(("write a", "write_file"), ("write a again", "write_file"))
    app, _ = scripted([two, same, feedback("continue"), same, feedback("replan", "again"), WRITE, same])
    run_id, out = run(app, "tidy the notes")  # nothing the checks can see
    assert "replan" not in kinds(app, run_id)  # the model was asked after the second write, not overruled
    assert out["status"] == "stopped" and out["stop_reason"] == "loop"


def test_a_repeated_step_that_worked_ends_the_run_when_the_checks_show_the_goal_reached(scripted):
    """A small model plans the write twice; the second identical write is not a loop when a.txt holds x."""
    same = call("write_file", path="a.txt", content="x")
    two = plan(("write a", "write_file"), ("write a again", "write_file"))
    app, model = scripted([two, same, feedback("continue"), same])
    run_id, out = run(app, "Create a file named a.txt containing x")
    assert out["status"] == "succeeded" and out["verified"] is True
    assert "a.txt" in out["final_answer"] and "repeated a step that had worked" in out["detail"]
    assert len(model.calls) == 4  # plan, write, continue, write: no replan and no further model call


@pytest.mark.parametrize(
    ("budgets", "reason"),
    [
        (Budgets(max_steps=1), "max_steps"),
        (Budgets(max_replans=0), "max_replans"),
        (Budgets(max_tokens=100), "max_tokens"),
    ],
)
def test_budgets_stop_with_their_reason(scripted, budgets, reason):
    loop_forever = [WRITE, call("write_file", path="a.txt", content="1"), feedback("replan", "again"),
                    WRITE, call("write_file", path="b.txt", content="2"), feedback("continue")]
    app, _ = scripted(loop_forever * 3)
    _, out = run(app, budgets=budgets)
    assert out["status"] == "stopped" and out["stop_reason"] == reason
    assert out["steps"] >= 0 and out["usage"]["model_calls"] >= 1  # the partial result is kept


def test_wall_clock_budget(scripted):
    app, model = scripted([WRITE, call("write_file", path="a.txt", content="x"), feedback("continue")] * 3)
    model.delay_s = 0.05
    _, out = run(app, budgets=Budgets(max_seconds=0.05))
    assert out["stop_reason"] == "timeout" and out["status"] == "stopped"


def test_hanging_tool_times_out_and_the_run_continues(scripted):
    release = threading.Event()

    class Slow:
        @hookimpl
        def register_tools(self, register):
            def wait_forever() -> str:
                """Never returns."""
                release.wait(30)
                return "late"

            register(wait_forever)

    app, model = scripted([plan(("wait", "wait_forever")), call("wait_forever"), feedback("give_up")],
                          extra_plugins=(Slow(),))
    _, out = run(app, budgets=Budgets(tool_timeout_s=0.2))
    release.set()
    assert out["stop_reason"] == "gave_up"
    assert "timed out after 0.2s" in model.calls[2]["prompt"]


def test_raising_tool_becomes_an_error_observation(scripted):
    class Boom:
        @hookimpl
        def register_tools(self, register):
            def explode() -> str:
                """Always fails."""
                raise RuntimeError("kaboom")

            register(explode)

    app, model = scripted([plan(("boom", "explode")), call("explode"), feedback("give_up")], extra_plugins=(Boom(),))
    run_id, out = run(app)
    assert "RuntimeError: kaboom" in model.calls[2]["prompt"]
    assert app.journal.tool_calls(run_id)[0]["status"] == "finished"


def test_cancel_between_phases(scripted):
    cancel = threading.Event()
    app, _ = scripted([WRITE, call("write_file", path="a.txt", content="x"), feedback("continue")])
    engine = app.engine
    run_id = engine.submit(Goal(text="x"))
    seen = []

    def on_event(type_, data):
        seen.append(type_)
        if type_ == "plan":
            cancel.set()

    out = engine.run(run_id, on_event=on_event, cancel=cancel)
    assert out["status"] == "cancelled" and out["stop_reason"] == "cancelled"
    assert "tool_call" not in seen and seen[-1] == "run_finished"


def test_empty_goal_is_refused(scripted):
    app, _ = scripted([])
    with pytest.raises(Exception, match="the goal is empty"):
        app.engine.submit(Goal(text="   "))


def test_resume_replays_the_journal_and_continues(scripted, home):
    """A run interrupted after its act (the tool never ran) resumes: the tool runs once, nothing is re-asked."""
    app, model = scripted([WRITE, call("write_file", path="a.txt", content="x")])
    engine = app.engine
    run_id = engine.submit(Goal(text="x"))
    stop_after_act = threading.Event()

    def on_event(type_, data):
        if type_ == "tool_call":
            stop_after_act.set()

    out = engine.run(run_id, on_event=on_event, cancel=stop_after_act)
    assert out["status"] == "cancelled"
    # Simulate a crash instead of a cancel: remove the stop phase as if the process died before it.
    app.journal._db.execute("DELETE FROM phases WHERE run_id = ? AND kind = 'stop'", (run_id,))
    app.journal._db.execute("UPDATE runs SET status = 'running' WHERE id = ?", (run_id,))  # as a crash leaves it
    model.enqueue([feedback("done", final_answer="resumed")])
    calls_before = len(model.calls)
    out = engine.run(run_id)
    assert out["status"] == "succeeded" and out["final_answer"] == "resumed"
    assert len(model.calls) == calls_before + 1  # only the feedback was asked; plan and act were replayed
    assert [c["status"] for c in app.journal.tool_calls(run_id)] == ["finished"]


def test_a_crash_between_the_done_decision_and_its_stop_does_not_run_the_step_again(scripted):
    """Found by the kill -9 torture (issue 15): resumed after a `done` feedback whose stop was never journaled,
    the run went back to `act` and executed its step a second time."""
    app, model = scripted([WRITE, call("write_file", path="a.txt", content="x"), feedback("done", final_answer="ok")])
    run_id = app.engine.submit(Goal(text="x"))
    assert app.engine.run(run_id)["status"] == "succeeded"
    # What a kill -9 right after the feedback phase leaves: no stop phase, the run still `running`.
    app.journal._db.execute("DELETE FROM phases WHERE run_id = ? AND kind = 'stop'", (run_id,))
    app.journal._db.execute("UPDATE runs SET status = 'running' WHERE id = ?", (run_id,))
    calls_before = len(model.calls)
    out = app.engine.run(run_id)
    assert (out["status"], out["final_answer"]) == ("succeeded", "ok")
    assert len(model.calls) == calls_before and len(app.journal.tool_calls(run_id)) == 1
    assert [p["kind"] for p in app.journal.phases(run_id)][-2:] == ["feedback", "stop"]


def test_resume_does_not_rerun_an_interrupted_tool_call(scripted):
    app, model = scripted([WRITE, call("write_file", path="a.txt", content="x"), feedback("done")])
    engine = app.engine
    run_id = engine.submit(Goal(text="x"))
    journal = app.journal
    # Journal state as a crash mid-tool leaves it: plan, critique, act done; tool call started, never finished.
    for kind, data in (("context", {"memories": []}),
                       ("plan", {"plan": WRITE, "request": "Goal: x\nWrite the plan.", "reply": json.dumps(WRITE)}),
                       ("critique", {"critique": {"verdict": "approve", "reasons": [], "critic": "rules"}}),
                       ("act", {"call": {"tool": "write_file", "args": {"path": "a.txt", "content": "x"}}})):
        journal.add_phase(run_id, kind, data, time.time())
    journal.tool_call_started(run_id, 0, "write_file", {"path": "a.txt", "content": "x"})
    model._queue.clear()
    # The loop decides: here it retries the step, so the file is written exactly once, by the new call.
    model.enqueue([feedback("continue"), call("write_file", path="a.txt", content="x"), feedback("done")])
    out = engine.run(run_id)
    assert out["status"] == "succeeded", out
    assert "interrupted by a daemon restart" in model.calls[0]["prompt"]  # the feedback phase was told
    assert [c["status"] for c in journal.tool_calls(run_id)] == ["interrupted", "finished"]


def test_awaiting_approval_then_approve_and_deny(scripted):
    app, _ = scripted([WRITE, call("write_file", path="a.txt", content="x"), feedback("done"),
                       WRITE, call("write_file", path="b.txt", content="y")])
    engine = app.engine
    run_id, out = run(app, allowed_tools=["read_file"])
    assert out["status"] == "awaiting_approval"
    assert not (app.config.workspaces / run_id / "a.txt").exists()
    engine.decide(run_id, approved=True)
    out = engine.run(run_id)
    assert out["status"] == "succeeded" and (app.config.workspaces / run_id / "a.txt").exists()

    other, out = run(app, allowed_tools=["read_file"])
    engine.decide(other, approved=False)
    out = engine.run(other)
    assert out["status"] == "failed" and out["stop_reason"] == "denied"
    assert not (app.config.workspaces / other / "b.txt").exists()


def test_events_are_journaled_in_order(scripted):
    app, _ = scripted([WRITE, call("write_file", path="a.txt", content="x"), feedback("done")])
    run_id, _ = run(app)
    types = [e["type"] for e in app.journal.events(run_id)]
    assert types == ["run_started", "plan", "critique", "tool_call", "observation", "feedback", "run_finished"]
    seqs = [e["seq"] for e in app.journal.events(run_id)]
    assert seqs == sorted(seqs) and app.journal.events(run_id, after=seqs[2])[0]["seq"] == seqs[3]


def test_prompt_prefix_is_stable_across_phases(scripted):
    """Each phase's prompt extends the previous one: the condition for llama.cpp's prefix cache to work."""
    app, model = scripted([WRITE, call("write_file", path="a.txt", content="x"), feedback("done")])
    run(app)
    prompts = [c["messages"] for c in model.calls]
    for earlier, later in zip(prompts, prompts[1:]):
        shared = earlier[:-1]  # everything but the earlier request reappears at the start of the later prompt
        assert [m.content for m in later[: len(shared)]] == [m.content for m in shared]


class Shout:
    """A third-party tool with goal phrases, as a pip-installed plugin would register it."""

    @hookimpl
    def register_tools(self, register):
        def shout(text: str) -> ToolResult:
            """Say the text loudly."""
            return ToolResult(output=text.upper(), data={"value": text.upper()})

        register(shout, goal_phrases=("shout it", "say it loudly"))


def test_a_goal_that_names_a_tool_gets_it_as_the_first_step(scripted):
    ignored = plan(("look around", "list_files"))
    app, model = scripted([ignored, plan(("say hi", "shout")), call("shout", text="hi"), feedback("done", "ok", "HI")],
                          extra_plugins=(Shout(),))
    app.models.get().structured = "grammar"  # so the schema travels with the call (the scripted model ignores it)
    run_id, out = run(app, goal="Greet me. Shout it!")
    assert out["status"] == "succeeded"
    planned = next(p for p in app.journal.phases(run_id) if p["kind"] == "plan")
    assert planned["requested_tools"] == ["shout"] and planned["attempts"] == 2
    assert "the goal asks for shout: step 1 must use it" in planned["retry_errors"][0]
    schema = model.calls[0]["kwargs"]["response_format"]["schema"]
    assert schema["properties"]["steps"]["prefixItems"][0]["properties"]["tool"]["enum"] == ["shout"]
    plan_event = next(e for e in app.journal.events(run_id) if e["type"] == "plan")
    assert plan_event["data"]["requested_tools"] == ["shout"]


def test_tool_requests_can_be_turned_off_and_do_not_bind_a_replan(scripted):
    app, model = scripted([plan(("look around", "list_files")), call("list_files"), feedback("done", "ok", "x")],
                          extra_plugins=(Shout(),), settings={"loop.tool_requests": "off"})
    run_id, out = run(app, goal="Shout it")
    planned = next(p for p in app.journal.phases(run_id) if p["kind"] == "plan")
    assert out["status"] == "succeeded" and planned["attempts"] == 1 and "requested_tools" not in planned
    app2, _ = scripted([plan(("say", "shout")), call("shout", text="a"), feedback("replan", "try else"),
                        plan(("look", "list_files")), call("list_files"), feedback("done", "ok", "x")],
                       extra_plugins=(Shout(),))
    run_id, out = run(app2, goal="Shout it")
    plans = [p for p in app2.journal.phases(run_id) if p["kind"] == "plan"]
    assert out["status"] == "succeeded" and "requested_tools" in plans[0] and "requested_tools" not in plans[1]


def test_a_done_answer_leads_with_the_last_steps_value_under_a_grammar(scripted):
    app, model = scripted([plan(("say hi", "shout")), call("shout", text="hi"), feedback("done", "ok", "HI")],
                          extra_plugins=(Shout(),))
    handle = app.models.get()
    handle.structured = "grammar"  # the scripted model ignores the grammar; the schema it was sent is checked
    run_id, out = run(app, goal="say hi")
    fed = next(p for p in app.journal.phases(run_id) if p["kind"] == "feedback")
    assert out["final_answer"] == "HI" and fed["answer_lead"] == "HI"
    schema = model.calls[-1]["kwargs"]["response_format"]["schema"]
    done = next(o for o in schema["anyOf"] if o["properties"]["decision"]["enum"] == ["done"])
    assert done["properties"]["final_answer"]["x-prefix"] == "HI"
    handle.structured = "prompt"  # without a grammar there is no lead: the validator does not impose one
    model.enqueue([plan(("say hi", "shout")), call("shout", text="hi"), feedback("done", "ok", "it is HI")])
    run_id, out = run(app, goal="say hi")
    assert out["final_answer"] == "it is HI"
    assert "answer_lead" not in next(p for p in app.journal.phases(run_id) if p["kind"] == "feedback")


def test_a_plan_that_repeats_a_step_in_other_words_keeps_it_once(scripted):
    stutter = plan(("17 * 23", "shout"), ("23 * 17", "shout"), ("17 * 23", "shout"))
    app, _ = scripted([stutter, call("shout", text="391"), feedback("done", "ok", "391")], extra_plugins=(Shout(),))
    run_id, out = run(app, goal="compute")
    assert out["status"] == "succeeded" and out["steps"] == 1
    planned = next(p for p in app.journal.phases(run_id) if p["kind"] == "plan")
    assert [s["intent"] for s in planned["plan"]["steps"]] == ["17 * 23"]
    kept = phases.parse_plan(plan(("write a", "write_file"), ("write b", "write_file")), app.tools, 3)
    assert len(kept.steps) == 2


def _overflowing(monkeypatch, overflows: int) -> list[int]:
    """llama.cpp refusing the first ``overflows`` prompts as too long for its window; returns each prompt's size."""
    from agentd.engine import loop as loop_module

    real, sizes = loop_module.structured.ask, []

    def ask(handle, messages, *args, **kwargs):
        sizes.append(sum(len(text) for _, text in messages))
        if len(sizes) <= overflows:
            raise ValueError("Requested tokens (4163) exceed context window of 4096")
        return real(handle, messages, *args, **kwargs)

    monkeypatch.setattr(loop_module.structured, "ask", ask)
    return sizes


def test_a_prompt_that_overflows_the_context_is_asked_again_with_older_turns_dropped(scripted, monkeypatch):
    app, _ = scripted([WRITE, call("write_file", path="a.txt", content="x"), feedback("done", final_answer="ok")])
    sizes = _overflowing(monkeypatch, overflows=1)
    _, out = run(app, "Create a file named a.txt containing x")
    assert out["status"] == "succeeded" and len(sizes) == 4  # the plan twice, then act and feedback


def test_a_prompt_that_never_fits_ends_the_run_with_what_to_do(scripted, monkeypatch):
    app, _ = scripted([WRITE])
    sizes = _overflowing(monkeypatch, overflows=99)
    _, out = run(app)
    assert out["status"] == "failed" and len(sizes) == 3
    assert "does not fit the model's context of 4096 tokens" in out["detail"] and "n_ctx" in out["detail"]
