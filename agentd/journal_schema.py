"""The journal's schema: migrations are small named functions, applied in order and each recorded once.

The SQL is written for SQLite and translated for PostgreSQL by journal_db.py (placeholders, DDL types).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any


def _run_script(db: sqlite3.Connection, script: str) -> None:
    """Statement by statement: executescript() would commit and break the migration's transaction."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def m001_initial(db: sqlite3.Connection) -> None:
    _run_script(
        db,
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            goal TEXT NOT NULL,
            goal_json TEXT NOT NULL,
            status TEXT NOT NULL,
            stop_reason TEXT,
            final_answer TEXT,
            workspace TEXT NOT NULL,
            model TEXT,
            schedule TEXT,
            usage_json TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL
        );
        CREATE INDEX runs_status ON runs(status);
        CREATE INDEX runs_created ON runs(created_at);
        CREATE TABLE phases (
            run_id TEXT NOT NULL REFERENCES runs(id),
            seq INTEGER NOT NULL,
            kind TEXT NOT NULL,
            data_json TEXT NOT NULL,
            started_at REAL NOT NULL,
            finished_at REAL NOT NULL,
            PRIMARY KEY (run_id, seq)
        );
        CREATE TABLE tool_calls (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL REFERENCES runs(id),
            step INTEGER NOT NULL,
            tool TEXT NOT NULL,
            args_json TEXT NOT NULL,
            status TEXT NOT NULL,
            result_json TEXT,
            started_at REAL NOT NULL,
            finished_at REAL
        );
        CREATE INDEX tool_calls_run ON tool_calls(run_id);
        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL,
            type TEXT NOT NULL,
            data_json TEXT NOT NULL,
            ts REAL NOT NULL
        );
        CREATE INDEX events_run ON events(run_id, id);
        """
    )


def m002_run_leases(db: sqlite3.Connection) -> None:
    _run_script(
        db,
        """
        ALTER TABLE runs ADD COLUMN lease_owner TEXT;
        ALTER TABLE runs ADD COLUMN lease_token BIGINT NOT NULL DEFAULT 0;
        ALTER TABLE runs ADD COLUMN lease_heartbeat_at DOUBLE PRECISION;
        ALTER TABLE runs ADD COLUMN lease_expires_at DOUBLE PRECISION;
        CREATE INDEX runs_lease ON runs(status, lease_expires_at)
        """,
    )


def m003_run_threads(db: sqlite3.Connection) -> None:
    """Conversations: the runs of one thread (``agentd goal --continue``, ``agentd chat``) share a thread_id, the
    id of the run that began it; every earlier run began its own."""
    _run_script(
        db,
        """
        ALTER TABLE runs ADD COLUMN thread_id TEXT;
        UPDATE runs SET thread_id = id;
        CREATE INDEX runs_thread ON runs(thread_id, status)
        """,
    )


def m004_prompt_heads(db: sqlite3.Connection) -> None:
    """The constant start of the prompts (system message and worked examples), stored once by its digest; a
    phase journals only the turns after it and names the head (phases() puts the two back together)."""
    db.execute("CREATE TABLE prompt_heads (digest TEXT PRIMARY KEY, messages_json TEXT NOT NULL)")


MIGRATIONS: list[Callable[[Any], None]] = [
    m001_initial, m002_run_leases, m003_run_threads, m004_prompt_heads
]
