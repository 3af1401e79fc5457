"""`agentd doctor` and `agentd config show`: is the installation healthy, and what configuration is in force."""

from __future__ import annotations

import importlib
import json
import tempfile

import click


@click.command()
@click.option("--json", "as_json", is_flag=True)
def doctor(as_json: bool) -> None:
    """Check the installation and say what to do about each problem (exit 1 if any check fails)."""
    checks = run_checks()
    if as_json:
        click.echo(json.dumps([{"check": n, "ok": ok, "detail": d} for n, ok, d in checks], indent=1))
    else:
        for name, ok, detail in checks:
            mark = click.style("ok  ", fg="green") if ok else click.style("FAIL", fg="red")
            click.echo(f"{mark} {name}: {detail}")
    raise SystemExit(0 if all(ok for _, ok, _ in checks) else 1)


def run_checks() -> list[tuple[str, bool, str]]:
    from ...config import load_config
    from ...errors import AgentdError

    checks: list[tuple[str, bool, str]] = []
    try:
        config = load_config()
    except AgentdError as exc:
        return [("config", False, str(exc))]
    checks.append(("config", True, f"home {config.home}; file {config.config_file} "
                   f"({'present' if config.config_file.is_file() else 'absent: defaults in use'})"))
    try:
        config.home.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=config.home):
            pass
        checks.append(("home writable", True, str(config.home)))
    except OSError as exc:
        checks.append(("home writable", False, f"{exc}; set AGENTD_HOME to a folder you can write"))
        return checks
    checks += _home_checks(config)
    if not checks[-1][1] and checks[-1][0] == "journal":
        return checks  # opening a damaged journal would only repeat the error
    from ...app import make_app

    try:
        app = make_app(config)
    except AgentdError as exc:
        checks.append(("journal", False, str(exc)))
        return checks
    checks.append(("journal", True, f"{config.journal_path} (migrations: {', '.join(app.journal.migrations())})"))
    checks.append(_model_check(app, config.default_model))
    for info in app.host.infos.values():
        if info.error:
            last = info.error.strip().splitlines()[-1]
            checks.append((f"plugin {info.name}", False, f"{last}; `agentd plugins info {info.name}` has the traceback"))
    checks.append(("plugins", True, f"{len(app.host.infos)} loaded, {len(app.tools.tools)} tools"))
    for plugin, results in app.host.call_each("doctor_checks", config=config):
        for name, ok, detail in results or []:
            checks.append((f"{plugin}: {name}", bool(ok), str(detail)))
    core_parts = {"daemon": "agentd.daemon.server", "schedules_file": "agentd.schedule.file"}  # with own checks
    for label, module_name in core_parts.items():
        try:
            module = importlib.import_module(module_name)
            for name, ok, detail in module.doctor_checks(config):
                checks.append((f"{label}: {name}", bool(ok), str(detail)))
        except ImportError as exc:
            checks.append((label, False, f"cannot import: {exc}; reinstall with scripts/install.sh"))
    return checks


def _home_checks(config) -> list[tuple[str, bool, str]]:  # type: ignore[no-untyped-def]
    """Before anything opens (and so tightens) the home: who else can read it, and is the journal intact."""
    from ...home import loose_entries
    from ...journal_recovery import check_journal

    loose = loose_entries(config.home)
    detail = (f"{len(loose)} entr{'y' if len(loose) == 1 else 'ies'} readable by other users, e.g. {loose[0]}; "
              f"`chmod -R go-rwx {config.home}` (any agentd command that opens the home does it)"
              if loose else "owner-only")
    checks = [("home private", not loose, detail)]
    report = check_journal(config.journal_path, config.workspaces)
    if report.orphans:
        checks.append(("workspaces", False, f"{len(report.orphans)} belong to no run in the journal (e.g. "
                       f"{report.orphans[0]}): their runs were lost; `agentd journal check` lists them"))
    if not report.ok:
        checks.append(("journal", False, f"{config.journal_path} is damaged ({report.problems[0]}); "
                       "`agentd journal recover` keeps it aside and rebuilds one from what is readable"))
    return checks


def _model_check(app, name: str) -> tuple[str, bool, str]:  # type: ignore[no-untyped-def]
    from ...errors import AgentdError

    try:
        handle = app.models.get(name)
    except AgentdError as exc:
        return (f"model {name}", False, str(exc))
    return (f"model {name}", True, f"{handle.provider} loaded ({handle.info}); structured output: {handle.structured}")


@click.group()
def config() -> None:
    """Show the effective configuration."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True)
def config_show(as_json: bool) -> None:
    """The configuration in force after defaults, the config file and AGENTD_* variables (keys masked)."""
    from ...config import config_as_dict, load_config

    data = config_as_dict(load_config())
    if as_json:
        click.echo(json.dumps(data, indent=1, default=str))
        return
    import tomli_w

    click.echo(tomli_w.dumps(_drop_none(data)))


def _drop_none(value):  # type: ignore[no-untyped-def]
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    return value
