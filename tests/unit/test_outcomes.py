"""Honest outcomes: the rule checks a ``done`` must pass, the repair round, rule-decided feedback, tool selection
and ``agentd eval``'s outside checks. Scripted models here; tests/integration/test_eval_real.py runs the real one."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from agentd import Goal, ToolResult, hookimpl
from agentd.cli import cli
from agentd.engine import phases, selection, verify
from agentd.engine.state import LoopState
from agentd.evaluation import Case, check
from agentd.testing import call, feedback, make_test_app, plan


class Calc:
    """A tool with a short answer-like result, as run_python gives (``data["value"]``)."""

    __name__ = "calc"

    @hookimpl
    def register_tools(self, register):
        def calc(expression: str) -> ToolResult:
            """Evaluate an arithmetic expression."""
            value = str(eval(expression, {"__builtins__": {}}))  # noqa: S307 - test digits only
            return ToolResult(output=value, data={"value": value})

        register(calc)


def run(app, text):
    run_id = app.engine.submit(Goal(text=text))
    return run_id, app.engine.run(run_id)


def kinds(app, run_id):
    return [p["kind"] for p in app.journal.phases(run_id)]


# -- verification ----------------------------------------------------------------------------------
def test_a_wrong_file_is_repaired_once_then_the_run_ends_unverified(tmp_path):
    wrong = [plan(("write", "write_file")), call("write_file", path="kiwi.txt", content="kiwi"),
             feedback("done", final_answer="Saved kiwi to k.txt")]
    app, model = make_test_app(tmp_path, wrong + wrong[:1] + [call("write_file", path="kiwi2.txt", content="kiwi"),
                                                              wrong[2]])
    run_id, out = run(app, "write kiwi to k.txt")
    assert out["status"] == "failed" and out["stop_reason"] == "unverified" and out["verified"] is False
    messages = [f["message"] for f in out["findings"]]
    assert any("k.txt does not exist" in m for m in messages)
    assert kinds(app, run_id).count("verify") == 1  # one repair round, not more
    assert "k.txt does not exist" in model.calls[3]["messages"][-1].content  # the replan was told why


def test_the_repair_round_can_reach_the_goal(tmp_path):
    replies = [plan(("write", "write_file")), call("write_file", path="kiwi.txt", content="kiwi"),
               feedback("done", final_answer="Saved to k.txt"),
               plan(("write", "write_file")), call("write_file", path="k.txt", content="kiwi"),
               feedback("done", final_answer="Saved kiwi to k.txt")]
    app, _ = make_test_app(tmp_path, replies)
    _, out = run(app, "write kiwi to k.txt")
    assert out["status"] == "succeeded" and out["verified"] is True and out["findings"] == []


def test_an_answer_without_the_computed_value_is_composed_from_the_evidence(tmp_path):
    replies = [plan(("compute", "calc")), call("calc", expression="23*17"),
               feedback("done", final_answer="finally")]
    app, _ = make_test_app(tmp_path, replies, extra_plugins=(Calc(),), settings={"loop.ground_answers": False})
    _, out = run(app, "What is 23 * 17?")
    assert out["status"] == "succeeded" and out["verified"] is True
    assert out["final_answer"].startswith("391")



def test_an_answer_stating_nothing_the_run_read_is_rebuilt_from_what_it_read(tmp_path):
    """The bundled model read "The secret code word is PELICAN." and answered with a loop of empty sentences
    (seen in CI): a value answer must carry something the run's tools returned, else the observed line that
    best answers the goal stands in for it."""
    degenerate = ("The goal was reached. The decision was made to reach the end. The decision was made to reach "
                  "the end. The decision was M")
    replies = [plan(("read it", "read_file")), call("read_file", path="notes.txt"),
               feedback("done", final_answer=degenerate)]
    app, _ = make_test_app(tmp_path, replies, settings={"loop.ground_answers": False})
    run_id = app.engine.submit(Goal(text="Read the file notes.txt and tell me the secret code word."))
    (app.config.workspaces / run_id / "notes.txt").write_text("Meeting at noon.\nThe secret code word is PELICAN.\n")
    out = app.engine.run(run_id)
    assert out["status"] == "succeeded" and out["verified"] is True
    assert out["final_answer"] == "The secret code word is PELICAN."


def test_an_answer_that_reports_what_was_read_stands(tmp_path):
    replies = [plan(("read it", "read_file")), call("read_file", path="notes.txt"),
               feedback("done", final_answer="It is pelican.")]
    app, _ = make_test_app(tmp_path, replies, settings={"loop.ground_answers": False})
    run_id = app.engine.submit(Goal(text="Read the file notes.txt and tell me the secret code word."))
    (app.config.workspaces / run_id / "notes.txt").write_text("The secret code word is PELICAN.\n")
    out = app.engine.run(run_id)
    assert out["status"] == "succeeded" and out["final_answer"] == "It is pelican."


def test_a_repeated_sentence_in_a_reply_is_read_once():
    assert phases.squeeze("Done. It is 4. It is 4. It is") == "Done. It is 4."
    assert phases.squeeze("a. b. a. c") == "a. b. c" and phases.squeeze("") == ""
    parsed = phases.parse_feedback({"decision": "done", "summary": "ok. ok.", "final_answer": "4. 4. 4"}, ["done"])
    assert (parsed.summary, parsed.final_answer) == ("ok.", "4.")

class Silent:
    """A code tool whose program printed nothing: only its status line carries numbers, as run_python's does."""

    __name__ = "silent"

    @hookimpl
    def register_tools(self, register):
        def run_code(code: str) -> ToolResult:
            """Run code."""
            return ToolResult(output="exit code 0 after 0.08s\nstdout: (empty)", data={"evidence": ""})

        register(run_code)


