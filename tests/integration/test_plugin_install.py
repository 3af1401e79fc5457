"""`agentd plugins install/uninstall` put a plugin into the interpreter agentd runs in (a fresh virtualenv
here), using the complete minimal plugin exactly as docs/plugins.md prints it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def _documented_plugin(folder: Path) -> Path:
    """The `pyproject.toml` and `agentd_hello.py` blocks of the doc's 'Installing a plugin' section."""
    section = DOC.read_text().split("## Installing a plugin", 1)[1].split("\n## ", 1)[0]
    toml, python = re.findall(r"```(?:toml|python)\n(.*?)```", section, re.S)
    folder.mkdir()
    (folder / "pyproject.toml").write_text(toml)
    (folder / "agentd_hello.py").write_text(python)
    return folder


@pytest.fixture
def venv(tmp_path) -> Path:
    venv = tmp_path / "venv"
    # --without-pip: the venv uses the system pip and setuptools, so no download is needed.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    return venv / "bin" / "python"


def _agentd(python: Path, home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTD_")} | {
        "AGENTD_HOME": str(home), "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    return subprocess.run([str(python), "-m", "agentd", *args], capture_output=True, text=True, env=env, timeout=300)


def test_install_use_and_uninstall_the_documented_plugin(tmp_path, venv):
    home = tmp_path / "home"
    (home / "configs").mkdir(parents=True)
    (home / "configs" / "agentd.toml").write_text('[plugins]\nload = ["hello"]\n\n[plugins.hello]\ngreeting = "Hi"\n')
    source = _documented_plugin(tmp_path / "agentd-hello")

    installed = _agentd(venv, home, "plugins", "install", "--no-build-isolation", str(source))
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "new plugins: hello" in installed.stdout
    outside = subprocess.run([sys.executable, "-c", "import agentd_hello"], capture_output=True)
    assert outside.returncode != 0  # it went into agentd's interpreter (the venv), nowhere else

    tools = _agentd(venv, home, "tools", "list", "--json")
    assert '"greet_file"' in tools.stdout and '"ctx"' not in tools.stdout  # ctx is hidden from the model
    ran = _agentd(venv, home, "tools", "run", "greet_file", "--arg", "name=Ada")
    assert ran.returncode == 0 and ran.stdout.strip() == "Hi, Ada!", ran.stdout + ran.stderr

    refused = _agentd(venv, home, "plugins", "uninstall", "-y", "not-a-plugin")
    assert refused.returncode == 2 and "not an installed plugin package" in refused.stderr
    removed = _agentd(venv, home, "plugins", "uninstall", "-y", "agentd-hello")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert '"greet_file"' not in _agentd(venv, home, "tools", "list", "--json").stdout


def test_a_package_without_an_entry_point_is_called_out(tmp_path, venv):
    home = tmp_path / "home"
    home.mkdir()
    source = tmp_path / "not-a-plugin"
    source.mkdir()
    (source / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n\n'
        '[project]\nname = "not-a-plugin"\nversion = "0.1.0"\n\n[tool.setuptools]\npy-modules = ["nap"]\n'
    )
    (source / "nap.py").write_text("")
    installed = _agentd(venv, home, "plugins", "install", "--no-build-isolation", str(source))
    assert installed.returncode == 0, installed.stderr
    assert "no new plugin appeared" in installed.stderr and "[project.entry-points.agentd]" in installed.stderr
