"""The memory plugin inside the loop (scripted model, fake `hash` embedding, real local Chroma)."""

from __future__ import annotations

import json
import os

import pytest
from agentd_memory.store import get_memory
from click.testing import CliRunner

from agentd import Goal, Observation, ToolCall, ToolResult
from agentd.testing import call, feedback, make_test_app, plan

FAKE = {"plugins.memory": {"embedding": {"provider": "hash"}}}


@pytest.fixture
def app_factory(home):
    apps = []

    def factory(replies, settings=None):
        app, model = make_test_app(home, replies, settings=settings or FAKE)
        apps.append(app)
        return app, model

    yield factory
    for app in apps:
        app.close()


def plan_prompt(app, run_id):
    return json.dumps([p["prompt"] for p in app.journal.phases(run_id) if p["kind"] == "plan"])


def test_recalled_memories_reach_the_plan_prompt_with_provenance(app_factory):
    app, _ = app_factory([plan(("write it", "write_file")), call("write_file", path="a.md", content="x"),
                          feedback("done", final_answer="ok")])  # fmt: skip
    get_memory(app.config).remember("ACME reports always go to out/acme-report.md")
    run_id = app.engine.submit(Goal(text="Write the ACME reports"))
    app.engine.run(run_id)
    context = [p for p in app.journal.phases(run_id) if p["kind"] == "context"][0]
    assert context["memories"][0].startswith("[note ")
    assert "ACME reports always go to out/acme-report.md" in plan_prompt(app, run_id)


def test_every_run_ends_with_an_episode_that_the_next_run_recalls(app_factory):
    app, _ = app_factory([
        plan(("write the haiku", "write_file")), call("write_file", path="poems/haiku.txt", content="old pond"),
        feedback("done", final_answer="wrote poems/haiku.txt"),
        plan(("write it", "write_file")), call("write_file", path="x.txt", content="x"), feedback("done"),
    ])  # fmt: skip
    first = app.engine.submit(Goal(text="write a haiku about a pond"))
    app.engine.run(first)
    hits = get_memory(app.config).search("haiku pond", kind="episode")
    assert [h.id for h in hits] == [f"ep-{first}"]
    assert "Files made: poems/haiku.txt" in hits[0].text and "Answer: wrote poems/haiku.txt" in hits[0].text
    second = app.engine.submit(Goal(text="write another haiku about a pond"))
    app.engine.run(second)
    assert "[episode " in plan_prompt(app, second) and f"run {first}" in plan_prompt(app, second)
    assert "poems/haiku.txt" in plan_prompt(app, second)


def test_remember_then_recall_as_tools_in_the_loop(app_factory):
    app, _ = app_factory([
        plan(("note it", "remember")), call("remember", note="The deploy key lives in vault/deploy-key"),
        feedback("done", final_answer="noted"),
        plan(("look it up", "recall")), call("recall", query="deploy key", k=3), feedback("done", final_answer="ok"),
    ])  # fmt: skip
    app.engine.run(app.engine.submit(Goal(text="Remember where the deploy key lives")))
    run_id = app.engine.submit(Goal(text="Where is it?"))
    app.engine.run(run_id)
    result = app.journal.tool_calls(run_id)[0]["result"]
    assert result["output"].startswith("1. (") and "vault/deploy-key" in result["output"]
    assert result["data"]["hits"][0]["kind"] == "note"


def test_memory_off_for_a_goal_recalls_nothing_stores_nothing_and_refuses_the_tools(app_factory):
    app, _ = app_factory([plan(("recall", "recall")), call("recall", query="anything"), feedback("give_up")])
    memory = get_memory(app.config)
    memory.remember("a fact that must not leak into the prompt")
    run_id = app.engine.submit(Goal(text="a fact that must not leak", memory=False))
    app.engine.run(run_id)
    assert "must not leak into the prompt" not in plan_prompt(app, run_id)
    assert "memory is switched off" in json.dumps(app.journal.phases(run_id))
    assert memory.search("fact", kind="episode") == []