def test_numbers_from_a_status_line_are_not_a_computed_value(tmp_path):
    """The bundled model answered "Calculate 156 / 12 using Python" with the run's timing ("0.08s") after code
    that printed nothing; that claim must not pass as verified, nor even as missing evidence."""
    def attempt(code):
        return [plan(("compute", "run_code")), call("run_code", code=code),
                feedback("done", final_answer="Wrote the 0.08s to 0.00s")]
    app, _ = make_test_app(tmp_path, attempt("") + attempt("156 / 12"), extra_plugins=(Silent(),),
                           settings={"loop.ground_answers": False})
    _, out = run(app, "Calculate 156 / 12 with run_code.")
    assert out["status"] == "failed" and out["stop_reason"] == "unverified"
    assert [f["message"] for f in out["findings"]] == ["the code this run ran printed nothing that shows 0, 0.08; print the result"]


def test_a_tool_the_goal_asks_for_must_have_been_called(tmp_path):
    """ "Compute it using Python" answered after a failed run_python and a write of the guess: the answer is the
    model's, not the tool's, so it is contradicted (a repair round, then unverified), not merely unverified."""
    from types import SimpleNamespace

    from agentd import Observation, ToolCall

    def step(tool, ok, **args):
        result = ToolResult(output="ok") if ok else ToolResult(error="SyntaxError")
        return Observation(step=0, call=ToolCall(tool=tool, args=args), result=result)

    guessed = SimpleNamespace(observations=[step("run_python", False, code="print(7**3"),
                                            step("write_file", True, path="a.txt", content="343")],
                              requested_tools=["run_python"])
    ran = SimpleNamespace(observations=[step("run_python", True, code="print(7**3)")], requested_tools=["run_python"])
    findings = verify.check_tools_asked(guessed)
    assert [(f.message, f.kind) for f in findings] == [
        ("the goal asks for run_python but no step of this run called it successfully", verify.CONTRADICTED)]
    assert verify.check_tools_asked(ran) == []
    assert verify.check_tools_asked(SimpleNamespace(observations=guessed.observations, requested_tools=[])) == []


def test_the_tools_a_goal_asked_for_are_kept_from_the_first_plan(tmp_path):
    replies = [plan(("run it", "run_python")), call("run_python", code="print(7 ** 3)"),
               feedback("done", final_answer="343")]
    app, _ = make_test_app(tmp_path, replies)
    run_id = app.engine.submit(Goal(text="Compute 7 to the power of 3 using Python."))
    app.engine.run(run_id)
    state = LoopState(run_id=run_id, goal=Goal(text="x"))  # rebuilt from the journal, as a resumed run is
    for phase in app.journal.phases(run_id):
        state.apply(phase["kind"], phase)
    assert state.requested_tools == ["run_python"]


