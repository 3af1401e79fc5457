"""The daemons sharing a journal: a ``daemons`` table (own named migration) where each daemon writes its
heartbeat every few seconds. `agentd daemon status` and `agentd doctor` read it to say which daemons are alive:
a row whose heartbeat is older than three intervals, or that says it stopped, is a daemon that is gone (its
runs are taken over by the others once their leases expire).

A cancel for a run another daemon drives is a row in ``cancel_requests``: the driving daemon's queue looks for
its runs there when PostgreSQL notifies it (LISTEN/NOTIFY), and every ``CANCEL_POLL_S`` in any case, and stops
them at their next safe point, as if cancelled locally.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

KEEP_S = 24 * 3600  # rows of daemons gone longer than this are forgotten
MISSED_BEATS = 3  # a daemon silent for this many intervals reads as dead
CANCEL_POLL_S = 0.5  # how often a daemon on a shared journal looks for cancels of the runs it drives
CANCEL_CHANNEL = "agentd_cancels"  # NOTIFY channel: a cancel was requested (payload: the run id)


def m_daemons_001_table(db: Any) -> None:
    """One row per daemon process that used this journal: who, where, and its last heartbeat."""
    db.execute(
        """CREATE TABLE daemons (
            owner TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            home TEXT NOT NULL,
            version TEXT NOT NULL,
            workers INTEGER NOT NULL,
            running INTEGER NOT NULL DEFAULT 0,
            interval_s REAL NOT NULL,
            started_at REAL NOT NULL,
            heartbeat_at REAL NOT NULL,
            stopped_at REAL
        )"""
    )


def m_daemons_002_cancel_requests(db: Any) -> None:
    """Cancels asked of one daemon for a run another one drives."""
    db.execute("CREATE TABLE cancel_requests (run_id TEXT PRIMARY KEY, by TEXT NOT NULL, requested_at REAL NOT NULL)")


MIGRATIONS = [m_daemons_001_table, m_daemons_002_cancel_requests]


def request_cancel(journal: Any, run_id: str, by: str) -> None:
    """Ask whichever daemon drives ``run_id`` to cancel it (idempotent)."""
    now = time.time()
    with journal._tx() as db:
        db.execute("DELETE FROM cancel_requests WHERE requested_at < ?", (now - KEEP_S,))
        db.execute(
            "INSERT INTO cancel_requests (run_id, by, requested_at) VALUES (?, ?, ?) ON CONFLICT (run_id) DO NOTHING",
            (run_id, by, now),
        )
        db.notify(CANCEL_CHANNEL, run_id)


def take_cancels(journal: Any, run_ids: list[str]) -> list[str]:
    """The runs among ``run_ids`` someone asked to cancel; their requests are consumed."""
    if not run_ids:
        return []
    marks = ", ".join("?" * len(run_ids))
    with journal._tx() as db:
        found = [r[0] for r in db.execute(f"SELECT run_id FROM cancel_requests WHERE run_id IN ({marks})", run_ids)]
        if found:
            db.execute(f"DELETE FROM cancel_requests WHERE run_id IN ({', '.join('?' * len(found))})", found)
    return found


class Peers:
    """Heartbeats in, the list of daemons out, through the journal's connection."""

    def __init__(self, journal: Any) -> None:
        self.journal = journal
        journal.apply_migrations(MIGRATIONS)

    def beat(self, owner: str, *, home: str, version: str, workers: int, running: int, interval_s: float,
             started_at: float) -> None:
        """This daemon is alive (an upsert, the same SQL on SQLite and PostgreSQL)."""
        now = time.time()
        with self.journal._tx() as db:
            db.execute(
                "INSERT INTO daemons (owner, host, pid, home, version, workers, running, interval_s, started_at,"
                " heartbeat_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (owner) DO UPDATE SET"
                " running = excluded.running, heartbeat_at = excluded.heartbeat_at, stopped_at = NULL",
                (owner, socket.gethostname(), os.getpid(), home, version, workers, running, interval_s, started_at,
                 now),
            )
            db.execute("DELETE FROM daemons WHERE heartbeat_at < ?", (now - KEEP_S,))

    def stopped(self, owner: str) -> None:
        """A clean stop: the row says so at once instead of waiting for missed heartbeats."""
        with self.journal._tx() as db:
            db.execute("UPDATE daemons SET stopped_at = ?, running = 0 WHERE owner = ?", (time.time(), owner))

    def all(self, now: float | None = None) -> list[dict[str, Any]]:
        """Every daemon seen in the last day, alive ones first, each with ``alive`` and ``seen_s_ago``."""
        now = time.time() if now is None else now
        rows = [dict(r) for r in self.journal._query("SELECT * FROM daemons ORDER BY started_at, owner")]
        for row in rows:
            row["seen_s_ago"] = round(now - row["heartbeat_at"], 1)
            row["alive"] = row["stopped_at"] is None and row["seen_s_ago"] < MISSED_BEATS * row["interval_s"]
        return sorted(rows, key=lambda r: not r["alive"])


def describe(row: dict[str, Any]) -> str:
    """One line per daemon for the CLI."""
    state = "alive" if row["alive"] else ("stopped" if row["stopped_at"] else "dead")
    return (f"{state:7} {row['host']} pid {row['pid']}  {row['running']}/{row['workers']} running  "
            f"seen {row['seen_s_ago']:.0f}s ago  home {row['home']}")
