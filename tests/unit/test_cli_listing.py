"""`agentd --help` lists the plugins' commands from a cache (agentd.cli.listing) while it is current.

Each test runs the real CLI in fresh processes on its own AGENTD_HOME, with a folder of its own on sys.path
where a test "installs" a plugin distribution (a .dist-info with an ``agentd`` entry point) and removes it.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

HELP = """
import sys
from agentd.cli import cli
try:
    cli(["--help"], prog_name="agentd")
except SystemExit:
    pass
print("pydantic" in sys.modules, "agentd.plugins" in sys.modules, file=sys.stderr)
"""

PLUGIN = '''
import click
from agentd import hookimpl


@hookimpl
def register_commands(cli):
    @cli.command()
    def hello():
        """Say hello from an installed plugin."""
        click.echo("hello")
'''


@pytest.fixture
def env(tmp_path, home):
    """The environment of a CLI process: this home, a site folder first on sys.path, a fixed terminal width."""
    site = tmp_path / "site"
    site.mkdir()
    path = os.pathsep.join([str(site), *sys.path])
    return os.environ | {"AGENTD_HOME": str(home), "PYTHONPATH": path, "COLUMNS": "100"}


def help_text(env: dict) -> tuple[str, bool, bool]:
    """`agentd --help` in a fresh process: (its output, whether pydantic and the plugin loader were imported)."""
    done = subprocess.run([sys.executable, "-c", HELP], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    pydantic, plugins = done.stderr.split()[-2:]
    return done.stdout, pydantic == "True", plugins == "True"


def names(text: str) -> set[str]:
    """The command names a help text lists."""
    return {line.split()[0] for line in text.split("Commands:")[1].splitlines() if line.startswith("  ")}


def install(site: Path) -> None:
    (site / "hello_plugin.py").write_text(PLUGIN)
    info = site / "hello_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hello-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[agentd]\nhello = hello_plugin\n")


def test_help_from_the_cache_is_identical_and_imports_neither_pydantic_nor_plugins(env, home):
    first, pydantic, plugins = help_text(env)  # no cache yet: mounts the plugins and writes it
    assert pydantic and plugins
    assert {"memory", "web"} <= names(first)  # the bundled plugins' commands
    cached, pydantic, plugins = help_text(env)
    assert cached == first
    assert not pydantic and not plugins
    cache = home / "cache" / "cli-commands.json"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.parent.stat().st_mode) == 0o700


def test_a_plugin_installed_then_removed_appears_then_goes(env, tmp_path):
    site = tmp_path / "site"
    before, _, _ = help_text(env)
    assert "hello" not in names(before)
    install(site)
    installed, _, plugins = help_text(env)
    assert plugins  # the folder on sys.path changed: the cache was not trusted
    assert "Say hello from an installed plugin." in installed
    again, _, plugins = help_text(env)
    assert again == installed and not plugins  # the new listing was cached
    shutil.rmtree(site / "hello_plugin-0.1.dist-info")
    (site / "hello_plugin.py").unlink()
    removed, _, plugins = help_text(env)
    assert plugins and "hello" not in names(removed) and removed == before


def test_config_env_and_drop_in_changes_are_seen(env, home):
    help_text(env)
    blocked, _, plugins = help_text(env | {"AGENTD_PLUGINS__BLOCK": '["web"]'})
    assert plugins and "web" not in names(blocked) and "memory" in names(blocked)
    (home / "configs").mkdir()
    (home / "configs" / "agentd.toml").write_text('[plugins]\nblock = ["memory"]\n')
    from_file, _, plugins = help_text(env)
    assert plugins and "memory" not in names(from_file) and "web" in names(from_file)
    (home / "plugins").mkdir()
    (home / "plugins" / "dropped.py").write_text(PLUGIN)
    dropped, _, plugins = help_text(env)
    assert plugins and "Say hello from an installed plugin." in dropped
    (home / "plugins" / "dropped.py").write_text(PLUGIN.replace("Say hello", "Wave"))
    edited, _, plugins = help_text(env)
    assert plugins and "Wave from an installed plugin." in edited


@pytest.mark.parametrize("content", [
    "{not json",
    "",
    '{"key": 1}',
    '{"key": null, "depends": [], "commands": [{"name": "fake"}]}',
])
def test_a_corrupt_or_stale_cache_is_ignored_and_rewritten(env, home, content):
    expected, _, _ = help_text(env)
    cache = home / "cache" / "cli-commands.json"
    cache.write_text(content)
    shown, _, plugins = help_text(env)
    assert shown == expected and plugins and "fake" not in names(shown)
    assert json.loads(cache.read_text())["commands"]  # written anew


def test_a_cache_that_lies_about_its_key_lists_what_it_says_but_running_mounts_the_real_command(env, home):
    help_text(env)
    cache = home / "cache" / "cli-commands.json"
    data = json.loads(cache.read_text())
    data["commands"] = [c | {"help": "Listed from the cache."} if c["name"] == "web" else c for c in data["commands"]]
    cache.write_text(json.dumps(data))
    shown, _, _ = help_text(env)
    assert "Listed from the cache." in shown  # proves --help read the cache
    done = subprocess.run([sys.executable, "-m", "agentd", "web", "--help"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "clear" in done.stdout and "Listed from the cache." not in done.stdout