def test_done_after_a_failed_last_step_is_refused(tmp_path):
    answer = [plan(("answer", "final_answer")), call("final_answer", answer="It says hello")]
    replies = [plan(("read", "read_file")), call("read_file", path="nope.txt"), feedback("replan", "no file"),
               *answer, *answer]
    app, _ = make_test_app(tmp_path, replies)
    _, out = run(app, "Read nope.txt and tell me what it says")
    assert out["status"] == "failed" and out["stop_reason"] == "unverified"
    assert any(f["check"] == "last_step" for f in out["findings"])


def test_missing_evidence_succeeds_marked_unverified(tmp_path):
    replies = [plan(("answer", "final_answer")), call("final_answer", answer="Paris")]
    app, _ = make_test_app(tmp_path, replies)
    _, out = run(app, "What is the capital of France?")
    assert out["status"] == "succeeded" and out["verified"] is False
    assert out["findings"][0]["kind"] == "missing"


def test_an_answer_claiming_a_tool_that_never_ran_is_rewritten(tmp_path):
    replies = [plan(("write", "write_file")), call("write_file", path="hello.txt", content="hello"),
               feedback("done", final_answer="I used run_python from the Python standard library")]
    app, _ = make_test_app(tmp_path, replies)
    _, out = run(app, "Create hello.txt containing hello")
    assert out["status"] == "succeeded" and out["verified"] is True
    assert out["final_answer"] == "Wrote hello.txt." and "run_python" not in out["final_answer"]


def test_rule_checks_read_goals_and_answers():
    assert verify.file_names("Read notes.txt, then use fs.read_text_file on https://x.org/a.html", ["fs.read_text_file"]) \
        == ["notes.txt"]
    assert verify.file_names("pi is 3.14 and e.g. this") == []
    assert verify.numbers("it is 1,234.0 or 391") == {"1234", "391"}
    # Files the goal asks for, not files it merely mentions; literals it gives, not descriptions.
    assert verify.wanted_files("Write cat to a.txt and dog to b.txt") == ["a.txt", "b.txt"]
    assert verify.wanted_files("From now on reports go to r/weekly.md; remember that") == []


def test_plain_words_that_are_tool_names_are_not_claims(tmp_path):
    from agentd.engine.state import LoopState

    app, _ = make_test_app(tmp_path)

    empty = LoopState(run_id="r", goal=Goal(text="What is my locker number?"))
    names = app.tools.names()
    assert "recall" in names
    found = verify.check_outcome("What is my locker number?", empty, "As I recall, it is 4417", tmp_path, names)
    assert [f.check for f in found] == ["value"]  # no evidence for 4417, but no false claim about a tool
    found = verify.check_outcome("Say hi", empty, "I used write_file", tmp_path, names)
    assert [f.check for f in found] == ["answer_tools"]


def test_a_file_must_hold_the_literal_the_goal_gives(tmp_path):
    (tmp_path / "k.txt").write_text("12")
    (tmp_path / "r.md").write_text("# Team report")
    [finding] = verify._check_content("Write kiwi to k.txt", "k.txt", tmp_path)
    assert finding.message == "k.txt does not contain 'kiwi', which the goal asks for"
    assert verify._check_content("Write the team report to r.md", "r.md", tmp_path) == []


# -- rule-decided feedback -------------------------------------------------------------------------
def test_rules_decide_feedback_without_a_model_call(tmp_path):
    replies = [plan(("write a", "write_file"), ("write b", "write_file")),
               call("write_file", path="a.txt", content="cat"), call("write_file", path="b.txt", content="dog")]
    app, model = make_test_app(tmp_path, replies, settings={"loop.feedback": "rules"})
    run_id, out = run(app, "Write cat to a.txt and dog to b.txt")
    assert out["status"] == "succeeded" and out["verified"] is True
    assert out["usage"]["model_calls"] == 3 and len(model.calls) == 3  # plan + two acts, no feedback calls
    assert out["final_answer"] == "Wrote a.txt, b.txt."
    decided = [p.get("decided_by") for p in app.journal.phases(run_id) if p["kind"] == "feedback"]
    assert decided == ["rules", "rules"]
    # The model still sees each result in its conversation, as if it had decided.
    assert "Result: wrote 3 characters to a.txt" in model.calls[2]["prompt"]


