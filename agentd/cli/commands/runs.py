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
        r["created_at"])), r["thread_id"] or r["id"], " ".join(r["goal"].split())] for r in rows]
    print_table(["run", "status", "stop reason", "created", "thread", "goal"], table, prose=("goal",))


@runs.command("show")
@click.argument("run_id", metavar="RUN_ID|last")
@click.option(
    "--json", "as_json", is_flag=True, help="Everything journaled: phases with prompts and raw output."
)
def show_run(run_id: str, as_json: bool) -> None:
    """Show one run: its outcome, phases and tool calls."""
    from ...engine.verify import verification_of
    from ...folder_changes import FolderChanges, describe
    from ...threads import resolve_run
    from ..render import usage_line

    journal = _journal()
    run = resolve_run(journal, run_id)
    phases = journal.phases(run["id"])
    calls = journal.tool_calls(run["id"])
    run |= verification_of(phases)
    changed = FolderChanges(journal).changed_files(run["id"])
    if as_json:
        data = {"run_id": run["id"], "run": run, "phases": phases, "tool_calls": calls, "changed_files": changed}
        click.echo(json.dumps(data, default=str, indent=1))
        return
    click.echo(f"run {run['id']}  {run['status']} ({run['stop_reason'] or '-'})")
    click.echo(f"goal: {run['goal']}")
    click.echo(f"workspace: {run['workspace']}")
    if run["thread_id"] not in (None, run["id"]):
        click.echo(f"thread: {run['thread_id']}  (continues run {run['goal_spec'].get('continues') or '?'})")
    click.echo(f"model: {run['model']}  profile: {run['goal_spec'].get('profile') or '-'}")
    if run["final_answer"]:
        click.echo(f"answer: {run['final_answer']}")
    if run["verified"] is not None:
        click.echo(f"verified: {'yes' if run['verified'] else 'no'}")
    for finding in run["findings"]:
        click.echo(f"  finding ({finding.get('kind', '?')}): {finding.get('message', '')}")
    click.echo(f"usage: {usage_line(run['usage'] or {})}")
    for folder in run["goal_spec"].get("dirs") or []:
        click.echo(f"attached: {folder['name']}/ = {folder['path']} ({folder['mode']})")
    if changed:
        click.echo("changed in attached folders (`agentd runs undo` puts them back):")
    for change in changed:
        click.echo(f"  {describe(change)}")
    for p in phases:
        summary = {
            k: p[k]
            for k in ("plan", "critique", "call", "observation", "feedback", "stop_reason", "error")
            if k in p
        }
        click.echo(f"  {p['seq']:>3} {p['kind']:<9} {json.dumps(summary, default=str)[:200]}")
    for c in calls:
        click.echo(f"  tool {c['tool']} {c['status']} {json.dumps(c['args'])[:120]}")


@runs.command("undo")
@click.argument("run_id", metavar="RUN_ID|last")
def undo_run(run_id: str) -> None:
    """Put back the files a run changed in attached :rw folders, from the copies kept before its first write."""
    from ...config import load_config
    from ...errors import AgentdError
    from ...folder_changes import undo_run as undo
    from ...journal import Journal
    from ...threads import resolve_run

    config = load_config()
    journal = Journal(config.journal_path)
    try:
        run = resolve_run(journal, run_id)
        if run["status"] in ("queued", "running"):
            raise AgentdError(f"run {run['id']} is {run['status']}; undo it once it has ended")
        for line in undo(config, journal, run["id"]):
            click.echo(line)
    finally:
        journal.close()
@runs.command("follow")
@click.argument("run_id", metavar="RUN_ID|last")
@click.option("--since", type=click.IntRange(0), default=0, help="Only events after this seq (JSON lines carry it).")
@click.option("--json", "as_json", is_flag=True, help="One JSON event per line; the last line is the outcome.")
def follow_run(run_id: str, since: int, as_json: bool) -> None:
    """Re-attach to a run's live stream until it ends; exit codes as `agentd goal`. Ctrl-C leaves it running."""
    import sys

    from ...config import load_config
    from ...threads import resolve_run
    from ..attach import follow_run as follow

    config = load_config()
    row = resolve_run(_journal(), run_id)
    sys.exit(follow(config, row["id"], since=since, as_json=as_json))


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