def test_memory_disabled_in_config_registers_no_tools_and_writes_nothing(app_factory):
    settings = {"plugins.memory": {"enabled": False, "embedding": {"provider": "hash"}}}
    app, _ = app_factory([plan(("w", "write_file")), call("write_file", path="a", content="b"), feedback("done")],
                         settings=settings)  # fmt: skip
    assert "recall" not in app.tools and "remember" not in app.tools
    run_id = app.engine.submit(Goal(text="write a"))
    assert app.engine.run(run_id)["status"] == "succeeded"
    assert [p["memories"] for p in app.journal.phases(run_id) if p["kind"] == "context"] == [[]]


def test_lessons_are_derived_from_failures_replans_files_and_tools():
    from agentd_memory import lessons_from

    from agentd.engine.state import LoopState

    state = LoopState(run_id="r", goal=Goal(text="g"))
    state.observations = [
        Observation(
            0, ToolCall("read_file", {"path": "missing.txt"}), ToolResult(error="no file 'missing.txt'")
        ),
        Observation(
            1, ToolCall("write_file", {"path": "a.txt"}), ToolResult(output="ok", artifacts=["a.txt"])
        ),
    ]
    state.notes = ["The critic asked for a revised plan: too many steps"]
    lessons = lessons_from(state, {"status": "succeeded", "stop_reason": "done"})
    assert lessons == [
        "read_file(path='missing.txt') failed: no file 'missing.txt'",
        "Replanned because: The critic asked for a revised plan: too many steps",
        "Files made: a.txt",
        'What worked: write_file({"path": "a.txt"})',
    ]
    stopped = lessons_from(LoopState(run_id="r", goal=Goal(text="g")),
                           {"status": "stopped", "stop_reason": "max_steps", "detail": "took 8 steps"})  # fmt: skip
    assert stopped == ["Did not succeed (max_steps): took 8 steps"]


def test_doctor_and_unavailable_tools_hooks(app_factory):
    from agentd_memory import doctor_checks, unavailable_tools

    app, _ = app_factory([])
    checks = doctor_checks(app.config)
    assert [c[:2] for c in checks] == [("memory embedding", True), ("memory store", True)]
    assert unavailable_tools(app.config) == []
    bad = make_test_app(
        app.config.home, [], settings={"plugins.memory": {"embedding": {"model_path": "/nope"}}}
    )[0]
    assert "model.onnx not found at /nope" in unavailable_tools(bad.config)[0]
    bad.close()


# -- the CLI ------------------------------------------------------------------------------------------
def test_cli_ingest_search_list_forget_stats(home, tmp_path):
    from agentd_memory.commands import memory

    (home / "configs").mkdir(exist_ok=True)
    (home / "configs" / "agentd.toml").write_text('[plugins.memory.embedding]\nprovider = "hash"\n')
    doc = tmp_path / "notes.md"
    doc.write_text("The staging server is called bluefin.\n")
    runner = CliRunner()
    result = runner.invoke(memory, ["ingest", str(doc)])
    assert result.exit_code == 0, result.output
    assert "1 added, 0 replaced, 0 unchanged" in result.output
    assert "0 added, 0 replaced, 1 unchanged" in runner.invoke(memory, ["ingest", str(doc)]).output
    result = runner.invoke(memory, ["search", "staging server", "--json", "-k", "1"])
    hit = json.loads(result.output.splitlines()[0])
    assert hit["kind"] == "document" and hit["provenance"].startswith(f"{doc}#0") and "bluefin" in hit["text"]
    listed = [json.loads(line) for line in runner.invoke(memory, ["list", "--json"]).output.splitlines()]
    assert [(x["kind"], x["meta"]["source"], x["meta"]["n_chunks"]) for x in listed] == [
        ("document", str(doc), 1)
    ]
    assert runner.invoke(memory, ["list"]).exit_code == 0
    stats = json.loads(runner.invoke(memory, ["stats", "--json"]).output)
    assert stats["documents"] == 1 and stats["embedding"] == "hash-256"
    assert runner.invoke(memory, ["forget", "--source", str(doc)]).output.strip() == "forgot 1 item"
    assert runner.invoke(memory, ["forget", "--run", "nope"]).exit_code == 1
    assert runner.invoke(memory, ["forget"]).exit_code == 2
    assert runner.invoke(memory, ["search", "x", "--kind", "bogus"]).exit_code == 2


