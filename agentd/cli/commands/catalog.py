"""`agentd tools`, `agentd plugins`: what was discovered, from where, and what it offers."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click


def _app():  # type: ignore[no-untyped-def]
    from ...app import make_app

    return make_app()


@click.group()
def tools() -> None:
    """List and try tools."""


@tools.command("list")
@click.option("--json", "as_json", is_flag=True)
def tools_list(as_json: bool) -> None:
    """Every registered tool with its plugin and side effects, plus tools that are unavailable and why."""
    app = _app()
    rows = [t.summary() for t in app.tools.tools.values()]
    unavailable = [{"plugin": name, "reason": reason} for name, reason in _unavailable(app)]
    if as_json:
        click.echo(json.dumps({"tools": rows, "unavailable": unavailable}, indent=1))
        return
    from rich.console import Console
    from rich.markup import escape

    from ..render import print_table

    print_table(["tool", "plugin", "side effects", "arguments", "description"], [
        [r["name"], r["plugin"], ", ".join(r["side_effects"]) or "-",
         ", ".join(r["parameters"].get("properties", {})) or "-", r["description"]] for r in rows
    ], prose=("side effects", "arguments", "description"))
    console = Console()

    for item in unavailable:
        console.print(f"[yellow]unavailable[/] from {item['plugin']}: {escape(item['reason'])}")


def _unavailable(app: Any) -> list[tuple[str, str]]:
    """Tools a plugin could not offer (missing optional dependency, bad settings), as the plugins report it."""
    out = []
    for plugin, reasons in app.host.call_each("unavailable_tools", config=app.config):
        for reason in reasons or []:
            out.append((plugin, str(reason)))
    return out


def _parse_arg(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise click.BadParameter(f"{text!r} is not key=value")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


@tools.command("run")
@click.argument("name")
@click.option("--arg", "args", multiple=True, help="key=value; values are JSON when they parse as JSON.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--timeout", type=float, default=None, help="Seconds before the call is abandoned.")
def tools_run(name: str, args: tuple[str, ...], as_json: bool, timeout: float | None) -> None:
    """Run one tool by hand in a fresh workspace (policy hooks do not apply: you are the approver)."""
    from ...errors import ConfigError
    from ...tools import ToolContext, execute

    app = _app()
    if name not in app.tools:
        raise ConfigError(f"no tool {name!r}; `agentd tools list` shows what is registered")
    tool = app.tools[name]
    workspace = app.config.workspaces / ("manual-" + time.strftime("%Y%m%d-%H%M%S"))
    workspace.mkdir(parents=True, exist_ok=True)
    ctx = ToolContext(run_id=workspace.name, workspace=workspace, settings=app.config.plugin_settings(tool.plugin),
                      timeout_s=timeout or app.config.loop.tool_timeout_s)
    props = tool.parameters.get("properties", {})
    values = {}
    for text in args:
        key, value = _parse_arg(text)
        # A string parameter takes the text as typed: content=5 means "5", not the number 5.
        values[key] = text.split("=", 1)[1] if props.get(key, {}).get("type") == "string" else value
    result = execute(tool, values, ctx)
    kept = any(workspace.iterdir())
    if not kept:
        workspace.rmdir()  # the call wrote nothing: leave no empty folder behind
    if as_json:
        click.echo(json.dumps(result.to_dict() | {"workspace": str(workspace) if kept else None}, default=str))
    else:
        click.echo(result.for_model(limit=10_000))
        if kept:
            click.echo(f"workspace: {workspace}", err=True)
    raise SystemExit(0 if result.ok else 1)


@click.group()
def plugins() -> None:
    """List plugins and why any failed to load; install and uninstall them."""


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True)
def plugins_list(as_json: bool) -> None:
    """Name, version, source (built-in / entry point / drop-in), hooks, tools, and load errors."""
    from dataclasses import asdict

    app = _app()
    infos = [asdict(i) for i in app.host.infos.values()]
    if as_json:
        click.echo(json.dumps({"plugins": infos, "problems": app.tools.problems}, indent=1))
        return
    from rich.console import Console

    from ..render import print_table

    print_table(["plugin", "version", "source", "status", "hooks", "tools"], [
        [i["name"], i["version"] or "-", i["source"], "failed" if i["error"] else "ok", ", ".join(i["hooks"]),
         ", ".join(i["tools"]) or "-"] for i in infos
    ], prose=("hooks", "tools"))
    console = Console()
    for i in infos:
        if i["error"]:
            console.print(f"[red]{i['name']}[/]: {i['error'].strip().splitlines()[-1]}")
    for problem in app.tools.problems:
        console.print(f"[yellow]note[/]: {problem}")


@plugins.command("info")
@click.argument("name")
def plugins_info(name: str) -> None:
    """Everything known about one plugin, with the full traceback if it failed."""
    from dataclasses import asdict

    from ...errors import ConfigError

    app = _app()
    if name not in app.host.infos:
        raise ConfigError(f"no plugin {name!r}; `agentd plugins list` shows them")
    for key, value in asdict(app.host.infos[name]).items():
        click.echo(f"{key}: {value}")


@plugins.command("install")
@click.argument("packages", nargs=-1, required=True)
@click.option("-U", "--upgrade", is_flag=True, help="Upgrade to the newest version.")
@click.option("-e", "--editable", is_flag=True, help="Install the PATH in editable mode (for plugin authors).")
@click.option("--force-reinstall", is_flag=True)
@click.option("--no-deps", is_flag=True, help="Do not install the plugin's dependencies.")
@click.option("--no-build-isolation", is_flag=True, help="Build with the packages already installed (offline).")
def plugins_install(packages: tuple[str, ...], editable: bool, **flags: bool) -> None:
    """Install plugins (PyPI names or local PATHs) into the Python environment agentd itself runs in."""
    import importlib

    pip_flags = [f"--{name.replace('_', '-')}" for name, on in flags.items() if on]
    targets = [part for p in packages for part in (("-e", p) if editable else (p,))]
    before = _entry_point_plugins()
    _pip("install", *pip_flags, *targets)
    importlib.invalidate_caches()
    added = sorted(set(_entry_point_plugins()) - set(before))
    if added:
        click.echo(f"installed; new plugins: {', '.join(added)} (`agentd plugins list` shows them)")
        _restart_note()
    elif not flags["upgrade"] and not flags["force_reinstall"]:
        click.echo(
            "installed, but no new plugin appeared: a plugin declares [project.entry-points.agentd] in its "
            "pyproject.toml (see docs/plugins.md, 'Installing a plugin')", err=True,
        )
    else:
        click.echo("installed")


@plugins.command("uninstall")
@click.argument("packages", nargs=-1, required=True)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def plugins_uninstall(packages: tuple[str, ...], yes: bool) -> None:
    """Uninstall plugin packages (distribution names, as `plugins list` shows) from agentd's environment."""
    from ...errors import ConfigError

    own = _own_distribution()
    if own and any(_normalise(p) == _normalise(own) for p in packages):
        raise ConfigError(f"{own} is agentd itself; to remove agentd use `{sys.executable} -m pip uninstall {own}`")
    known = {dist: name for name, dist in _entry_point_plugins().items()}
    for package in packages:
        if _normalise(package) not in {_normalise(d) for d in known}:
            raise ConfigError(
                f"{package!r} is not an installed plugin package; installed: {', '.join(sorted(known)) or 'none'}"
            )
    if not yes:
        click.confirm(f"uninstall {', '.join(packages)} from {sys.prefix}?", abort=True)
    _pip("uninstall", "-y", *packages)
    click.echo(f"uninstalled {', '.join(packages)}")
    _restart_note()


def _restart_note() -> None:
    """A running daemon loaded its plugins at start: say so rather than let it silently go on without them."""
    from ...config import load_config
    from ...daemon import client

    if client.daemon_running(load_config()):
        click.echo("note: the running daemon still has its old plugins; restart it: "
                   "`agentd daemon stop && agentd daemon start`", err=True)


def _pip(*args: str) -> None:
    """pip in this interpreter (never whatever `pip` is first on PATH); its output goes straight to the user."""
    import subprocess

    from ...errors import AgentdError

    code = subprocess.run([sys.executable, "-m", "pip", *args]).returncode
    if code != 0:
        raise AgentdError(f"pip {args[0]} failed (exit {code}); pip's message is above")


def _entry_point_plugins() -> dict[str, str]:
    """Plugin name -> the distribution that provides it, for every entry point in the `agentd` group."""
    from importlib.metadata import entry_points

    from ...plugins import ENTRY_POINT_GROUP

    return {ep.name: ep.dist.name if ep.dist else "?" for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _own_distribution() -> str | None:
    from importlib.metadata import packages_distributions

    return next(iter(packages_distributions().get("agentd", [])), None)


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")

