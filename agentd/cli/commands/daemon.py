"""`agentd daemon`: run, start, stop, status and install the long-running daemon. Imports only click here."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click


def _config():  # type: ignore[no-untyped-def]
    from ...config import load_config

    return load_config()


@click.group()
def daemon() -> None:
    """Run agentd as a daemon: goals queue durably and survive restarts."""


@daemon.command("run")
@click.option("--log-level", help="debug | info | warning | error (default: plugins.daemon.log_level).")
def run(log_level: str | None) -> None:
    """Run the daemon in the foreground, logging to stderr, until SIGTERM or Ctrl-C."""
    import logging

    from ...daemon.server import run_foreground
    from ...daemon.setup import load_settings

    config = _config()
    level = (log_level or load_settings(config).log_level).upper()
    logging.basicConfig(
        stream=sys.stderr, level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if level != "DEBUG":
        logging.getLogger("apscheduler").setLevel(logging.WARNING)  # its per-job INFO lines drown ours
    run_foreground(config)


@daemon.command()
@click.option("--wait", "wait_s", default=60.0, show_default=True, help="Seconds to wait for it to answer.")
def start(wait_s: float) -> None:
    """Start the daemon in the background; logs go to AGENTD_HOME/logs/daemon.log."""
    from ...daemon import client
    from ...daemon.setup import Paths

    config = _config_or_log()
    paths = Paths(config.home)
    if client.daemon_running(config):
        click.echo(f"already running (pid {_pid(paths)})")
        return
    import subprocess

    from ...home import prepare_home

    prepare_home(config.home)
    with open(os.open(paths.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agentd", "daemon", "run"],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
            env=os.environ | {"AGENTD_HOME": str(config.home)},
        )
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            message = f"the daemon exited at start (code {proc.returncode}): {_last_line(paths.log)}; see {paths.log}"
            if proc.returncode == 2:  # it refused its configuration
                from ...errors import ConfigError

                raise ConfigError(message)
            raise click.ClickException(message)
        if client.daemon_running(config):
            click.echo(f"started (pid {proc.pid}); logs: {paths.log}")
            return
        time.sleep(0.2)
    raise click.ClickException(f"the daemon did not answer within {wait_s:g}s; see {paths.log}")


@daemon.command()
def reload() -> None:
    """Re-read the config and schedules.toml without a restart (like SIGHUP); on an error the old one stays."""
    from types import SimpleNamespace

    from ...config import resolve_home
    from ...daemon import client
    from ...errors import ConfigError

    config = SimpleNamespace(home=resolve_home())  # not loaded here: the daemon validates it, and logs a refusal
    if not client.daemon_running(config):
        click.echo("not running: nothing to reload (the next `agentd daemon start` reads the config)")
        sys.exit(1)
    try:
        result = client.request(config, "POST", "/reload")
    except client.DaemonError as exc:
        if exc.status_code == 400:
            raise ConfigError(str(exc).removeprefix("daemon: ")) from None
        raise
    click.echo(f"reloaded; models: {', '.join(result['models'])}")
    if result["needs_restart"]:
        click.echo(f"restart the daemon to apply: {', '.join('plugins.daemon.' + k for k in result['needs_restart'])}")
    for line in result["schedules"].get("conflicts", []) + result["schedules"].get("errors", []):
        click.echo(f"schedules: {line}", err=True)


@daemon.command()
@click.option("--timeout", "timeout_s", type=float, help="Seconds to wait (default: drain_timeout_s + 15).")
def stop(timeout_s: float | None) -> None:
    """Stop the daemon: running runs get drain_timeout_s to finish, then are cancelled."""
    from ...daemon.setup import Paths, load_settings

    config = _config()
    paths = Paths(config.home)
    pid = _pid(paths)
    if pid is None or not _alive(pid):
        _clean_stale(paths)
        click.echo("not running")
        return
    import signal

    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + (timeout_s or load_settings(config).drain_timeout_s + 15)
    while time.monotonic() < deadline:
        if not _alive(pid):
            click.echo(f"stopped (pid {pid})")
            return
        time.sleep(0.2)
    raise click.ClickException(
        f"pid {pid} is still running; `agentd daemon stop` again, or kill -TERM it twice"
    )


@daemon.command()
@click.option("--json", "as_json", is_flag=True)
def status(as_json: bool) -> None:
    """Pid, uptime, version, queue depth, running runs, loaded models (exit 1 when not running)."""
    from ...daemon import client

    config = _config()
    if not client.daemon_running(config):
        click.echo(json.dumps({"running": False}) if as_json else "not running")
        sys.exit(1)
    data = client.request(config, "GET", "/status")
    warning = client.stale_config_warning(config)
    if warning:
        click.echo(warning, err=True)
    if as_json:
        click.echo(json.dumps({"running": True} | data, indent=1))
        return
    click.echo(f"running  pid {data['pid']}  version {data['version']}  up {data['uptime_s']:.0f}s")
    click.echo(f"home     {data['home']}")
    processes = data.get("run_in") == "processes"
    click.echo(
        f"queue    {data['queue_depth']} waiting, {len(data['running_runs'])} running "
        f"({data['workers']} {'worker processes' if processes else 'workers'}), "
        f"{data['finished_since_start']} done since start"
    )
    for run_id in data["running_runs"]:
        click.echo(f"  running {run_id}")
    if processes:
        click.echo(f"workers  pids {', '.join(str(p) for p in data.get('worker_pids', [])) or 'none alive'}")
        click.echo("models   loaded by each worker process")
    else:
        click.echo(f"models   {', '.join(data['models_loaded']) or 'none loaded yet'}")
    daemons = data.get("daemons")
    if isinstance(daemons, list) and data.get("journal") != "sqlite":
        from ...daemon.peers import describe  # the daemons sharing this journal (docs/scale-out.md)

        alive = sum(1 for d in daemons if d["alive"])
        click.echo(f"daemons  {alive} alive on the journal")
        for row in daemons:
            click.echo(f"  {describe(row)}")
    elif isinstance(daemons, dict):
        click.echo(f"daemons  {daemons['error']}")
    if "scheduler" in data:
        click.echo(f"schedule {json.dumps(data['scheduler'], default=str)[:300]}")


@daemon.command()
@click.option("--print", "print_only", is_flag=True, help="Print the unit instead of writing it.")
def install(print_only: bool) -> None:
    """Write a systemd user unit so the daemon starts at login (prints it where systemd is absent)."""
    from ...daemon.setup import systemd_unit

    config = _config()
    unit = systemd_unit(config)
    import shutil

    has_systemd = shutil.which("systemctl") is not None and Path("/run/systemd/system").is_dir()
    if print_only or not has_systemd:
        if not print_only:
            click.echo(
                "# systemd is not running here; save this as ~/.config/systemd/user/agentd.service", err=True
            )
        click.echo(unit, nl=False)
        return
    target = (
        Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
        / "systemd"
        / "user"
        / "agentd.service"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(unit)
    click.echo(f"wrote {target}")
    click.echo("enable it:  systemctl --user daemon-reload && systemctl --user enable --now agentd")
    click.echo(f"start at boot without a login:  loginctl enable-linger {os.environ.get('USER', '$USER')}")


def _config_or_log():  # type: ignore[no-untyped-def]
    """The config; when it is invalid, the reason also goes to daemon.log (where a daemon's problems are looked
    for) before the CLI exits 2."""
    from ...config import resolve_home
    from ...daemon.setup import Paths
    from ...errors import ConfigError

    try:
        return _config()
    except ConfigError as exc:
        log = Paths(resolve_home()).log
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as f:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            f.writelines(f"{stamp} ERROR agentd.daemon: not started: {line}\n" for line in str(exc).splitlines())
        raise


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1] if lines else "no log"


def _pid(paths) -> int | None:  # type: ignore[no-untyped-def]
    from ...daemon.setup import read_pid

    return read_pid(paths)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_stale(paths) -> None:  # type: ignore[no-untyped-def]
    """A pid file or socket left by a crashed daemon: remove it unless a daemon holds the lock."""
    import fcntl

    if not paths.lock.exists():
        return
    fd = os.open(paths.lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return
    finally:
        os.close(fd)
    for stale in (paths.pid, paths.socket):
        stale.unlink(missing_ok=True)


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@click.option("--run", "run_id", help="Only lines about this run (its id or a prefix of it).")
@click.option("-n", "--lines", default=100, show_default=True, help="How many past lines to show (0: all).")
def logs(follow: bool, run_id: str | None, lines: int) -> None:
    """The daemon's log (AGENTD_HOME/logs/daemon.log): start and end of every run, schedule fires, problems."""
    from ...daemon.setup import Paths

    path = Paths(_config().home).log
    if not path.is_file():
        raise click.ClickException(
            f"no daemon log at {path}: the daemon writes it when started with `agentd daemon start` "
            "(under systemd: `journalctl --user -u agentd`)"
        )
    keep = (lambda line: run_id in line) if run_id else (lambda line: True)
    with open(path, encoding="utf-8", errors="replace") as handle:
        past = [line for line in handle if keep(line)]
        for line in past[-lines:] if lines else past:
            click.echo(line, nl=False)
        while follow:
            line = handle.readline()
            if not line:
                time.sleep(0.3)
            elif keep(line):
                click.echo(line, nl=False)
