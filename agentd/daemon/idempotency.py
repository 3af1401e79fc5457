"""``Idempotency-Key`` for ``POST /runs``: a retried submission returns the run the first one created.

A client that saw a connection error cannot know whether its goal was journaled; retrying with the same key is
safe. The key is recorded with the run id it will get *before* the run is created, in the journal's database
(own table, own named migration), so a daemon that dies between the two still gives the retry that run id
(and creates the run then). Keys are kept for ``KEEP_S``; the same key with a different body is refused.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import HTTPException

from ..errors import AgentdError
from ..journal import new_run_id

KEEP_S = 24 * 3600
MAX_KEY_LENGTH = 200


class KeyReused(AgentdError):
    """An Idempotency-Key already used for a different request body."""


def m_idem_001_keys(db: sqlite3.Connection) -> None:
    """Submission keys and the run id each one was given."""
    db.execute(
        """CREATE TABLE idempotency_keys (
            key TEXT PRIMARY KEY,
            run_id TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            created_at REAL NOT NULL
        )"""
    )
    db.execute("CREATE INDEX idempotency_keys_created ON idempotency_keys(created_at)")


MIGRATIONS = [m_idem_001_keys]


def check_key(key: str) -> str:
    """A key is 1 to 200 printable ASCII characters (a UUID is typical); anything else is a 400."""
    if not 0 < len(key) <= MAX_KEY_LENGTH or not (key.isascii() and key.isprintable()):
        raise HTTPException(400, f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters")
    return key


class IdempotencyKeys:
    """The keys table, through the journal's connection (one lock, one WAL)."""

    def __init__(self, journal: Any) -> None:
        self.journal = journal
        journal.apply_migrations(MIGRATIONS)
        self._lock = threading.Lock()  # a retry racing its original waits for it instead of creating a second run

    @contextmanager
    def claim(self, key: str, body: str) -> Iterator[tuple[str, dict[str, Any] | None]]:
        """Yield (run id, the existing run or None); with None the caller creates the run under that id."""
        fingerprint = hashlib.sha256(body.encode()).hexdigest()
        with self._lock:
            with self.journal._tx() as db:
                db.execute("DELETE FROM idempotency_keys WHERE created_at < ?", (time.time() - KEEP_S,))
                run_id = new_run_id()  # an insert that finds the key does nothing: daemons sharing a journal race here
                cur = db.execute(
                    "INSERT INTO idempotency_keys VALUES (?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
                    (key, run_id, fingerprint, time.time()),
                )
                row = None if cur.rowcount == 1 else db.execute(
                    "SELECT run_id, fingerprint FROM idempotency_keys WHERE key = ?", (key,)
                ).fetchone()
            if row is not None:
                if row["fingerprint"] != fingerprint:
                    raise KeyReused(
                        "this Idempotency-Key was used for a different goal: use a new key for a new submission"
                    )
                run_id = row["run_id"]
            # A key recorded by a daemon that died before creating its run: the retry creates it now.
            yield run_id, (self.journal.get_run(run_id) if row is not None else None)
