"""The example third-party plugin, pip-installed into a fresh virtualenv next to agentd, works end to end.

The venv sees agentd and its dependencies through ``--system-site-packages``; the plugin is built from a copy
of ``examples/agentd-plugin-units`` with the system's setuptools (``--no-build-isolation``, no index), so no
network is needed. Everything after the install runs with the venv's python, as a user's shell would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agentd.testing import call, feedback, plan

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "agentd-plugin-units"


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("plugin-venv")
    # A copy, so the build's egg-info and build/ folders never land in the checkout.
    source = shutil.copytree(EXAMPLE, root / "src", ignore=shutil.ignore_patterns("*.egg-info", "build"))
    venv = root / "venv"
    # --without-pip: the venv uses the system pip and setuptools, so the build needs no download.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    env = os.environ | {"PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(source)],
        check=True, env=env, capture_output=True,
    )
    return python


@pytest.fixture
def agentd_home(tmp_path) -> Path:
    """A home whose default model is the scripted provider, reading replies from script.json."""
    home = tmp_path / "home"
    (home / "configs").mkdir(parents=True)
    (home / "workspaces").mkdir()
    script = home / "script.json"
    replies = [
        plan(("convert 10 km to miles", "convert_units")),
        call("convert_units", value=10, from_unit="km", to_unit="mi"),
        feedback("done", final_answer="10 km is about 6.2 miles"),
    ]
    script.write_text(json.dumps({"replies": replies}))
    (home / "configs" / "agentd.toml").write_text(
        f'[models.local]\nprovider = "scripted"\nscript = "{script}"\n\n[plugins.units]\nprecision = 4\n'
    )
    return home


def agentd(python: Path, home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTD_")} | {"AGENTD_HOME": str(home)}
    return subprocess.run(
        [str(python), "-m", "agentd", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_the_plugin_is_only_visible_inside_the_venv(venv_python):
    inside = subprocess.run([str(venv_python), "-c", "import agentd_units"], capture_output=True)
    outside = subprocess.run([sys.executable, "-c", "import agentd_units"], capture_output=True)
    assert inside.returncode == 0 and outside.returncode != 0


def test_tools_list_and_plugins_list_show_the_installed_plugin(venv_python, agentd_home):
    tools = agentd(venv_python, agentd_home, "tools", "list", "--json")
    assert tools.returncode == 0, tools.stderr
    [tool] = [t for t in json.loads(tools.stdout)["tools"] if t["name"] == "convert_units"]
    assert tool["plugin"] == "units" and tool["side_effects"] == []
    assert tool["description"].startswith("Convert a quantity between units")
    assert tool["parameters"]["properties"]["value"]["type"] == "number"
    assert "mi" in tool["parameters"]["properties"]["to_unit"]["enum"]
    plugins = agentd(venv_python, agentd_home, "plugins", "list", "--json")
    [info] = [p for p in json.loads(plugins.stdout)["plugins"] if p["name"] == "units"]
    assert (info["source"], info["version"], info["module"], info["error"]) == (
        "entry point", "0.1.0", "agentd_units", None)
    assert info["tools"] == ["convert_units"] and info["hooks"] == ["register_tools"]


def test_a_goal_with_a_scripted_model_calls_the_plugin_tool(venv_python, agentd_home):
    result = agentd(venv_python, agentd_home, "goal", "How many miles is 10 km?", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    outcome = events[-1]
    # The bundled model's tiny profile lets the model decide after each step: the scripted answer stands.
    assert (outcome["type"], outcome["status"], outcome["final_answer"]) == (
        "run_finished", "succeeded", "10 km is about 6.2 miles"), outcome
    assert outcome["verified"] is True, outcome
    [observation] = [e for e in events if e["type"] == "observation"]
    # precision = 4 from [plugins.units] reached the tool through ctx.settings.
    assert (observation["tool"], observation["ok"], observation["output"]) == ("convert_units", True, "10 km = 6.214 mi")
    assert (agentd_home / "workspaces" / outcome["run_id"]).is_dir()


def test_the_plugin_s_own_tests_pass_in_the_venv(venv_python, tmp_path):
    result = subprocess.run(
        [str(venv_python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         str(EXAMPLE / "tests")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "passed" in result.stdout and "failed" not in result.stdout
