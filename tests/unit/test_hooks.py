"""One test per hookspec, each through the real plugin manager and engine, plus the two meta-tests
(every hook is documented in docs/plugins.md and has a ``test_hook_<name>`` here)."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from types import SimpleNamespace

import click
import pytest
from click.testing import CliRunner

from agentd import Critique, Goal, Verdict, hookimpl, hookspecs
from agentd.journal import JournalError
from agentd.models.registry import ModelHandle
from agentd.testing import ScriptedChatModel, call, feedback, make_test_app, plan

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted(n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), "agentd_spec"))


def pad_plugin():
    """A tiny plugin object with one tool; other hook tests add hooks to copies of it."""

    class Pad:
        __name__ = "pad"

        @hookimpl
        def register_tools(self, register):
            def shout(text: str) -> str:
                """Return the text in capitals."""
                return text.upper()

            register(shout)

    return Pad()


def one_step(tool="shout", **args):
    return [plan(("do it", tool)), call(tool, **args), feedback("done", final_answer="done")]


def run_goal(app, text="shout hi", **goal):
    return app.engine.run(app.engine.submit(Goal(text=text, **goal)))


def write_scripted_config(home: Path, replies=()) -> None:
    """A config file whose default model is the scripted provider (no model file is loaded)."""
    script = home / "script.json"
    script.write_text(json.dumps({"replies": list(replies), "default": feedback("give_up")}))
    (home / "configs").mkdir(exist_ok=True)
    (home / "configs" / "agentd.toml").write_text(f'[models.local]\nprovider = "scripted"\nscript = "{script}"\n')


def drop_in(home: Path, name: str, source: str) -> None:
    (home / "plugins").mkdir(exist_ok=True)
    (home / "plugins" / f"{name}.py").write_text(textwrap.dedent(source))


# -- meta-tests ----------------------------------------------------------------------------------------


def test_every_hookspec_is_documented():
    doc = (ROOT / "docs" / "plugins.md").read_text()
    missing = [n for n in SPECS if not re.search(rf"^### `{n}\(", doc, re.M)]
    assert SPECS and not missing, f"docs/plugins.md lacks a '### `name(...)`' section for {missing}"


def test_every_hookspec_has_a_test():
    source = Path(__file__).read_text()
    missing = [n for n in SPECS if f"def test_hook_{n}(" not in source]
    assert not missing, f"write test_hook_<name> for {missing}"


def test_every_python_example_in_the_plugin_docs_compiles():
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "plugins.md").read_text(), re.S)
    assert len(blocks) >= len(SPECS)
    for block in blocks:
        compile(block, "docs/plugins.md", "exec")


# -- one test per hook -----------------------------------------------------------------------------------


def test_hook_register_tools(tmp_path):
    app, _ = make_test_app(tmp_path, one_step(text="hi"), extra_plugins=(pad_plugin(),))
    tool = app.tools["shout"]
    assert tool.plugin == "pad" and tool.description == "Return the text in capitals."
    assert tool.parameters["required"] == ["text"]
    outcome = run_goal(app)
    assert outcome["status"] == "succeeded"
    assert app.journal.tool_calls(outcome["run_id"])[0]["result"]["output"] == "HI"
    assert "shout" in app.host.infos["pad"].tools


def test_hook_register_models(tmp_path):
    seen = []

    class Canned:
        __name__ = "canned"

        @hookimpl
        def register_models(self, register):
            def factory(cfg):
                seen.append(cfg.temperature)
                chat = ScriptedChatModel(replies=one_step("write_file", path="a.txt", content="x"))
                return ModelHandle(name="", chat=chat, structured="prompt")

            register("canned", factory)

    settings = {"models.local": {}, "models.tin": {"provider": "canned", "temperature": 0.5}}
    app, default_model = make_test_app(tmp_path, settings=settings, extra_plugins=(Canned(),))
    outcome = run_goal(app, "write a.txt", model="tin")
    assert outcome["status"] == "succeeded" and seen == [0.5]
    assert app.models.providers["canned"][0] == "canned"
    assert default_model.calls == []  # the run used the plugin's model, not the default one


def test_hook_register_commands(home):
    from agentd.cli.commands import mount

    drop_in(home, "greeter", """
        import click
        from agentd import hookimpl

        @hookimpl
        def register_commands(cli):
            @cli.command()
            @click.argument("name")
            def greet(name):
                click.echo(f"hello {name}")
    """)
    group = click.Group("agentd")
    mount(group)
    result = CliRunner().invoke(group, ["greet", "ada"])
    assert result.exit_code == 0 and result.output == "hello ada\n"


def test_hook_register_settings(home):
    from agentd.config import config_as_dict, load_config
    from agentd.errors import ConfigError

    drop_in(home, "shout", """
        from pydantic import BaseModel, ConfigDict, Field
        from agentd import hookimpl

        class ShoutSettings(BaseModel):
            model_config = ConfigDict(extra="forbid")
            times: int = Field(1, ge=1)

        @hookimpl
        def register_settings(register):
            register(ShoutSettings)
    """)
    write_scripted_config(home)
    assert config_as_dict(load_config())["plugins"]["shout"] == {"times": 1}  # defaults shown
    with (home / "configs" / "agentd.toml").open("a") as f:
        f.write("[plugins.shout]\ntimez = 3\n")
    try:
        load_config()
    except ConfigError as exc:
        assert str(exc) == f"invalid configuration: {home / 'configs' / 'agentd.toml'}: plugins.shout.timez: " \
            "unknown key (check the spelling against configs/agentd.toml and docs/)"
    else:
        raise AssertionError("a misspelt plugin key was accepted")


def test_hook_register_routes(tmp_path):
    from fastapi import APIRouter, FastAPI
    from fastapi.testclient import TestClient

    class Routes:
        __name__ = "routes"

        @hookimpl
        def register_routes(self, router, config):
            @router.get("/hello/{name}")
            def hello(name: str) -> dict:
                return {"greeting": f"hello {name}", "home": config.home.name}

    app, _ = make_test_app(tmp_path, extra_plugins=(Routes(),))
    router = APIRouter()
    app.host.call_each("register_routes", router=router, config=app.config)
    api = FastAPI()
    api.include_router(router)
    assert TestClient(api).get("/hello/ada").json() == {"greeting": "hello ada", "home": tmp_path.name}
    app.close()


def test_hook_extend_context(tmp_path):
    class Notes:
        __name__ = "notes"

        @hookimpl
        def extend_context(self, goal, run_id):
            return [f"note for {goal.text!r}: the shouting tool is loud"]

    app, model = make_test_app(tmp_path, one_step(text="hi"), extra_plugins=(pad_plugin(), Notes()))
    outcome = run_goal(app)
    assert outcome["status"] == "succeeded"
    assert "note for 'shout hi': the shouting tool is loud" in model.calls[0]["prompt"]
    # A goal without memory gets no extra context.
    model.enqueue(one_step(text="hi"))
    run_goal(app, memory=False)
    assert "the shouting tool is loud" not in model.calls[3]["prompt"]


def test_hook_critique_plan(tmp_path):
    class NoShouting:
        __name__ = "no_shouting"

        @hookimpl
        def critique_plan(self, plan, tools):
            if any(step.tool == "shout" for step in plan.steps):
                return Critique(Verdict.reject, ["shouting is not allowed here"])
            return None

    app, _ = make_test_app(tmp_path, one_step(text="hi"), extra_plugins=(pad_plugin(), NoShouting()))
    outcome = run_goal(app)
    assert outcome["stop_reason"] == "plan_rejected"
    assert "shouting is not allowed here" in outcome["detail"]
    assert app.journal.tool_calls(outcome["run_id"]) == []


def test_hook_verify_outcome(tmp_path):
    from agentd import Finding

    class NoLowercase:
        __name__ = "no_lowercase"

        @hookimpl
        def verify_outcome(self, goal, state, answer):
            if answer.islower():
                return [Finding("case", f"the answer {answer!r} is not in capitals")]
            return []

    # The check refuses "done" once (a repair round with its finding as a note), then the run ends unverified.
    replies = one_step(text="hi") + one_step(text="hey")  # another call: the same one twice is a loop
    app, model = make_test_app(tmp_path, replies, extra_plugins=(pad_plugin(), NoLowercase()))
    outcome = run_goal(app)
    assert outcome["status"] == "failed" and outcome["stop_reason"] == "unverified"
    assert outcome["verified"] is False and "not in capitals" in outcome["findings"][0]["message"]
    kinds = [p["kind"] for p in app.journal.phases(outcome["run_id"])]
    assert kinds.count("verify") == 1 and kinds.count("plan") == 2
    assert "not in capitals" in model.calls[3]["messages"][-1].content  # the second plan saw the finding


def test_hook_rank_tools(tmp_path):
    class Ranker:
        __name__ = "ranker"

        @hookimpl
        def rank_tools(self, goal, tools):
            return {t.name: (1.0 if t.name == "shout" else 0.0) for t in tools}

    settings = {"loop.max_tools": 2}
    app, model = make_test_app(tmp_path, one_step(text="hi"), settings=settings,
                               extra_plugins=(pad_plugin(), Ranker()))
    outcome = run_goal(app, text="make it loud")
    plan_phase = next(p for p in app.journal.phases(outcome["run_id"]) if p["kind"] == "plan")
    assert set(plan_phase["offered_tools"]) == {"final_answer", "shout"}  # final_answer always; the top one
    assert "write_file" not in model.calls[0]["messages"][0].content  # the system prompt lists only those


def test_hook_before_tool_call(tmp_path):
    class Guard:
        __name__ = "guard"

        @hookimpl
        def before_tool_call(self, call, tool):
            return "no secrets" if "secret" in call.args.get("text", "") else None

    replies = [plan(("do it", "shout")), call("shout", text="secret"), feedback("give_up")]
    app, _ = make_test_app(tmp_path, replies, extra_plugins=(pad_plugin(), Guard()))
    outcome = run_goal(app)
    [observation] = [p["observation"] for p in app.journal.phases(outcome["run_id"]) if p["kind"] == "tool"]
    assert observation["result"]["error"] == "not allowed: no secrets (policy from guard)"
    assert app.journal.tool_calls(outcome["run_id"]) == []  # a vetoed call never starts
    assert outcome["stop_reason"] == "gave_up"


def test_hook_after_tool_call(tmp_path):
    seen = []

    class Audit:
        __name__ = "audit"

        @hookimpl
        def after_tool_call(self, call, result, run_id):
            seen.append((run_id, call.tool, call.args, result.output))

    app, _ = make_test_app(tmp_path, one_step(text="hi"), extra_plugins=(pad_plugin(), Audit()))
    outcome = run_goal(app)
    assert seen == [(outcome["run_id"], "shout", {"text": "hi"}, "HI")]


def test_hook_run_finished(tmp_path):
    seen = []

    class Reporter:
        __name__ = "reporter"

        @hookimpl
        def run_finished(self, run_id, goal, outcome, state):
            seen.append((run_id, goal.text, outcome["status"], state.steps_taken))

    app, _ = make_test_app(tmp_path, one_step(text="hi"), extra_plugins=(pad_plugin(), Reporter()))
    outcome = run_goal(app)
    assert seen == [(outcome["run_id"], "shout hi", "succeeded", 1)]


def test_hook_doctor_checks(home):
    from agentd.cli.commands.system import run_checks

    write_scripted_config(home)
    drop_in(home, "checker", """
        from agentd import hookimpl

        @hookimpl
        def doctor_checks(config):
            return [("flux capacitor", False, f"charge it (home {config.home.name})")]
    """)
    checks = {name: (ok, detail) for name, ok, detail in run_checks()}
    assert checks["checker: flux capacitor"] == (False, "charge it (home home)")
    assert checks["model local"][0] is True


def test_hook_unavailable_tools(home):
    from agentd.cli import cli

    drop_in(home, "needs_gpu", """
        from agentd import hookimpl

        @hookimpl
        def unavailable_tools(config):
            return ["render_video: needs a GPU (none found)"]
    """)
    result = CliRunner().invoke(cli, ["tools", "list", "--json"])
    assert result.exit_code == 0, result.output
    unavailable = json.loads(result.output)["unavailable"]
    assert {"plugin": "needs_gpu", "reason": "render_video: needs a GPU (none found)"} in unavailable


def test_hook_memory_store(home):
    """The dashboard's Memory page searches and forgets through the store a plugin offers."""
    from test_dashboard import dashboard

    class Notes:
        __name__ = "notes"

        def __init__(self):
            self.items = {"n1": "the boiler code is 4471"}

        @hookimpl
        def memory_store(self, config):
            return self

        def search(self, query, k=5):
            hits = [(i, t) for i, t in self.items.items() if any(w in t for w in query.split())][:k]
            return [SimpleNamespace(to_dict=lambda i=i, t=t: {"id": i, "kind": "note", "score": 1.0,
                                                              "provenance": "notes.txt", "text": t})
                    for i, t in hits]

        def forget(self, id=None):
            return int(self.items.pop(id, None) is not None)

    notes = Notes()
    app, _ = make_test_app(home, [], settings={"plugins.memory": {"enabled": False}}, extra_plugins=(notes,))
    client, _ = dashboard(app)
    page = client.get("/ui/memory", params={"q": "boiler"}).text
    assert "the boiler code is 4471" in page and "from notes.txt" in page
    client.post("/ui/memory/forget", data={"id": "n1"})
    assert notes.items == {}


