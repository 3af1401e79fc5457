"""What keeps a step cheap: prompt heads rendered and journaled once, converted messages reused, tool calls on
reused threads, a phase and its events in one transaction. Behaviour only; timings live in benchmarks/."""

from __future__ import annotations

import ast
import json
import os
import sqlite3
import subprocess
import sys
import threading

import pytest

from agentd import Goal, ToolContext, ToolResult
from agentd.engine import phases
from agentd.journal import Journal
from agentd.models.registry import ModelHandle
from agentd.testing import ScriptedChatModel, call, feedback, plan
from agentd.tools import Tool, execute

TWO_STEPS = [plan(("write a", "write_file"), ("write b", "write_file")),
             call("write_file", path="a.txt", content="1"), feedback("continue"),
             call("write_file", path="b.txt", content="2"), feedback("done", final_answer="ok")]


def test_the_prompt_head_is_rendered_once_per_process(scripted, monkeypatch):
    app, _ = scripted()
    rendered: list[str] = []
    real = phases.render
    monkeypatch.setattr(phases, "render", lambda name, **values: rendered.append(name) or real(name, **values))
    for cached in (getattr(phases, "_system_text", None), phases._example_turns):
        getattr(cached, "cache_clear", lambda: None)()  # rendered afresh below, once
    for turn in range(3):
        phases.messages(app.engine.tools, [], f"request {turn}")
    assert rendered.count("system.j2") == 1
    assert rendered.count("plan.j2") == sum(1 for e in phases._examples() if all(
        c["tool"] in app.engine.tools for c in [*e["calls"], *e["steps"]]))  # each example's plan turn, once


def test_a_handle_reuses_the_messages_it_converted():
    chat = ScriptedChatModel(replies=["one", "two"])
    handle = ModelHandle(name="m", chat=chat, structured="prompt")
    turns = [("system", "be brief"), ("user", "hi")]
    handle.complete(turns)
    handle.complete(turns + [("assistant", "one"), ("user", "again")])
    first, second = (c["messages"] for c in chat.calls)
    assert second[0] is first[0] and second[1] is first[1]
    assert [m.type for m in second] == ["system", "human", "ai", "human"]


def test_a_model_call_never_turns_its_prompt_into_one_text_for_callbacks(monkeypatch):
    from langchain_core.callbacks import manager

    def refuse(*args, **kwargs):
        raise AssertionError("the prompt was stringified for a callback handler's on_llm_start")

    monkeypatch.setattr(manager, "get_buffer_string", refuse)
    handle = ModelHandle(name="m", chat=ScriptedChatModel(replies=["one"]), structured="prompt")
    text, usage = handle.complete([("system", "be brief"), ("user", "hi")], on_token=lambda n: None)
    assert text == "one" and usage.model_calls == 1 and usage.completion_tokens


def test_a_direct_handle_skips_langchains_run_machinery_only_while_nothing_would_see_the_call(monkeypatch):
    """The provider's own model (llama.cpp, the scripted one) is called straight through ``_generate`` when no
    callback, cache, rate limiter or tracer of LangChain's is there to see it; the reply and usage are the same."""
    from langchain_core.callbacks import BaseCallbackHandler

    turns = [("system", "be brief"), ("user", "hi")]
    through: list[str] = []
    generate = ScriptedChatModel.generate
    monkeypatch.setattr(ScriptedChatModel, "generate", lambda self, *a, **k: through.append("langchain")
                        or generate(self, *a, **k))
    plain = ModelHandle(name="m", chat=ScriptedChatModel(default="one"), structured="prompt")
    direct = ModelHandle(name="m", chat=ScriptedChatModel(default="one"), structured="prompt", direct=True)

    def reply(handle: ModelHandle, **kwargs) -> tuple:
        text, usage = handle.complete(turns, **kwargs)
        return text, usage.prompt_tokens, usage.completion_tokens, usage.model_calls

    expected = reply(plain)
    assert through == ["langchain"]
    assert reply(direct) == expected and through == ["langchain"]  # the same text and usage, without generate()

    class Seen(BaseCallbackHandler):
        ends = 0

        def on_llm_end(self, response, **kwargs):
            Seen.ends += 1

    direct.chat.callbacks = [Seen()]  # a handler of the user's: the whole path, so it sees the call
    assert reply(direct) == expected and through == ["langchain"] * 2 and Seen.ends == 1
    direct.chat.callbacks = None
    tokens: list[int] = []  # the scripted model's tokens come only through LangChain's callbacks
    assert reply(direct, on_token=tokens.append) == expected
    assert through == ["langchain"] * 3 and tokens[-1] > 0
    from langsmith import utils  # it reads the environment once per process; as LangChain does, so do we

    from agentd.models.registry import _unobserved

    monkeypatch.setenv("LANGSMITH_TRACING", "true")  # tracing on: LangChain must see every call
    utils.get_env_var.cache_clear()
    try:
        assert not _unobserved(direct.chat)
    finally:
        monkeypatch.delenv("LANGSMITH_TRACING")
        utils.get_env_var.cache_clear()
    assert _unobserved(direct.chat)
    from langchain_core.globals import set_debug
    from langchain_core.tracers.context import collect_runs

    set_debug(True)  # LangChain's own debug output prints every call
    try:
        assert not _unobserved(direct.chat)
    finally:
        set_debug(False)
    with collect_runs() as runs:  # a handler a configure hook adds: it must see the call
        assert not _unobserved(direct.chat)
        direct.complete(turns)
    assert len(runs.traced_runs) == 1 and _unobserved(direct.chat)


