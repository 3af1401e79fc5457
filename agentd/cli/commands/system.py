"""`agentd doctor` and `agentd config show`: is the installation healthy, and what configuration is in force."""

from __future__ import annotations

import importlib
import json
import os
import tempfile

import click


@click.command()
@click.option("--json", "as_json", is_flag=True)
@click.option("--offline", is_flag=True, help="Skip the checks that contact servers (API models, web search).")
def doctor(as_json: bool, offline: bool) -> None:
    """Check the installation and say what to do about each problem (exit 1 if any check fails)."""
    if offline:
        os.environ["AGENTD_DOCTOR_OFFLINE"] = "1"  # plugins' doctor_checks read it too
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
    if config.notify:
        checks.append(_notify_check(config.notify))
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
    where = config.journal_path if app.journal.dialect == "sqlite" else app.journal.database()
    checks.append(("journal", True, f"{where} (migrations: {', '.join(app.journal.migrations())})"))
    if app.journal.dialect != "sqlite":
        checks.append(_daemons_check(app.journal))
    checks.extend(_model_check(app, name) for name in config.models)
    for info in app.host.infos.values():
        if info.error:
            last = info.error.strip().splitlines()[-1]
            checks.append((f"plugin {info.name}", False, f"{last}; `agentd plugins info {info.name}` has the traceback"))
    checks.append(("plugins", True, f"{len(app.host.infos)} loaded, {len(app.tools.tools)} tools"))
    for plugin, results in app.host.call_each("doctor_checks", config=config):
        for name, ok, detail in results or []:
            checks.append((f"{plugin}: {name}", bool(ok), str(detail)))
    core_parts = {"daemon": "agentd.daemon.setup", "schedules_file": "agentd.schedule.file"}  # with own checks
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
    if config.journal_url and not config.journal_url.startswith("sqlite:"):
        return checks  # a PostgreSQL journal: the server keeps it intact; opening it below checks it is there
    report = check_journal(config.journal_path, config.workspaces)
    if report.orphans:
        checks.append(("workspaces", False, f"{len(report.orphans)} belong to no run in the journal (e.g. "
                       f"{report.orphans[0]}): their runs were lost; `agentd journal check` lists them"))
    if not report.ok:
        checks.append(("journal", False, f"{config.journal_path} is damaged ({report.problems[0]}); "
                       "`agentd journal recover` keeps it aside and rebuilds one from what is readable"))
    return checks
def _daemons_check(journal) -> tuple[str, bool, str]:  # type: ignore[no-untyped-def]
    """A shared journal: which daemons are alive (their heartbeats in the ``daemons`` table)."""
    from ...daemon.peers import Peers

    rows = Peers(journal).all()
    alive = [r for r in rows if r["alive"]]
    if not alive:
        return ("daemons", True, "none alive on this journal: `agentd daemon start` on each machine")
    names = ", ".join(f"{r['host']} pid {r['pid']}" for r in alive)
    gone = len(rows) - len(alive)
    return ("daemons", True, f"{len(alive)} alive ({names})" + (f"; {gone} gone in the last day" if gone else ""))


def _notify_check(urls: list[str]) -> tuple[str, bool, str]:
    from ...errors import ConfigError
    from ...notify import check_urls

    try:
        check_urls(urls, "notify")
    except ConfigError as exc:
        return ("notify", False, str(exc))
    return ("notify", True, f"{len(urls)} Apprise URL(s) for scheduled runs that need their owner")


def _model_check(app, name: str) -> tuple[str, bool, str]:  # type: ignore[no-untyped-def]
    from ...errors import AgentdError

    label = f"model {name}"
    default = " (the default model)" if name == app.config.default_model else ""
    try:
        handle = app.models.get(name)
    except AgentdError as exc:
        return (label, False, str(exc))
    problem = _unreachable(app.config.models[name]) if handle.provider == "openai" else None
    if problem:
        return (label, False, problem)
    return (label, True, f"{handle.provider} loaded ({handle.info}){default}; structured output: {handle.structured}")


def _unreachable(model) -> str | None:  # type: ignore[no-untyped-def]
    """An OpenAI-compatible endpoint that does not answer GET /models (or refuses the key), said plainly."""
    import httpx

    from ...keys import secret

    if os.environ.get("AGENTD_DOCTOR_OFFLINE"):
        return None
    base_url = (model.base_url or "https://api.openai.com/v1").rstrip("/")
    key = model.api_key or secret(model.api_key_env)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        response = httpx.get(f"{base_url}/models", headers=headers, timeout=min(model.request_timeout_s, 10.0))
    except httpx.HTTPError as exc:
        return f"cannot reach {base_url}: {exc or type(exc).__name__}; is the server running and the URL right?"
    if response.status_code in (401, 403):
        return (f"{base_url} refused the API key (HTTP {response.status_code}); set ${model.api_key_env} or "
                f"`agentd keys set {model.api_key_env}`")
    if response.status_code >= 500:
        return f"{base_url} answered HTTP {response.status_code}; the server is unwell"
    return None


@click.group()
def config() -> None:
    """Show, create and change the configuration (AGENTD_HOME/configs/agentd.toml)."""


@config.command("init")
@click.option("--force", is_flag=True, help="Replace an existing config file.")
def config_init(force: bool) -> None:
    """Write a config file with every key at its default, each explained in a comment."""
    from pathlib import Path

    from ...config import load_config
    from ...errors import ConfigError

    config = load_config()
    target = config.config_file
    if target.exists() and not force:
        raise ConfigError(f"{target} exists; edit it, use `agentd config set KEY VALUE`, or --force to replace it")
    template = Path(__file__).resolve().parents[3] / "configs" / "agentd.toml"  # the documented defaults
    if template.is_file():
        text = template.read_text(encoding="utf-8")
    else:  # a non-editable install carries no configs/: the defaults without their comments
        import tomli_w

        from ...config import Config

        defaults = _drop_none(Config().model_dump(mode="json", exclude={"home"}))
        text = "# agentd configuration: every key with its default (docs: README.md).\n\n" + tomli_w.dumps(defaults)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    click.echo(f"wrote {target}")


@config.command("set")
@click.argument("key")
@click.argument("value")
def config_set(key: str, value: str) -> None:
    """Set KEY (dotted, e.g. loop.max_steps or plugins.web.search_backend) to VALUE in the config file.

    VALUE is a TOML literal when it parses as one (4, true, ["a", "b"]), else a string. The result is validated
    first: a bad key or value changes nothing. Comments and layout of the file are kept.
    """
    import tomlkit

    from ...config import _parse_env_value, load_config
    from ...errors import ConfigError

    config = load_config()
    path = config.config_file
    document = tomlkit.parse(path.read_text(encoding="utf-8")) if path.is_file() else tomlkit.document()
    parts = key.split(".")
    node = document
    for part in parts[:-1]:
        if part not in node:
            node[part] = tomlkit.table()
        node = node[part]
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {key}: {part} is a value, not a table")
    node[parts[-1]] = _parse_env_value(value)
    load_config(overrides={key: _parse_env_value(value)})  # validates with the file as it is plus this change
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomlkit.dumps(document), encoding="utf-8")
    click.echo(f"{key} = {tomlkit.item(_parse_env_value(value)).as_string()}  ({path})")


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
