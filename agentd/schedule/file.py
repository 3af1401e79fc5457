"""``configs/schedules.toml``: schedules declared in a file, imported into the store (the one source of truth).

Import rules: a file schedule new to the store is added; one whose declaration changed is updated (pause state
and history are kept); one removed from the file is removed from the store. A name the CLI already owns is a
conflict: the store wins and the conflict is reported. A bad entry is reported and skipped; the rest import.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from ..errors import ConfigError
from .spec import Schedule, parse_spec, problems, validate

log = logging.getLogger(__name__)
# Tools an unattended run may call when a schedule names none: those that only touch the run's workspace.
SAFE_SIDE_EFFECTS = {"reads_files", "writes_files"}


@dataclass
class ImportReport:
    """What an import did; ``conflicts`` and ``errors`` are shown by `schedule list` and the daemon log."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, list[str]]:
        return self.__dict__.copy()


def schedules_path(config: Any) -> Path:
    return Path(config.home) / "configs" / "schedules.toml"


def default_allowed_tools(tools: Any) -> list[str]:
    """Registered tools whose side effects stay inside the workspace (no network, no code, no money)."""
    return sorted(t.name for t in tools.tools.values() if set(t.side_effects) <= SAFE_SIDE_EFFECTS)


def resolve(schedule: Schedule, tools: Any, config: Any, declared_tools: bool = True) -> Schedule:
    """Fill the default allowlist when none was declared, then validate against the registry."""
    if not declared_tools:
        schedule.allowed_tools = default_allowed_tools(tools)
    return validate(schedule, tools, config)


def read_file(path: Path) -> dict[str, dict[str, Any]]:
    """The ``[schedules.NAME]`` tables of the file ({} when it does not exist)."""
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"schedules"})
    if unknown:
        raise ConfigError(f"{path}: unknown top-level keys {unknown}; declare schedules as [schedules.NAME] tables")
    tables = data.get("schedules", {})
    bad = [name for name, value in tables.items() if not isinstance(value, dict)]
    if bad:
        raise ConfigError(f"{path}: schedules.{bad[0]} must be a table")
    return tables


def check_entry(name: str, table: dict[str, Any], tools: Any, config: Any) -> tuple[Schedule | None, list[str]]:
    """One ``[schedules.NAME]`` table: the resolved Schedule, or None and every problem with it."""
    schedule, found = parse_spec(name, table)
    if schedule is not None:
        if "allowed_tools" not in table and tools is not None:
            schedule.allowed_tools = default_allowed_tools(tools)
        found += problems(schedule, tools, config)
    return (None if found else schedule), found


def check_tables(path: Path, tables: dict[str, Any], tools: Any, config: Any) -> tuple[dict[str, Schedule], list[str]]:
    """The valid schedules by name, and one line per problem naming the file and the entry."""
    valid, lines = {}, []
    for name, table in tables.items():
        schedule, found = check_entry(name, table, tools, config)
        if schedule is not None:
            valid[name] = schedule
        lines += [f"{path} [schedules.{name}]: {problem}" for problem in found]
    return valid, lines


def import_file(store: Any, config: Any, tools: Any, now: float | None = None) -> ImportReport:
    """Bring the file's declarations into the store; see the module docstring for the rules."""
    report = ImportReport()
    path = schedules_path(config)
    try:
        tables = read_file(path)
    except ConfigError as exc:
        report.errors.append(str(exc))
        return report
    valid, report.errors = check_tables(path, tables, tools, config)
    existing = {s.name: s for s in store.all()}
    for name in tables:
        declared = valid.get(name)
        if declared is None:
            continue
        current = existing.get(name)
        if current is None:
            store.add(declared, now=now)
            report.added.append(name)
        elif current.source != "file":
            if current.spec() != declared.spec():
                report.conflicts.append(
                    f"{name}: declared in {path.name} and added with the CLI, differently; the stored (CLI) one "
                    f"is in force: remove one of them"
                )
        elif current.spec() != declared.spec():
            store.replace_spec(declared, now=now)
            report.updated.append(name)
    for name, current in existing.items():
        if current.source == "file" and name not in tables:
            store.remove(name)
            report.removed.append(name)
    for line in report.conflicts + report.errors:
        log.warning("schedules file: %s", line)
    return report


def export_toml(schedules: list[Schedule]) -> str:
    """The schedules as a ``schedules.toml`` text that imports back to the same declarations."""
    import tomli_w

    return tomli_w.dumps({"schedules": {s.name: s.spec() for s in schedules}})


def _tools(config: Any) -> Any:
    """The tool registry, to check allowlists as the daemon will (None when the app cannot be built)."""
    from ..app import make_app
    from ..errors import AgentdError

    try:
        app = make_app(config)
    except AgentdError:
        return None
    try:
        return app.tools
    finally:
        app.close()


def doctor_checks(config: Any) -> list[tuple[str, bool, str]]:
    """For `agentd doctor`: the schedules file parses, and stored schedules have a daemon to fire them."""
    checks: list[tuple[str, bool, str]] = []
    path = schedules_path(config)
    tables: dict[str, Any] = {}
    try:
        tables = read_file(path)
    except ConfigError as exc:
        checks.append(("schedules file", False, f"{exc}; fix it, then run `agentd daemon reload`"))
    if tables:
        valid, lines = check_tables(path, tables, _tools(config), config)
        checks += [("schedules file", False, line) for line in lines]
        if not lines:
            checks.append(("schedules file", True, f"{len(valid)} declared in {path}"))
        else:
            checks.append(("schedules file", False, f"{len(tables) - len(valid)} of {len(tables)} entries invalid; "
                           "fix them, then run `agentd daemon reload`"))
    elif not checks:
        checks.append(("schedules file", True, "none declared"))
    from ..journal import Journal

    journal = Journal(config.journal_target)
    try:
        from .store import ScheduleStore

        active = [s.name for s in ScheduleStore(journal).all() if not s.paused]
    finally:
        journal.close()
    if active:
        try:
            from ..daemon import client

            up = bool(client.daemon_running(config))
        except ImportError:
            up = False
        advice = "the daemon fires them" if up else "start the daemon (`agentd daemon start`) or they never fire"
        checks.append(("schedules", up, f"{len(active)} active; {advice}"))
    return checks
