"""`agentd runs`: read the journal (list, show) and act on runs (cancel, approve, deny through the daemon)."""

from __future__ import annotations

import json
import time

import click


def _journal():  # type: ignore[no-untyped-def]
    from ...config import load_config
    from ...journal import Journal

    config = load_config()
    return Journal(config.journal_target)


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
    if as_json:  # `run_id`, the key every other JSON output uses (`id` stays for older scripts)
        click.echo(json.dumps([{"run_id": r["id"]} | r for r in rows], default=str, indent=1))
        return
    from ..render import print_table

    table = [[r["id"], r["status"], r["stop_reason"] or "-", time.strftime("%Y-%m-%d %H:%M", time.localtime(
        r["created_at"])), " ".join(r["goal"].split())] for r in rows]
    print_table(["run", "status", "stop reason", "created", "goal"], table, prose=("goal",))


@runs.command("show")
@click.argument("run_id")
@click.option(
    "--json", "as_json", is_flag=True, help="Everything journaled: phases with prompts and raw output."
)
def show_run(run_id: str, as_json: bool) -> None:
    """Show one run: its outcome, phases and tool calls."""
    from ...engine.verify import verification_of
    from ...errors import AgentdError
    from ..render import usage_line

    journal = _journal()
    run = journal.get_run(run_id)
    if run is None:
        raise AgentdError(f"no run {run_id!r}; `agentd runs list` shows the ids")
    phases = journal.phases(run["id"])
    calls = journal.tool_calls(run["id"])
    run |= verification_of(phases)
    if as_json:
        data = {"run_id": run["id"], "run": run, "phases": phases, "tool_calls": calls}
        click.echo(json.dumps(data, default=str, indent=1))
        return
    click.echo(f"run {run['id']}  {run['status']} ({run['stop_reason'] or '-'})")
    click.echo(f"goal: {run['goal']}")
    click.echo(f"workspace: {run['workspace']}")
    click.echo(f"model: {run['model']}  profile: {run['goal_spec'].get('profile') or '-'}")
    if run["final_answer"]:
        click.echo(f"answer: {run['final_answer']}")
    if run["verified"] is not None:
        click.echo(f"verified: {'yes' if run['verified'] else 'no'}")
    for finding in run["findings"]:
        click.echo(f"  finding ({finding.get('kind', '?')}): {finding.get('message', '')}")
    click.echo(f"usage: {usage_line(run['usage'] or {})}")
    for p in phases:
        summary = {
            k: p[k]
            for k in ("plan", "critique", "call", "observation", "feedback", "stop_reason", "error")
            if k in p
        }
        click.echo(f"  {p['seq']:>3} {p['kind']:<9} {json.dumps(summary, default=str)[:200]}")
    for c in calls:
        click.echo(f"  tool {c['tool']} {c['status']} {json.dumps(c['args'])[:120]}")


@runs.command("cancel")
@click.argument("run_id")
def cancel_run(run_id: str) -> None:
    """Cancel a run: a running one stops at its next safe point; a queued or parked one ends now."""
    from ...config import load_config
    from ...daemon import client

    config = load_config()
    if client.daemon_running(config):
        answer = client.request(config, "POST", f"/runs/{run_id}/cancel")
        click.echo(f"{answer['run_id']}: {answer['status']}")
        return
    click.echo(f"{run_id}: {_cancel_offline(config, run_id)}")


def _cancel_offline(config, run_id: str) -> str:  # type: ignore[no-untyped-def]
    """No daemon: a queued or parked run ends in the journal; a running one belongs to another process."""
    from ...daemon.worker import end_run
    from ...errors import AgentdError
    from ...journal import Journal
    from ...records import RunStatus, StopReason

    journal = Journal(config.journal_target)
    try:
        row = journal.get_run(run_id)
        if row is None:
            raise AgentdError(f"no run {run_id!r}; `agentd runs list` shows the ids")
        if row["status"] == "running":
            raise AgentdError(
                f"run {row['id']} is running in another process (no daemon is up): stop it with Ctrl-C there"
            )
        if row["status"] not in ("queued", "awaiting_approval"):
            raise AgentdError(f"run {row['id']} already ended ({row['status']})")

        end_run(journal, row["id"], RunStatus.cancelled, StopReason.cancelled, "cancelled before it ran")
        return "cancelled"
    finally:
        journal.close()


def _decide(run_id: str, approved: bool) -> None:
    from ...config import load_config
    from ...daemon import client

    config = load_config()
    verb = "approve" if approved else "deny"
    if client.daemon_running(config):
        answer = client.request(config, "POST", f"/runs/{run_id}/{verb}")
        click.echo(f"{answer['run_id']}: " + ("approved; the daemon continues it" if approved else "denied; the run stops"))
        return
    from ...app import make_app

    app = make_app(config)
    try:
        app.engine.decide(run_id, approved)
    finally:
        app.close()
    if approved:
        click.echo(f"{run_id}: approved; it continues when the daemon starts (`agentd daemon start`)")
    else:
        click.echo(f"{run_id}: denied; the run stops (recorded as denied when the daemon next starts)")


@runs.command("approve")
@click.argument("run_id")
def approve_run(run_id: str) -> None:
    """Approve the tool call a parked run (awaiting_approval) asked for; the run continues."""
    _decide(run_id, True)


@runs.command("deny")
@click.argument("run_id")
def deny_run(run_id: str) -> None:
    """Deny a parked run's tool call; the run stops with stop_reason denied."""
    _decide(run_id, False)
