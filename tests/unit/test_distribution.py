"""The PyPI distribution name (issue 22): not the taken `agentd`, used consistently; `python -m agentd` works."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tomllib
from click.testing import CliRunner

import agentd
from agentd.cli import cli

ROOT = Path(__file__).resolve().parents[2]


def _project(path: Path) -> dict:
    return tomllib.loads(path.read_text(encoding="utf-8"))["project"]


def test_distribution_is_not_the_taken_pypi_name_and_everything_agrees():
    name = _project(ROOT / "pyproject.toml")["name"]
    assert name != "agentd"  # belongs to an unrelated project on PyPI
    assert name == agentd.DISTRIBUTION
    # The example plugin and the plugin guide depend on this name, not on the unrelated project.
    example = _project(ROOT / "examples" / "agentd-plugin-units" / "pyproject.toml")
    assert example["dependencies"] == [name]
    assert f'dependencies = ["{name}"]' in (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    assert 'dependencies = ["agentd"]' not in (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")


def test_version_option_names_the_distribution_without_needing_it_installed():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"agentd {agentd.__version__} ({agentd.DISTRIBUTION})"


def test_python_dash_m_agentd_is_the_agentd_command(home):
    done = subprocess.run([sys.executable, "-m", "agentd", "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"agentd {agentd.__version__} ({agentd.DISTRIBUTION})"
    done = subprocess.run([sys.executable, "-m", "agentd", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "goal" in done.stdout and "doctor" in done.stdout