def test_a_failed_step_still_asks_the_model(tmp_path):
    replies = [plan(("read", "read_file")), call("read_file", path="missing.txt"), feedback("give_up", "no file")]
    app, model = make_test_app(tmp_path, replies, settings={"loop.feedback": "rules"})
    _, out = run(app, "Show missing.txt")
    assert out["stop_reason"] == "gave_up" and len(model.calls) == 3


# -- tool selection --------------------------------------------------------------------------------
def test_tools_the_goal_names_are_offered_first_and_fuzzy_names_count(tmp_path):
    app, _ = make_test_app(tmp_path)
    named = selection.named_tools("please use read_fil on a.txt, then run_shel", app.tools)
    assert named[:2] == ["read_file", "run_shell"]
    scores = selection.lexical_scores("write the word to a file", app.tools)
    assert max(scores, key=scores.get) == "write_file"


def test_the_offered_set_is_capped_and_journaled_in_the_plan_phase(tmp_path):
    replies = [plan(("answer", "final_answer")), call("final_answer", answer="done")]
    app, model = make_test_app(tmp_path, replies, settings={"loop.max_tools": 3, "plugins.block": ["memory"]})
    run_id, _ = run(app, "use list_files to show what is here")
    plan_phase = next(p for p in app.journal.phases(run_id) if p["kind"] == "plan")
    offered = plan_phase["offered_tools"]
    assert len(offered) == 3 and {"list_files", "final_answer"} <= set(offered)
    system = model.calls[0]["messages"][0].content
    assert all(f"- {name}(" in system for name in offered)
    assert not [name for name in app.tools.names() if name not in offered and f"- {name}(" in system]


# -- agentd eval ------------------------------------------------------------------------------------
def test_eval_checks_read_the_outcome_from_outside(tmp_path):
    case = Case(id="k", goal="g", expect={"files": {"k.txt": "kiwi"}, "answer": ["saved"], "not_tools": ["run_shell"]})
    (tmp_path / "k.txt").write_text("a kiwi")
    outcome = {"status": "succeeded", "stop_reason": "done", "final_answer": "Saved it"}
    assert check(case, outcome, tmp_path, ["write_file"]) == []
    problems = check(case, outcome | {"final_answer": "ok"}, tmp_path, ["run_shell"])
    assert problems == ["answer lacks 'saved'", "run_shell called"]


def test_agentd_eval_counts_false_successes(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "configs").mkdir(parents=True)
    # A model that always writes "kiwi" to k.txt: right for the first case; the second case's outside check wants
    # more than the goal says, so its run passes the rule checks and succeeds, wrongly: a false success.
    script = home / "script.json"
    script.write_text(json.dumps({"rules": [
        ["Write the plan", plan(("write", "write_file"))],
        ["Write the call", call("write_file", path="k.txt", content="kiwi")],
        ["Write the decision", feedback("done", final_answer="done")]]}))
    (home / "configs" / "agentd.toml").write_text(f'[models.local]\nprovider = "scripted"\nscript = "{script}"\n')
    suite = tmp_path / "suite.jsonl"
    suite.write_text(
        '{"id": "right", "goal": "Write kiwi to k.txt", "expect": {"files": {"k.txt": "kiwi"}}}\n'
        '{"id": "wrong", "goal": "Write kiwi to k.txt", "expect": {"files": {"k.txt": "kiwis"}}}\n'
    )
    monkeypatch.setenv("AGENTD_HOME", str(home))
    result = CliRunner().invoke(cli, ["eval", str(suite), "--json", "--set", "plugins.block=[\"memory\"]"])
    report = json.loads(result.output[result.output.index("{"):])
    assert result.exit_code == 1  # a false success fails the command, so CI can gate on it
    assert report["totals"]["right"] == 1 and report["totals"]["false_successes"] == 1
    assert [r["case"] for r in report["results"] if r["false_success"]] == ["wrong"]


