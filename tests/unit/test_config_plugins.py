"""Plugin settings are validated like core settings, when the config loads (issue 22, item 3)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from agentd.cli import cli
from agentd.config import config_as_dict, load_config
from agentd.errors import ConfigError
from agentd.testing import call, feedback, plan


def configure(home, extra=""):
    script = home / "script.json"
    replies = [plan(("write", "write_file")), call("write_file", path="a.txt", content="x"),
               feedback("done", final_answer="ok")]
    script.write_text(json.dumps({"replies": replies}))
    (home / "configs").mkdir(exist_ok=True)
    path = home / "configs" / "agentd.toml"
    path.write_text(f'[models.local]\nprovider = "scripted"\nscript = "{script}"\n{extra}')
    return path


@pytest.mark.parametrize("table, key", [
    ('[plugins.memory]\nrecall_k = "lots"\n', "plugins.memory.recall_k"),
    ("[plugins.web]\nallow_privat = true\n", "plugins.web.allow_privat"),
    ("[plugins.daemon]\nworkerz = 3\n", "plugins.daemon.workerz"),
    ("[plugins.scheduler]\nthreads = 0\n", "plugins.scheduler.threads"),
    ("[plugins.code]\nsesion = true\n", "plugins.code.sesion"),
])
def test_a_bad_plugin_setting_stops_goal_with_exit_2_and_one_line(home, table, key):
    path = configure(home, table)
    result = CliRunner().invoke(cli, ["goal", "Create a.txt"])
    assert result.exit_code == 2, result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"error: invalid configuration: {path}: {key}: ")
    assert not (home / "workspaces").exists() or not any((home / "workspaces").iterdir())  # no run started


def test_an_environment_override_is_named_by_its_variable(home):
    configure(home)
    with pytest.raises(ConfigError) as err:
        load_config(env={"AGENTD_HOME": str(home), "AGENTD_LOOP__MAX_STEPZ": "4"})
    assert str(err.value).startswith("invalid configuration: AGENTD_LOOP__MAX_STEPZ: loop.max_stepz: unknown key")
    with pytest.raises(ConfigError) as err:
        load_config(env={"AGENTD_HOME": str(home), "AGENTD_PLUGINS__MEMORY__RECALL_K": "lots"})
    assert str(err.value).startswith(
        "invalid configuration: AGENTD_PLUGINS__MEMORY__RECALL_K: plugins.memory.recall_k: Input should be")


def test_config_show_lists_plugin_defaults_with_secrets_masked(home):
    configure(home, '[plugins.web]\nbrave_api_key = "sekrit"\n[plugins.memory.headers]\nAuthorization = "Bearer sekrit"\n')
    result = CliRunner().invoke(cli, ["config", "show", "--json"])
    assert result.exit_code == 0, result.output
    plugins = json.loads(result.output)["plugins"]
    assert plugins["memory"]["recall_k"] == 4 and plugins["daemon"]["workers"] == 2
    assert plugins["web"]["brave_api_key"] == "***" and plugins["web"]["brave_api_key_env"] == "BRAVE_API_KEY"
    assert plugins["memory"]["headers"] == {"Authorization": "***"}
    assert plugins["scheduler"]["threads"] == 4 and plugins["policy"] == {"deny_effects": [], "deny_tools": []}
    assert "sekrit" not in CliRunner().invoke(cli, ["config", "show"]).output


def test_plugins_still_read_their_raw_table(home):
    configure(home, "[plugins.web]\nallow_private = true\n")
    config = load_config()
    assert config.plugin_settings("web") == {"allow_private": True}
    assert config_as_dict(config)["plugins"]["web"]["allow_private"] is True
