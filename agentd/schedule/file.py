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
from .spec import Schedule, from_spec, validate

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


def import_file(store: Any, config: Any, tools: Any, now: float | None = None) -> ImportReport:
    """Bring the file's declarations into the store; see the module docstring for the rules."""
    report = ImportReport()
    path = schedules_path(config)
    try:
        tables = read_file(path)
    except ConfigError as exc:
        report.errors.append(str(exc))
        return report
    existing = {s.name: s for s in store.all()}
    for name, table in tables.items():
        try:
            declared = resolve(from_spec(name, table), tools, config, declared_tools="allowed_tools" in table)
        except ConfigError as exc:
            report.errors.append(f"{path}: [schedules.{name}]: {exc}")
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


def doctor_checks(config: Any) -> list[tuple[str, bool, str]]:
    """For `agentd doctor`: the schedules file parses, and stored schedules have a daemon to fire them."""
    checks: list[tuple[str, bool, str]] = []
    path = schedules_path(config)
    try:
        tables = read_file(path)
        checks.append(("schedules file", True, f"{len(tables)} declared in {path}" if tables else "none declared"))
    except ConfigError as exc:
        checks.append(("schedules file", False, f"{exc}; fix it, then restart the daemon"))
    from ..journal import Journal

    journal = Journal(config.journal_path)
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