def test_a_bad_suite_line_is_one_clear_error(tmp_path):
    suite = Path(tmp_path / "bad.jsonl")
    suite.write_text('{"goal": "x", "expect": {}, "colour": 1}\n')
    result = CliRunner().invoke(cli, ["eval", str(suite)])
    assert result.exit_code == 2 and "bad.jsonl:1: unknown keys ['colour']" in result.output


def test_the_shipped_suite_has_forty_goals_and_a_held_out_half():
    root = Path(__file__).parents[2] / "evals"
    from agentd.evaluation import load_suite

    tuned, held_out = load_suite(root / "suite.jsonl"), load_suite(root / "holdout.jsonl")
    assert len(tuned) + len(held_out) >= 40 and len(held_out) >= 20
    assert not {c.goal for c in tuned} & {c.goal for c in held_out}


# -- where people see it: runs show, report -----------------------------------------------------------
def test_report_and_runs_show_list_unverified_successes_apart(tmp_path, monkeypatch):
    import time

    from agentd.schedule.report import build_report, render_text
    from agentd.schedule.scheduler import Scheduler
    from agentd.schedule.spec import Schedule

    replies = [plan(("answer", "final_answer")), call("final_answer", answer="Paris")]
    app, _ = make_test_app(tmp_path, replies)
    engine = app.engine
    scheduler = Scheduler(app.config, app.journal, lambda goal, fid: engine.submit(goal), tools=app.tools)
    scheduler.store.add(Schedule(name="capital", goal="What is the capital of France?", every="1d", memory=False,
                                 allowed_tools=["final_answer"]))
    run_id = scheduler.run_now("capital")
    assert engine.run(run_id)["verified"] is False
    report = build_report(app.journal, since=time.time() - 60)
    [entry] = report["unverified_successes"]
    assert entry["run_id"] == run_id and entry["findings"][0]["kind"] == "missing"
    text = render_text(report)
    assert "Succeeded without evidence (verified: no)" in text and f"capital  run {run_id}: " in text

    monkeypatch.setenv("AGENTD_HOME", str(tmp_path))
    shown = CliRunner().invoke(cli, ["runs", "show", run_id]).output
    assert "verified: no" in shown and "finding (missing): no tool observation" in shown
    as_json = json.loads(CliRunner().invoke(cli, ["runs", "show", run_id, "--json"]).output)
    assert as_json["run"]["verified"] is False and as_json["run"]["findings"]


def test_the_model_verifier_can_refuse_what_the_rules_let_through(tmp_path):
    done = [plan(("write", "write_file")), call("write_file", path="a.txt", content="cat"),
            feedback("done", final_answer="Wrote a.txt.")]
    no = {"reached": False, "reason": "the goal wanted a poem"}
    app, model = make_test_app(tmp_path, [*done, no, *done[:1], call("write_file", path="a.txt", content="a cat"),
                                          done[2], no], settings={"loop.verifier": "both"})
    _, out = run(app, "Write a poem about a cat to a.txt")
    assert out["stop_reason"] == "unverified" and out["findings"][-1] == {
        "check": "model", "message": "the goal wanted a poem", "kind": "contradicted"}
    assert "Proposed final answer: Wrote a.txt." in model.calls[3]["prompt"]


def test_a_tool_the_goal_names_binds_the_first_step_even_misspelt(tmp_path):
    replies = [plan(("write", "write_file")), plan(("look", "list_files")), call("list_files", path="."),
               feedback("done", final_answer="nothing here")]
    app, model = make_test_app(tmp_path, replies)
    run_id, out = run(app, "use list_file to show what is here")
    plan_phase = next(p for p in app.journal.phases(run_id) if p["kind"] == "plan")
    assert plan_phase["requested_tools"] == ["list_files"]
    assert "step 1 must use it" in model.calls[1]["messages"][-1].content  # the first plan was sent back
    assert app.journal.tool_calls(run_id)[0]["tool"] == "list_files"
