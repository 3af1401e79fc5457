"""Plugin discovery and its failure modes: drop-ins, allow/block lists, API versions, broken plugins, clashes,
and the `agentd plugins list|info` commands that report them."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from agentd import hookimpl
from agentd.cli import cli
from agentd.config import load_config
from agentd.plugins import API_VERSION, DEFAULT_PLUGINS, get_plugin_manager
from agentd.testing import make_test_app

BUILT_INS = {"builtin_models", "critics", "policy", "langchain", "core", "verify"}

SHOUT = """
    from agentd import hookimpl

    __version__ = "2.5.0"
    AGENTD_API = "{api}"

    def shout(text: str) -> str:
        \"\"\"Return the text in capitals.\"\"\"
        return text.upper() + "{mark}"

    @hookimpl
    def register_tools(register):
        register(shout)
"""


def drop_in(home: Path, name: str, source: str) -> None:
    (home / "plugins").mkdir(exist_ok=True)
    (home / "plugins" / f"{name}.py").write_text(textwrap.dedent(source))


def shout_plugin(home: Path, name: str = "shouter", api: str = API_VERSION, mark: str = "!") -> None:
    drop_in(home, name, SHOUT.format(api=api, mark=mark))


def agentd(*args: str):
    result = CliRunner().invoke(cli, list(args))
    return result


def plugins_json() -> dict:
    result = agentd("plugins", "list", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_a_drop_in_file_is_loaded_with_its_version_hooks_and_tools(home):
    shout_plugin(home)
    app, _ = make_test_app(home)
    info = app.host.infos["shouter"]
    assert (info.source, info.version, info.hooks, info.tools, info.error) == (
        "drop-in", "2.5.0", ["register_tools"], ["shout"], None)
    assert app.tools["shout"].plugin == "shouter"


def test_plugins_list_shows_name_version_source_hooks_and_tools(home):
    shout_plugin(home)
    rows = {p["name"]: p for p in plugins_json()["plugins"]}
    assert set(rows) >= BUILT_INS
    assert {rows[n]["source"] for n in BUILT_INS} == {"built-in"}
    assert rows["workspace"]["source"] == "entry point" and "write_file" in rows["workspace"]["tools"]
    assert rows["shouter"]["source"] == "drop-in" and rows["shouter"]["tools"] == ["shout"]
    table = agentd("plugins", "list")
    assert table.exit_code == 0 and "shouter" in table.output and "drop-in" in table.output


def test_plugins_info_shows_one_plugin_and_refuses_unknown_names(home):
    shout_plugin(home)
    result = agentd("plugins", "info", "shouter")
    assert result.exit_code == 0
    assert "source: drop-in" in result.output and "version: 2.5.0" in result.output
    missing = agentd("plugins", "info", "nope")
    assert missing.exit_code == 2 and "no plugin 'nope'" in missing.output


def test_allowlist_from_the_environment_keeps_built_ins(home, monkeypatch):
    shout_plugin(home)
    monkeypatch.setenv("AGENTD_LOAD_PLUGINS", "workspace")
    names = {p["name"] for p in plugins_json()["plugins"]}
    assert names == BUILT_INS | {"workspace"}
    app, _ = make_test_app(home, env={"AGENTD_LOAD_PLUGINS": "workspace"})
    assert "write_file" in app.tools and "shout" not in app.tools and "web_search" not in app.tools
    assert {"llamacpp", "openai", "scripted"} <= set(app.models.providers)  # builtin_models still loaded


def test_an_empty_allowlist_loads_only_built_ins(home):
    host = get_plugin_manager(load_config(home=home, env={"AGENTD_LOAD_PLUGINS": ""}))
    assert set(host.infos) == BUILT_INS
    assert len(DEFAULT_PLUGINS) == len(BUILT_INS)


def test_allowlist_and_blocklist_from_the_config(home):
    shout_plugin(home)
    shout_plugin(home, "other", mark="?")
    allow = get_plugin_manager(load_config(home=home, env={}, overrides={"plugins.load": ["shouter", "web"]}))
    assert set(allow.infos) == BUILT_INS | {"shouter", "web"}
    block = get_plugin_manager(load_config(home=home, env={}, overrides={"plugins.block": ["web", "shouter"]}))
    assert {"other", "workspace"} <= set(block.infos) and not {"web", "shouter"} & set(block.infos)


def test_built_ins_cannot_be_blocked(home):
    host = get_plugin_manager(load_config(home=home, env={}, overrides={"plugins.block": sorted(BUILT_INS)}))
    assert set(host.infos) >= BUILT_INS


def test_an_incompatible_api_version_is_refused_with_a_clear_message(home):
    shout_plugin(home, "future", api="2.0")
    shout_plugin(home, "minor", api="1.7")
    app, _ = make_test_app(home)
    error = app.host.infos["future"].error
    assert f"plugin declares agentd plugin API 2.0, but this agentd provides {API_VERSION}" in error
    assert "shout" in app.tools and app.tools["shout"].plugin == "minor"  # a newer minor version loads


def test_a_plugin_that_fails_to_import_is_reported_and_the_rest_works(home):
    drop_in(home, "broken", "import this_module_does_not_exist\n")
    shout_plugin(home)
    data = plugins_json()
    rows = {p["name"]: p for p in data["plugins"]}
    assert "ModuleNotFoundError: No module named 'this_module_does_not_exist'" in rows["broken"]["error"]
    assert "Traceback" in rows["broken"]["error"] and rows["shouter"]["error"] is None
    table = agentd("plugins", "list")
    assert "failed" in table.output and "this_module_does_not_exist" in table.output
    info = agentd("plugins", "info", "broken")
    assert "Traceback" in info.output
    tools = json.loads(agentd("tools", "list", "--json").output)
    assert {"shout", "write_file"} <= {t["name"] for t in tools["tools"]}
    run = agentd("tools", "run", "shout", "--arg", "text=hi", "--json")
    assert run.exit_code == 0 and json.loads(run.output)["output"] == "HI!"


def test_doctor_reports_a_broken_plugin_with_advice(home):
    from agentd.cli.commands.system import run_checks

    script = home / "script.json"
    script.write_text('{"default": "{}"}')
    (home / "configs").mkdir()
    (home / "configs" / "agentd.toml").write_text(f'[models.local]\nprovider = "scripted"\nscript = "{script}"\n')
    drop_in(home, "broken", "raise RuntimeError('cannot start: no licence file')\n")
    checks = {name: (ok, detail) for name, ok, detail in run_checks()}
    ok, detail = checks["plugin broken"]
    assert not ok and "cannot start: no licence file" in detail and "agentd plugins info broken" in detail
    assert checks["model local"][0] and checks["journal"][0]


def test_a_plugin_raising_in_a_registration_hook_is_reported(home, caplog):
    drop_in(home, "exploding", """
        from agentd import hookimpl

        @hookimpl
        def register_tools(register):
            raise ValueError("tools table is corrupt")
    """)
    app, _ = make_test_app(home)
    assert "register_tools raised" in app.host.infos["exploding"].error
    assert "ValueError: tools table is corrupt" in app.host.infos["exploding"].error
    assert "plugin exploding failed in register_tools" in caplog.text
    assert "write_file" in app.tools


def test_a_plugin_with_an_unknown_hook_is_refused_alone(home):
    drop_in(home, "typo", """
        from agentd import hookimpl

        @hookimpl
        def register_toolz(register):
            pass
    """)
    shout_plugin(home)
    host = get_plugin_manager(load_config(home=home, env={}))
    assert "unknown hooks ['register_toolz']" in host.infos["typo"].error
    assert host.pm.get_plugin("typo") is None and host.infos["shouter"].error is None


def test_a_hook_with_arguments_the_spec_lacks_is_refused_alone(home):
    drop_in(home, "misfit", """
        from agentd import hookimpl

        @hookimpl
        def before_tool_call(call, colour):
            return None
    """)
    app, _ = make_test_app(home)
    assert "colour" in app.host.infos["misfit"].error and "write_file" in app.tools


def test_two_plugins_registering_one_tool_name_keep_both(home):
    shout_plugin(home, "alpha", mark="a")
    shout_plugin(home, "beta", mark="b")
    data = plugins_json()
    [problem] = [p for p in data["problems"] if "'shout'" in p]
    assert "'alpha'" in problem and "'beta'" in problem
    tools = {t["name"]: t["plugin"] for t in json.loads(agentd("tools", "list", "--json").output)["tools"]}
    other = ({"alpha", "beta"} - {tools["shout"]}).pop()
    renamed = f"{other}_shout"
    assert f"registered as '{renamed}'" in problem and tools[renamed] == other
    outputs = {}
    for name in ("shout", renamed):
        run = agentd("tools", "run", name, "--arg", "text=x", "--json")
        outputs[tools[name]] = json.loads(run.output)["output"]
    assert outputs == {"alpha": "Xa", "beta": "Xb"}


def test_extra_plugins_are_registered_and_named(tmp_path):
    class Counter:
        __name__ = "counter"
        calls = 0

        @hookimpl
        def extend_context(self):
            Counter.calls += 1
            return ["x"]

    host = get_plugin_manager(load_config(home=tmp_path, env={}), extra_plugins=(Counter(),))
    assert host.infos["counter"].hooks == ["extend_context"]
    assert host.call_each("extend_context", goal=None, run_id="r", config=None) == [("counter", ["x"])]


@pytest.mark.parametrize("bad", ['deny_effects = ["teleports"]', 'deny_effects = "network"', "allow = []"])
def test_a_bad_policy_table_is_a_config_error(home, bad):
    (home / "configs").mkdir()
    (home / "configs" / "agentd.toml").write_text(f"[plugins.policy]\n{bad}\n")
    result = agentd("plugins", "list")
    assert result.exit_code == 2 and "plugins.policy" in result.output
