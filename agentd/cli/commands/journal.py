"""`agentd journal check` and `agentd journal recover`: find and get out of a damaged journal."""

from __future__ import annotations

import click


@click.group()
def journal() -> None:
    """Check the journal (agentd.db) or rebuild it from a damaged one."""


def _sqlite_config(command: str):  # type: ignore[no-untyped-def]
    """The config, when its journal is the SQLite file these commands work on."""
    from ...config import load_config

    config = load_config()
    if config.journal_url and not config.journal_url.startswith("sqlite:"):
        raise click.ClickException(
            f"`agentd journal {command}` works on a SQLite journal; this one is on PostgreSQL (journal_url): "
            "use the server's own tools (pg_dump, pg_amcheck) and `agentd doctor`"
        )
    return config


@journal.command("check")
def check() -> None:
    """Check the journal's integrity and list workspaces no run owns (exit 1 on a problem)."""
    from ...journal_recovery import check_journal

    config = _sqlite_config("check")
    report = check_journal(config.journal_path, config.workspaces)
    if report.ok:
        click.echo(f"journal ok: {config.journal_path} ({report.runs} runs)")
    for problem in report.problems:
        click.secho(f"damaged: {problem}", fg="red", err=True)
    if not report.ok:
        click.echo(f"run `agentd journal recover`: it keeps the damaged file as {config.journal_path.name}.corrupt-<time> "
                   "and rebuilds a journal from what can be read", err=True)
    _report_orphans(report.orphans, config.workspaces)
    raise SystemExit(0 if report.ok and not report.orphans else 1)


@journal.command("recover")
@click.option("--yes", is_flag=True, help="Recover even when the check finds no damage.")
def recover(yes: bool) -> None:
    """Move the damaged journal aside (agentd.db.corrupt-<time>, never deleted) and rebuild it from what is readable."""
    from ...journal_recovery import check_journal, recover_journal

    config = _sqlite_config("recover")
    if not config.journal_path.exists():
        raise click.ClickException(f"there is no journal at {config.journal_path}: nothing to recover")
    if check_journal(config.journal_path, config.workspaces).ok and not yes:
        click.echo("the journal passes its integrity check: nothing to recover (--yes rebuilds it anyway)")
        return
    report = recover_journal(config.journal_path, config.workspaces)
    click.echo(f"damaged journal kept as {report.moved_to}")
    tables = ", ".join(f"{name} {count}" for name, count in sorted(report.rows.items()) if name != "migrations") or "nothing readable"
    click.echo(f"rebuilt {config.journal_path} from every readable row: {tables}")
    click.echo(f"runs saved: {report.runs_saved}")
    _report_orphans(report.orphans, config.workspaces)


def _report_orphans(orphans: list[str], workspaces) -> None:  # type: ignore[no-untyped-def]
    if orphans:
        shown = ", ".join(orphans[:10]) + (f" and {len(orphans) - 10} more" if len(orphans) > 10 else "")
        click.echo(f"{len(orphans)} workspace(s) in {workspaces} belong to no run in the journal (their runs "
                   f"were lost, e.g. with a deleted agentd.db-wal; the files are kept): {shown}", err=True)
