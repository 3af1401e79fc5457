"""Schedules and their fires, kept in the journal's database (own tables, own named migrations).

The store is the one source of truth for schedules: the CLI writes it, ``configs/schedules.toml`` is imported
into it, and the daemon's scheduler reads it. Every fire (enqueued, missed, skipped) is one row whose id is
UNIQUE, so a fire can never enqueue twice.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ..errors import ConfigError
from .spec import Schedule

ACTIVE_STATUSES = ("queued", "running", "awaiting_approval")


class FireStatus(str, Enum):
    """What became of one fire."""

    pending = "pending"  # recorded, not yet enqueued (a crash here is finished on restart)
    enqueued = "enqueued"
    missed = "missed"  # the daemon was down (or late past the grace time) and the policy did not run it
    skipped_overlap = "skipped_overlap"  # the schedule's previous run was still going


@dataclass
class Fire:
    """One row of ``sched_fires``."""

    id: str
    schedule: str
    scheduled_at: float
    status: FireStatus
    kind: str  # timer | catch_up | manual
    missed: bool  # it was due while the daemon was down / late past grace
    run_id: str | None
    detail: str
    recorded_at: float

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__ | {"status": self.status.value}


def m_sched_001_tables(db: sqlite3.Connection) -> None:
    """Schedules (spec as JSON) and fires (UNIQUE id per fire)."""
    db.execute(
        """CREATE TABLE sched_schedules (
            name TEXT PRIMARY KEY,
            spec_json TEXT NOT NULL,
            paused INTEGER NOT NULL DEFAULT 0,
            source TEXT NOT NULL,
            created_at REAL NOT NULL,
            anchor_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE sched_fires (
            id TEXT PRIMARY KEY,
            schedule TEXT NOT NULL,
            scheduled_at REAL NOT NULL,
            status TEXT NOT NULL,
            kind TEXT NOT NULL,
            missed INTEGER NOT NULL DEFAULT 0,
            run_id TEXT,
            detail TEXT NOT NULL DEFAULT '',
            recorded_at REAL NOT NULL
        )"""
    )
    db.execute("CREATE INDEX sched_fires_schedule ON sched_fires(schedule, scheduled_at)")
    db.execute("CREATE INDEX sched_fires_recorded ON sched_fires(recorded_at)")


MIGRATIONS = [m_sched_001_tables]


class ScheduleStore:
    """Reads and writes the scheduler's tables through the journal's connection (one lock, one WAL)."""

    def __init__(self, journal: Any) -> None:
        self.journal = journal
        journal.apply_migrations(MIGRATIONS)

    # The journal keeps its connection private; these two are its documented plumbing for module tables.
    def _tx(self) -> Any:
        return self.journal._tx()

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return self.journal._query(sql, params)

    # -- schedules --------------------------------------------------------------------------------
    def add(self, schedule: Schedule, now: float | None = None) -> Schedule:
        now = time.time() if now is None else now
        schedule.created_at = schedule.created_at or now
        schedule.anchor_at = schedule.anchor_at or now
        with self._tx() as db:
            if db.execute("SELECT 1 FROM sched_schedules WHERE name = ?", (schedule.name,)).fetchone():
                raise ConfigError(
                    f"a schedule named {schedule.name!r} exists: pick another name or `agentd schedule remove` it"
                )
            db.execute(
                "INSERT INTO sched_schedules VALUES (?, ?, ?, ?, ?, ?, ?)",
                (schedule.name, json.dumps(schedule.spec()), int(schedule.paused), schedule.source,
                 schedule.created_at, schedule.anchor_at, now),
            )
        return schedule

    def replace_spec(self, schedule: Schedule, now: float | None = None) -> None:
        """New declaration for an existing schedule (the file changed); pause state and history stay.

        The anchor moves to now: times the old trigger would have fired are not misses of the new one.
        """
        now = time.time() if now is None else now
        with self._tx() as db:
            db.execute(
                "UPDATE sched_schedules SET spec_json = ?, source = ?, anchor_at = ?, updated_at = ? WHERE name = ?",
                (json.dumps(schedule.spec()), schedule.source, now, now, schedule.name),
            )

    def get(self, name: str) -> Schedule | None:
        rows = self._query("SELECT * FROM sched_schedules WHERE name = ?", (name,))
        return _schedule(rows[0]) if rows else None

    def require(self, name: str) -> Schedule:
        schedule = self.get(name)
        if schedule is None:
            known = ", ".join(s.name for s in self.all()) or "none"
            raise ConfigError(f"no schedule named {name!r} (schedules: {known}); `agentd schedule list` shows them")
        return schedule

    def all(self) -> list[Schedule]:
        return [_schedule(r) for r in self._query("SELECT * FROM sched_schedules ORDER BY name")]

    def remove(self, name: str) -> None:
        self.require(name)
        with self._tx() as db:
            db.execute("DELETE FROM sched_schedules WHERE name = ?", (name,))

    def set_paused(self, name: str, paused: bool, now: float | None = None) -> None:
        """Pause, or resume; fire times that passed while paused are not misses (the anchor moves)."""
        self.require(name)
        now = time.time() if now is None else now
        with self._tx() as db:
            if paused:
                db.execute("UPDATE sched_schedules SET paused = 1, updated_at = ? WHERE name = ?", (now, name))
            else:
                db.execute(
                    "UPDATE sched_schedules SET paused = 0, anchor_at = ?, updated_at = ? WHERE name = ?",
                    (now, now, name),
                )

    def revision(self) -> tuple[Any, ...]:
        """Changes whenever a schedule is added, removed, changed, paused or resumed."""
        row = self._query("SELECT COUNT(*), COALESCE(MAX(updated_at), 0), COALESCE(SUM(paused), 0) FROM sched_schedules")
        names = self._query("SELECT group_concat(name) FROM sched_schedules")
        return (*tuple(row[0]), names[0][0])

    # -- fires ------------------------------------------------------------------------------------
    def record_fire(self, fire: Fire) -> bool:
        """Insert a fire; False when its id is already recorded (it was handled before, maybe by another daemon:
        on PostgreSQL a racing insert of the same id waits for the first one's transaction, then does nothing)."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO sched_fires VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (fire.id, fire.schedule, fire.scheduled_at, fire.status.value, fire.kind, int(fire.missed),
                 fire.run_id, fire.detail, fire.recorded_at),
            )
        return cur.rowcount == 1

    def update_fire(self, fire_id: str, status: FireStatus, run_id: str | None = None, detail: str = "") -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE sched_fires SET status = ?, run_id = COALESCE(?, run_id), detail = ? WHERE id = ?",
                (status.value, run_id, detail, fire_id),
            )

    def fires(self, schedule: str | None = None, since: float | None = None, status: str | None = None) -> list[Fire]:
        sql, params = "SELECT * FROM sched_fires WHERE 1=1", []
        for column, value, op in (("schedule", schedule, "="), ("recorded_at", since, ">="), ("status", status, "=")):
            if value is not None:
                sql += f" AND {column} {op} ?"
                params.append(value)
        return [_fire(r) for r in self._query(sql + " ORDER BY scheduled_at, recorded_at", tuple(params))]

    def last_fire(self, schedule: str, timed_only: bool = True) -> Fire | None:
        kinds = "('timer', 'catch_up')" if timed_only else "('timer', 'catch_up', 'manual')"
        rows = self._query(
            f"SELECT * FROM sched_fires WHERE schedule = ? AND kind IN {kinds} ORDER BY scheduled_at DESC LIMIT 1",
            (schedule,),
        )
        return _fire(rows[0]) if rows else None

    def last_run_fire(self, schedule: str) -> Fire | None:
        rows = self._query(
            "SELECT * FROM sched_fires WHERE schedule = ? AND run_id IS NOT NULL ORDER BY recorded_at DESC, scheduled_at DESC LIMIT 1",
            (schedule,),
        )
        return _fire(rows[0]) if rows else None

    def missed_count(self, schedule: str) -> int:
        return int(self._query("SELECT COUNT(*) FROM sched_fires WHERE schedule = ? AND missed = 1", (schedule,))[0][0])

    # -- runs (the journal's table, read only) ----------------------------------------------------
    def active_runs(self, schedule: str) -> list[dict[str, Any]]:
        """The schedule's runs still queued, running or awaiting approval (max one instance at a time)."""
        marks = ", ".join("?" for _ in ACTIVE_STATUSES)
        rows = self._query(
            f"SELECT id, status FROM runs WHERE schedule = ? AND status IN ({marks}) ORDER BY created_at",
            (schedule, *ACTIVE_STATUSES),
        )
        return [dict(r) for r in rows]

    def orphan_run(self, schedule: str) -> str | None:
        """A run of this schedule that no fire points at: made by a fire whose process died right after."""
        rows = self._query(
            "SELECT id FROM runs WHERE schedule = ? AND id NOT IN "
            "(SELECT run_id FROM sched_fires WHERE run_id IS NOT NULL) ORDER BY created_at LIMIT 1",
            (schedule,),
        )
        return rows[0]["id"] if rows else None

    def run_status(self, run_id: str) -> str | None:
        rows = self._query("SELECT status FROM runs WHERE id = ?", (run_id,))
        return rows[0]["status"] if rows else None


def _schedule(row: sqlite3.Row) -> Schedule:
    spec = json.loads(row["spec_json"])
    return Schedule(
        name=row["name"], paused=bool(row["paused"]), source=row["source"], created_at=row["created_at"],
        anchor_at=row["anchor_at"], **spec,
    )


def _fire(row: sqlite3.Row) -> Fire:
    data = dict(row)
    return Fire(**(data | {"status": FireStatus(data["status"]), "missed": bool(data["missed"])}))
