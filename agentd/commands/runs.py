"""`agentd runs`: read the journal (list, show) and act on runs (cancel, approve, deny through the daemon)."""

from __future__ import annotations

import json
import time

import click


def _journal():  # type: ignore[no-untyped-def]
    from ..config import load_config
    from ..store import Journal

    config = load_config()
    return Journal(config.journal_path)


@click.group()
def runs() -> None:
    """Inspect and control runs."""


@runs.command("list")
@click.option("--limit", default=20, show_default=True)
@click.option("--status", help="Only runs with this status.")
@click.option("--json", "as_json", is_flag=True)
def list_runs(limit: int, status: str | None, as_json: bool) -> None:
    """List recent runs, newest first."""
    rows = _journal().list_runs(limit=limit, status=status)
    if as_json:
        click.echo(json.dumps(rows, default=str, indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("run", "status", "stop reason", "created", "goal")
    for r in rows:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created_at"]))
        table.add_row(r["id"], r["status"], r["stop_reason"] or "", created, r["goal"][:60])
    Console().print(table)


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Everything journaled: phases with prompts and raw output.")
def show_run(run_id: str, as_json: bool) -> None:
    """Show one run: its outcome, phases and tool calls."""
    from ..errors import AgentdError

    journal = _journal()
    run = journal.get_run(run_id)
    if run is None:
        raise AgentdError(f"no run {run_id!r}; `agentd runs list` shows the ids")
    phases = journal.phases(run["id"])
    calls = journal.tool_calls(run["id"])
    if as_json:
        click.echo(json.dumps({"run": run, "phases": phases, "tool_calls": calls}, default=str, indent=1))
        return
    click.echo(f"run {run['id']}  {run['status']} ({run['stop_reason'] or '-'})")
    click.echo(f"goal: {run['goal']}")
    click.echo(f"workspace: {run['workspace']}")
    if run["final_answer"]:
        click.echo(f"answer: {run['final_answer']}")
    click.echo(f"usage: {run['usage']}")
    for p in phases:
        summary = {k: p[k] for k in ("plan", "critique", "call", "observation", "feedback", "stop_reason", "error")
                   if k in p}
        click.echo(f"  {p['seq']:>3} {p['kind']:<9} {json.dumps(summary, default=str)[:200]}")
    for c in calls:
        click.echo(f"  tool {c['tool']} {c['status']} {json.dumps(c['args'])[:120]}")