def test_a_run_makes_its_prompt_head_once_for_all_its_model_calls(scripted, monkeypatch):
    app, _ = scripted(TWO_STEPS)
    made: list[tuple[str, ...]] = []
    real = phases.prompt_head
    monkeypatch.setattr(phases, "prompt_head", lambda tools, *a, **k: made.append(tuple(tools.names()))
                        or real(tools, *a, **k))
    outcome = app.engine.run(app.engine.submit(Goal(text="write a.txt and b.txt", memory=False)))
    assert outcome["status"] == "succeeded"
    assert len(made) == 1  # one tool set (the plan's), one head for the run's five model calls


def _tool(fn) -> Tool:
    return Tool.from_function(fn)


def test_tool_calls_reuse_worker_threads(tmp_path):
    seen: list[threading.Thread] = []  # the objects, not idents: an ident may be reused by a new thread

    def where() -> str:
        """Which thread runs this."""
        seen.append(threading.current_thread())
        return "ok"

    tool, ctx = _tool(where), ToolContext(run_id="r", workspace=tmp_path)
    results = [execute(tool, {}, ctx) for _ in range(20)]
    assert all(r.ok for r in results)
    assert len({id(t) for t in seen}) == 1 and threading.current_thread() not in seen


def test_a_hung_call_does_not_hold_up_the_next(tmp_path):
    release = threading.Event()

    def hang() -> str:
        """Waits until released."""
        release.wait(30)
        return "late"

    def quick() -> str:
        """Answers at once."""
        return "now"

    ctx = ToolContext(run_id="r", workspace=tmp_path, timeout_s=0.2)
    try:
        timed_out = execute(_tool(hang), {}, ctx)
        assert timed_out.data.get("timed_out") and "timed out after 0.2s" in timed_out.error
        assert execute(_tool(quick), {}, ctx) == ToolResult(output="now")
    finally:
        release.set()


def test_a_run_journals_its_prompt_head_once(scripted):
    app, _ = scripted(TWO_STEPS + TWO_STEPS)
    ids = [app.engine.submit(Goal(text="write a and b", memory=False)) for _ in range(2)]
    for run_id in ids:
        assert app.engine.run(run_id)["status"] == "succeeded"
    db = sqlite3.connect(app.journal.path)
    heads = db.execute("SELECT messages_json FROM prompt_heads").fetchall()
    system = json.loads(heads[0][0])[0][1]
    stored = [json.loads(row[0]) for row in db.execute("SELECT data_json FROM phases WHERE data_json LIKE '%prompt%'")]
    db.close()
    assert len(heads) == 1 and len(stored) == 2 * 5
    assert all(system not in json.dumps(data) for data in stored)  # phases name the head, never copy it
    for run_id in ids:  # read back whole, as before
        prompts = [p["prompt"] for p in app.journal.phases(run_id) if "prompt" in p]
        assert all(p[0] == ["system", system] and p[-1][0] == "user" for p in prompts) and len(prompts) == 5