def test_hook_daemon_starting(home):
    import asyncio

    from agentd.config import load_config
    from agentd.daemon.server import Daemon, DaemonSettings

    write_scripted_config(home)
    drop_in(home, "janitor", """
        from agentd import hookimpl

        @hookimpl
        def daemon_starting(config):
            (config.home / "swept.txt").write_text("before any run")
    """)

    async def start_and_stop() -> bool:
        daemon = Daemon(load_config(home=home), DaemonSettings(workers=1))
        await daemon.start()
        seen = (home / "swept.txt").read_text() == "before any run"
        await daemon.stop()
        return seen

    assert asyncio.run(start_and_stop())


def test_hook_results_of_a_raising_plugin_are_isolated(tmp_path):
    """A loop hook that raises is logged and recorded on the plugin; the run goes on."""

    class Broken:
        __name__ = "broken"

        @hookimpl
        def after_tool_call(self, call, result):
            raise RuntimeError("audit log unreachable")

    app, _ = make_test_app(tmp_path, one_step(text="hi"), extra_plugins=(pad_plugin(), Broken()))
    assert run_goal(app)["status"] == "succeeded"
    assert "audit log unreachable" in app.host.infos["broken"].error


def test_hook_app_closing(home):
    """Every plugin hears that an App closes, once, with its config, and the journal still closes after a plugin
    that raises."""
    heard = []

    class Pool:
        __name__ = "pool"

        @hookimpl
        def app_closing(self, config):
            heard.append(config.home)

    class Broken:
        __name__ = "broken"

        @hookimpl
        def app_closing(self, config):
            raise RuntimeError("boom")

    app, _ = make_test_app(home, [], extra_plugins=(Pool(), Broken()))
    app.close()
    assert heard == [home]
    assert "boom" in app.host.infos["broken"].error
    with pytest.raises(JournalError, match="closed"):  # the journal closed all the same
        app.journal.get_run("nothing")
