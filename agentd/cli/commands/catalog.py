"""`agentd tools`, `agentd plugins`: what was discovered, from where, and what it offers."""

from __future__ import annotations

import json
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
    from rich.table import Table

    table = Table("tool", "plugin", "side effects", "arguments", "description")
    for r in rows:
        table.add_row(r["name"], r["plugin"], ", ".join(r["side_effects"]) or "-",
                      ", ".join(r["parameters"].get("properties", {})), r["description"][:70])
    console = Console()
    console.print(table)
    from rich.markup import escape

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
    if as_json:
        click.echo(json.dumps(result.to_dict() | {"workspace": str(workspace)}, default=str))
    else:
        click.echo(result.for_model(limit=10_000))
        click.echo(f"workspace: {workspace}", err=True)
    raise SystemExit(0 if result.ok else 1)


@click.group()
def plugins() -> None:
    """List plugins and why any failed to load."""


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
    from rich.table import Table

    table = Table("plugin", "version", "source", "hooks", "tools", "status")
    for i in infos:
        status = "[red]failed[/]" if i["error"] else "[green]ok[/]"
        table.add_row(i["name"], i["version"], i["source"], ", ".join(i["hooks"]), ", ".join(i["tools"]), status)
    console = Console()
    console.print(table)
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