def test_cli_reports_an_embedding_mismatch_and_reindex_fixes_it(home, tmp_path):
    from agentd_memory.commands import memory

    config = home / "configs" / "agentd.toml"
    config.parent.mkdir(exist_ok=True)
    config.write_text('[plugins.memory.embedding]\nprovider = "hash"\n')
    doc = tmp_path / "a.txt"
    doc.write_text("alpha beta\n")
    runner = CliRunner()
    assert runner.invoke(memory, ["ingest", str(doc)]).exit_code == 0
    config.write_text('[plugins.memory.embedding]\nprovider = "hash"\noptions = { dim = 64 }\n')
    result = runner.invoke(memory, ["search", "alpha"])
    assert result.exit_code == 1 and "agentd memory reindex" in result.output
    result = runner.invoke(memory, ["reindex"])
    assert "agentd-documents: re-embedded 1 items" in result.output and "hash-64" in result.output
    assert runner.invoke(memory, ["search", "alpha"]).exit_code == 0


def test_closing_the_app_releases_chroma_and_a_later_use_reopens_it(app_factory):
    """A process that opens many homes (a test suite, an embedding application) holds no Chroma database per
    closed app, and memory written before the close is there after it."""
    import os

    app, _ = app_factory([])
    memory = get_memory(app.config)

    def sqlite_handles() -> int:
        fds = [os.path.join("/proc/self/fd", fd) for fd in os.listdir("/proc/self/fd")]
        return sum(1 for fd in fds if str(memory.path) in _target(fd))

    memory.remember("The boiler code is 4471")
    assert sqlite_handles() > 0
    app.close()
    assert sqlite_handles() == 0
    assert "4471" in get_memory(app.config).search("boiler code")[0].text


def _target(fd: str) -> str:
    try:
        return os.readlink(fd)
    except OSError:  # closed between listing and reading
        return ""


def test_cli_search_is_answered_by_the_running_daemon(app_factory, monkeypatch):
    """With a daemon up, `agentd memory search` asks it (its store and embedding model are warm) and opens no
    store of its own; the answer reads as a local search's does."""
    import agentd_memory.commands as commands
    from fastapi import APIRouter, FastAPI
    from fastapi.testclient import TestClient

    from agentd.daemon import client

    app, _ = app_factory([])
    (app.config.home / "configs").mkdir(exist_ok=True)
    (app.config.home / "configs" / "agentd.toml").write_text('[plugins.memory.embedding]\nprovider = "hash"\n')
    get_memory(app.config).remember("The staging server is called bluefin.")
    router = APIRouter()
    app.host.call_each("register_routes", router=router, config=app.config)
    api = FastAPI()
    api.include_router(router)
    daemon = TestClient(api)
    asked: list[dict] = []

    def request(config, method, path, **kwargs):
        asked.append(kwargs["json"])
        return daemon.request(method, path, json=kwargs["json"]).json()

    monkeypatch.setattr(client, "daemon_running", lambda config: True)
    monkeypatch.setattr(client, "request", request)
    monkeypatch.setattr(commands, "_open", lambda *a, **k: pytest.fail("the CLI opened the store itself"))
    result = CliRunner().invoke(commands.memory, ["search", "staging server", "--json", "-k", "1"])
    assert result.exit_code == 0, result.output
    hit = json.loads(result.output.splitlines()[0])
    assert hit["kind"] == "note" and "bluefin" in hit["text"]
    assert asked == [{"query": "staging server", "k": 1, "kind": None, "scopes": None}]
    shown = CliRunner().invoke(commands.memory, ["search", "staging server"]).output
    assert "bluefin" in shown and shown.startswith("1. ")


def test_homes_share_one_embedding_model_and_a_closed_home_is_forgotten(tmp_path):
    """A test suite (or a process serving several homes) loaded one embedding model per home and kept every
    home's Memory for ever: ~100 MB per home with the default model."""
    first, _ = make_test_app(tmp_path / "one", settings=FAKE)
    second, _ = make_test_app(tmp_path / "two", settings=FAKE)
    try:
        one, two = get_memory(first.config), get_memory(second.config)
        assert one is not two and one.embedder is two.embedder
        one.remember("a note")
        first.close()
        again = get_memory(first.config)
        assert again is not one and again.embedder is one.embedder
        assert [hit.text for hit in again.search("a note", kind="note")] == ["a note"]  # opened again from disk
    finally:
        first.close()
        second.close()
