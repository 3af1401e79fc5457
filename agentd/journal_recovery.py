"""A way out of a damaged journal: check it, move it aside, rebuild a journal from whatever can be read.

``check_journal`` opens ``agentd.db`` read-only and runs SQLite's ``integrity_check``; it also lists workspaces
no run owns (what is left when a ``-wal`` was deleted after a crash: the runs are gone, their files are not).
``recover_journal`` never deletes anything: the damaged file (with its ``-wal`` and ``-shm``, so SQLite still
reads them together) is renamed ``agentd.db.corrupt-<time>``, and every row SQLite can still read from it is
copied, table by table, into a fresh journal with every core migration. Reading skips past damaged pages (rowid
jumps) and tolerates a truncated file (``writable_schema`` lifts SQLite's page-count check). The ``sqlite3``
shell's ``.recover`` is not used: the Debian 12 build (3.40.1) fails on every database, intact or not.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .errors import AgentdError
from .journal import Journal

SIDE_FILES = ("-wal", "-shm")


class RecoveryError(AgentdError):
    """The journal cannot be recovered right now (a daemon holds it, or the home is not writable)."""


@dataclass
class CheckReport:
    """What `agentd journal check` found."""

    path: Path
    problems: list[str] = field(default_factory=list)
    runs: int | None = None  # None: the runs table could not be read
    orphans: list[str] = field(default_factory=list)  # workspace folders no run owns

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class RecoverReport:
    """What `agentd journal recover` did."""

    moved_to: Path
    rows: dict[str, int]
    runs_saved: int
    orphans: list[str]


def check_journal(path: Path, workspaces: Path) -> CheckReport:
    """Read-only: integrity of ``path`` and workspaces that no run owns."""
    report = CheckReport(path)
    if not path.exists():
        report.runs = 0
        report.orphans = _orphans(workspaces, set())
        return report
    owned: set[str] = set()
    try:
        with contextlib.closing(_open_ro(path)) as db:
            verdict = [row[0] for row in db.execute("PRAGMA integrity_check(20)")]
            if verdict != ["ok"]:
                report.problems += [f"integrity: {line}" for line in verdict]
            for run_id, workspace in db.execute("SELECT id, workspace FROM runs"):
                owned |= {run_id, Path(workspace).name}
            report.runs = db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    except sqlite3.Error as exc:
        report.problems.append(f"{exc} (SQLite cannot read {path.name})")
    report.orphans = _orphans(workspaces, owned) if report.runs is not None else []
    return report


def recover_journal(path: Path, workspaces: Path) -> RecoverReport:
    """Move the damaged journal aside, rebuild one from what it still holds; returns what was saved."""
    with _daemon_lock(path.parent):
        aside = _aside_name(path)
        os.replace(path, aside)
        for suffix in SIDE_FILES:
            side = path.with_name(path.name + suffix)
            if side.exists():
                os.replace(side, aside.with_name(aside.name + suffix))
        rows = _rebuild(aside, path)
        with contextlib.closing(_open_ro(path)) as db:
            owned = {r for row in db.execute("SELECT id, workspace FROM runs") for r in (row[0], Path(row[1]).name)}
        return RecoverReport(aside, rows, rows.get("runs", 0), _orphans(workspaces, owned))


def _open_ro(path: Path) -> sqlite3.Connection:
    """Read-only, changing nothing; with no -wal and no -shm (which read-only SQLite cannot create) as immutable."""
    alone = not any(path.with_name(path.name + suffix).exists() for suffix in SIDE_FILES)
    return sqlite3.connect(f"file:{path}?mode=ro{'&immutable=1' if alone else ''}", uri=True, timeout=5)


def _orphans(workspaces: Path, owned: set[str]) -> list[str]:
    if not workspaces.is_dir():
        return []
    return sorted(p.name for p in workspaces.iterdir() if p.is_dir() and p.name not in owned)


def _aside_name(path: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    aside, n = path.with_name(f"{path.name}.corrupt-{stamp}"), 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    return aside


@contextlib.contextmanager
def _daemon_lock(home: Path) -> Iterator[None]:
    """The daemon's own lock: recovering a journal a live daemon writes would lose its writes."""
    try:
        fd = os.open(home / "agentd.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise RecoveryError(f"cannot lock {home}: {exc.strerror}; check that AGENTD_HOME is writable") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RecoveryError(
                "a daemon is running on this home: stop it first (`agentd daemon stop`), then recover"
            ) from None
        yield
    finally:
        os.close(fd)


def _rebuild(source: Path, target: Path) -> dict[str, int]:
    """A fresh journal at ``target`` (core migrations), then every readable row of every table in ``source``."""
    Journal(target).close()
    counts: dict[str, int] = {}
    try:
        src = _open_ro(source)
        src.execute("PRAGMA writable_schema = ON")  # read-only: only lifts the check a truncated file fails
        tables = src.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ).fetchall()
    except sqlite3.Error:
        return counts  # nothing readable at all (not a database any more): an empty journal
    with contextlib.closing(src), contextlib.closing(sqlite3.connect(target)) as dst:
        existing = {row[0] for row in dst.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for name, sql in tables:
            if name == "lost_and_found" or not sql:
                continue
            if name not in existing:
                dst.execute(sql)  # a module's own table (schedules, the job store)
            counts[name] = _copy_rows(src, dst, name)
        dst.commit()
    return counts


def _copy_rows(src: sqlite3.Connection, dst: sqlite3.Connection, table: str) -> int:
    columns = [row[1] for row in dst.execute(f'PRAGMA table_info("{table}")')]
    wanted = [c for c in columns if c in {row[1] for row in src.execute(f'PRAGMA table_info("{table}")')}]
    names = ", ".join(f'"{c}"' for c in wanted)
    insert = f'INSERT OR IGNORE INTO "{table}" ({names}) VALUES ({", ".join("?" for _ in wanted)})'
    copied = 0
    for row in _readable_rows(src, table, names):
        copied += dst.execute(insert, row).rowcount
    return copied


def _readable_rows(src: sqlite3.Connection, table: str, names: str) -> Iterator[tuple]:
    """Rows in rowid order; past a damaged page, jump ahead by growing steps to reach the rows after it."""
    after, step = -(2**63), 0
    while True:
        try:
            for row in src.execute(f'SELECT rowid, {names} FROM "{table}" WHERE rowid > ? ORDER BY rowid', (after,)):
                after, step = row[0], 0
                yield row[1:]
            return
        except sqlite3.DatabaseError:
            step = 1 if step == 0 else step * 16
            if step > 2**40:
                return
            after += step
