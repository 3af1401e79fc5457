"""`agentd schedule` (add, list, remove, pause, resume, run, export) and `agentd report`.

The store in the journal's database is the one source of truth; ``configs/schedules.toml`` is imported into it
(here before listing or adding, and by the daemon on start). Everything is validated before it is stored.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click


def _config() -> Any:
    from ...config import load_config

    return load_config()


def _daemon_up(config: Any) -> bool:
    try:
        from ...daemon import client
    except ImportError:
        return False
    return bool(client.daemon_running(config))


def _app(config: Any) -> Any:
    from ...app import make_app

    return make_app(config)


def _scheduler(app: Any, submit: Any = None) -> Any:
    from ...schedule.scheduler import Scheduler

    submit = submit or (lambda goal, fire_id: app.engine.submit(goal))
    return Scheduler(app.config, app.journal, submit, tools=app.tools)


@click.group()
def schedule() -> None:
    """Goals that run on a timetable (the daemon fires them; missed fires are recorded, never silent)."""


@schedule.command("add")
@click.argument("name")
@click.argument("goal")
@click.option("--cron", default="", help='Crontab "min hour day month weekday" (6 fields: seconds first).')
@click.option("--every", default="", help="An interval: 30s, 30m, 2h, 1d, 1h30m.")
@click.option("--at", "at", default="", help='Once, at "YYYY-MM-DD HH:MM" in --timezone.')
@click.option("--timezone", "tz", default="UTC", show_default=True, help="IANA name, e.g. Europe/Paris.")
@click.option("--misfire", type=click.Choice(["skip", "once", "all"]), default="once", show_default=True,
              help="Fires missed while the daemon was down: run none, the latest, or all.")
@click.option("--grace", default="5m", show_default=True, help="How late a fire may start and still be on time.")
@click.option("--allow", "allowed", multiple=True,
              help="A tool unattended runs may call without approval (repeat). Default: workspace-only tools.")
@click.option("--notify", "notify", multiple=True,
              help='An Apprise URL told when a run fails or waits for approval (repeat), e.g. "ntfys://topic".')
@click.option("--model", help="Model name from the config.")
@click.option("--max-steps", type=click.IntRange(1))
@click.option("--max-tokens", type=click.IntRange(100))
@click.option("--max-seconds", type=click.FloatRange(1))
@click.option("--no-memory", is_flag=True)
@click.option("--dir", "dirs", multiple=True, metavar="PATH[:ro|:rw]",
              help="Attach a folder to every run (repeat); read-only unless :rw.")
@click.option("--no-undo", is_flag=True, help="Keep no copies of files changed in :rw folders.")
@click.option("--paused", is_flag=True, help="Store it paused.")
def add(
    name: str, goal: str, allowed: tuple[str, ...], notify: tuple[str, ...], tz: str, grace: str, no_memory: bool,
    dirs: tuple[str, ...], **opts: Any,
) -> None:
    """Add schedule NAME running GOAL, e.g. agentd schedule add nightly --cron "0 2 * * *" "Summarise ..."."""
    from ...errors import ConfigError
    from ...folders import absolute_dirs
    from ...schedule.file import resolve
    from ...schedule.scheduler import describe
    from ...schedule.spec import Schedule, make_trigger, next_fire, parse_duration

    config = _config()
    app = _app(config)
    try:
        scheduler = _scheduler(app)
        scheduler.import_file()  # a name the file declares is taken
        spec = Schedule(name=name, goal=goal, timezone=tz, grace_s=parse_duration(grace, "--grace"),
                        allowed_tools=list(allowed), notify=list(notify), memory=not no_memory,
                        dirs=absolute_dirs(dirs, Path.cwd()), **opts)
        resolve(spec, app.tools, config, declared_tools=bool(allowed))
        if spec.at and next_fire(make_trigger(spec), time.time()) is None:
            raise ConfigError(f"--at {spec.at!r} is in the past (timezone {spec.timezone})")
        stored = scheduler.store.add(spec)
        info = describe(scheduler.store, stored, time.time())
    finally:
        app.close()
    click.echo(f"added {name}: {info['trigger']}, next run {info['next_run'] or '-'}, "
               f"tools without approval: {', '.join(stored.allowed_tools) or 'none'}")
    if not _daemon_up(config):
        click.echo("note: the daemon is not running; this schedule fires once it starts (`agentd daemon start`)")


@schedule.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_schedules(as_json: bool) -> None:
    """Schedules with trigger, next run, last run and outcome, missed count and paused state."""
    config = _config()
    app = _app(config)
    try:
        scheduler = _scheduler(app)
        report = scheduler.import_file()
        data = scheduler.status() | {"daemon_running": _daemon_up(config), "file": report}
        for key in ("running", "started_at"):  # this process's scheduler never started: say nothing about it
            data.pop(key)
    finally:
        app.close()
    if as_json:
        click.echo(json.dumps(data, default=str, indent=1))
        return
    _print_list(data)


def _print_list(data: dict[str, Any]) -> None:
    from rich.console import Console

    from ..render import print_table

    console = Console(highlight=False)
    if not data["daemon_running"]:
        console.print("[yellow]daemon is not running[/]: schedules fire only while it runs (`agentd daemon "
                      "start`); fires missed meanwhile are handled by each schedule's misfire policy on start")
    rows = []
    for s in data["schedules"]:
        last = s["last_run"] or {}
        at = time.strftime("%Y-%m-%d %H:%M", time.localtime(last["at"])) if last else "-"
        nxt = (s["next_run"] or "-").replace("T", " ")[:16]
        rows.append([s["name"], s["trigger"], nxt, at, last.get("status") or "-",
                     str(s["missed"]), "yes" if s["paused"] else "no", s["misfire"]])
    print_table(["name", "trigger", "next run", "last run", "outcome", "missed", "paused", "misfire"], rows)
    from rich.text import Text

    # Text, not markup: a problem quoting a cron expression or a TOML key in brackets prints as written.
    for kind, key in (("conflict", "conflicts"), ("problem", "errors")):
        for line in data["file"].get(key, []):
            console.print(Text.assemble((kind, "red"), ": ", line), soft_wrap=True)


def _set(name: str, action: str) -> None:
    config = _config()
    app = _app(config)
    try:
        store = _scheduler(app).store
        if action == "remove":
            if store.require(name).source == "file":
                from ...errors import ConfigError

                raise ConfigError(f"{name!r} is declared in configs/schedules.toml: delete it there instead")
            store.remove(name)
        else:
            store.set_paused(name, action == "pause")
    finally:
        app.close()
    click.echo(f"{action}d {name}" if action != "pause" else f"paused {name}")


@schedule.command("remove")
@click.argument("name")
def remove(name: str) -> None:
    """Remove a schedule (its fire history stays in the journal)."""
    _set(name, "remove")


@schedule.command("pause")
@click.argument("name")
def pause(name: str) -> None:
    """Stop firing NAME until resumed; fire times passing meanwhile are not counted as missed."""
    _set(name, "pause")


@schedule.command("resume")
@click.argument("name")
def resume(name: str) -> None:
    """Fire NAME again from now on."""
    _set(name, "resume")


@schedule.command("run")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="One JSON event per line; the last line is the outcome.")
@click.option("--detach", is_flag=True, help="With a daemon running: print the run id and return at once.")
def run(name: str, as_json: bool, detach: bool) -> None:
    """Run NAME now (through the daemon when one runs, else in this process); exit code as `agentd goal`."""
    from ..render import JsonLines, LiveTrace, exit_code

    config = _config()
    on_event = JsonLines() if as_json else LiveTrace()
    if _daemon_up(config):
        from ...daemon import client

        run_id = _run_remote(config, name)
        if detach:
            click.echo(json.dumps({"run_id": run_id, "status": "queued"}) if as_json else run_id)
            sys.exit(0)
        sys.exit(exit_code(client.follow(config, run_id, on_event)))
    app = _app(config)
    try:
        run_id = _scheduler(app).run_now(name)
        if not as_json:
            click.echo("(no daemon running: running this schedule in-process)", err=True)
        outcome = app.engine.run(run_id, on_event=on_event)
    finally:
        app.close()
    sys.exit(exit_code(outcome))


def _run_remote(config: Any, name: str) -> str:
    """Fire through the daemon's scheduler; a daemon without one: record the fire here, queue it there."""
    from ...daemon import client

    remote = getattr(client, "run_schedule_now", None)
    if remote is not None:
        return str(remote(config, name))
    try:
        return str(client.request(config, "POST", f"/schedules/{name}/run")["run_id"])
    except client.DaemonError as exc:
        if exc.status_code != 404:
            raise
    app = _app(config)
    try:
        return str(_scheduler(app, lambda goal, fid: client.submit(config, goal)).run_now(name))
    finally:
        app.close()


@schedule.command("export")
def export() -> None:
    """Print every schedule as configs/schedules.toml text (it imports back to the same schedules)."""
    from ...schedule.file import export_toml

    app = _app(_config())
    try:
        click.echo(export_toml(_scheduler(app).store.all()), nl=False)
    finally:
        app.close()


@click.command()
@click.option("--since", default="24h", show_default=True, help="How far back: 30m, 24h, 7d.")
@click.option("--json", "as_json", is_flag=True)
def report(since: str, as_json: bool) -> None:
    """What the schedules did: runs and outcomes, answers, artifacts, misses, skips, runs awaiting approval."""
    from ...journal import Journal
    from ...schedule.report import build_report, render_text
    from ...schedule.spec import parse_duration

    config = _config()
    journal = Journal(config.journal_target)
    try:
        data = build_report(journal, time.time() - parse_duration(since, "--since"))
    finally:
        journal.close()
    click.echo(json.dumps(data, default=str, indent=1) if as_json else render_text(data))