def test_a_phase_and_its_events_are_one_transaction(scripted):
    app, _ = scripted()
    journal: Journal = app.journal
    run_id = app.engine.submit(Goal(text="write a", memory=False))
    with pytest.raises(RuntimeError), journal.batch(run_id):
        journal.add_phase(run_id, "context", {"memories": []}, 0.0)
        journal.add_event(run_id, "context", {"memories": []})
        raise RuntimeError("the process dies between the two")
    assert journal.phases(run_id) == [] and journal.events(run_id) == []
    with journal.batch(run_id):
        journal.add_phase(run_id, "context", {"memories": []}, 0.0)
        journal.add_event(run_id, "context", {"memories": []})
    assert len(journal.phases(run_id)) == 1 and len(journal.events(run_id)) == 1


def test_a_calls_end_and_its_observation_are_one_transaction_so_a_crash_between_never_reruns_it(
    scripted, monkeypatch
):
    from agentd.journal import JournalError

    app, _ = scripted(TWO_STEPS)
    journal: Journal = app.journal
    run_id = app.engine.submit(Goal(text="write a and b", memory=False))
    real = journal.add_phase

    def dies_at_the_observation(run, kind, *args, **kwargs):
        if kind == "tool":
            raise JournalError("the disk filled up right after the tool ran")
        return real(run, kind, *args, **kwargs)

    monkeypatch.setattr(journal, "add_phase", dies_at_the_observation)
    with pytest.raises(JournalError):
        app.engine.run(run_id)
    assert [c["status"] for c in journal.tool_calls(run_id)] == ["started"]  # its end rolled back with it
    monkeypatch.setattr(journal, "add_phase", real)
    assert app.engine.run(run_id)["status"] == "succeeded"
    calls = journal.tool_calls(run_id)
    assert [(c["args"]["path"], c["status"]) for c in calls] == [("a.txt", "interrupted"), ("b.txt", "finished")]


def test_a_run_without_memory_loads_no_config_when_it_ends(scripted, monkeypatch):
    import agentd.config

    app, _ = scripted(TWO_STEPS)
    loads: list[object] = []
    real = agentd.config.load_config
    monkeypatch.setattr(agentd.config, "load_config", lambda *a, **k: loads.append(k) or real(*a, **k))
    run_id = app.engine.submit(Goal(text="write a and b", memory=False))
    assert app.engine.run(run_id)["status"] == "succeeded"
    assert loads == []  # reading and validating the whole config cost more than the run's steps


def _modules_after(code: str, home) -> list[str]:
    """Which of the heavier modules a fresh process has loaded after running ``code``."""
    probe = code + "\nprint(sorted(m for m in ('pydantic', 'asyncio', 'rich', 'agentd.config') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         env={**os.environ, "AGENTD_HOME": str(home)})
    return ast.literal_eval(out.stdout.strip().splitlines()[-1])


def test_the_public_api_imports_no_pydantic_or_asyncio(home):
    assert _modules_after("import sys, agentd", home) == []


def test_a_core_command_loads_no_config_or_plugins(home):
    code = ("import sys\nfrom click.testing import CliRunner\nfrom agentd.cli import cli\n"
            "assert CliRunner().invoke(cli, ['runs', '--help']).exit_code == 0")
    assert _modules_after(code, home) == []


def test_plugin_commands_still_show_and_run(home):
    from click.testing import CliRunner

    from agentd.cli import cli

    assert "memory" in CliRunner().invoke(cli, ["--help"]).output
    assert CliRunner().invoke(cli, ["memory", "--help"]).exit_code == 0


def test_a_batch_inside_a_batch_joins_it(scripted):
    app, _ = scripted()
    journal: Journal = app.journal
    run_id = app.engine.submit(Goal(text="write a", memory=False))
    with pytest.raises(RuntimeError), journal.batch(run_id):
        with journal.batch(run_id):
            journal.add_phase(run_id, "context", {"memories": []}, 0.0)
        journal.add_event(run_id, "context", {"memories": []})  # still inside the outer batch
        raise RuntimeError("the outer batch fails after the inner one ended")
    assert journal.phases(run_id) == [] and journal.events(run_id) == []


def test_the_daemon_client_imports_neither_httpx_nor_ssl():
    """Plain HTTP over a Unix socket with the standard library: importing httpx was most of `agentd goal`'s
    start-up, and loading a CA bundle per client cost ~45 ms of every CLI call to the daemon."""
    code = "import sys, agentd.cli.goals, agentd.daemon.client; print(sorted({'httpx', 'ssl'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
