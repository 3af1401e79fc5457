"""The journal's database connection, SQLite or PostgreSQL, behind one small interface.

The journal's SQL is written once, SQLite-style (``?`` placeholders); this adapter runs it on either database:
on PostgreSQL (psycopg 3) placeholders become ``%s``, DDL types that differ are rewritten (``REAL`` is a
4-byte float there, ``AUTOINCREMENT`` is ``BIGSERIAL``), and rows are read by name or by position on both.
The few real dialect differences are methods: ``begin`` (SQLite's ``BEGIN IMMEDIATE`` takes the one write
lock; PostgreSQL locks rows as they are written), ``insert_id`` (``lastrowid`` vs ``RETURNING id``),
``skip_locked`` (PostgreSQL's ``FOR UPDATE SKIP LOCKED`` in a queue claim; SQLite's single writer needs none),
``serialize`` (migrations run one process at a time: an advisory lock on PostgreSQL) and ``notify``/``listen``
(PostgreSQL's LISTEN/NOTIFY wakes other daemons' followers and delivers cancels; a no-op on SQLite).

``journal_url``: ``sqlite:///ABSOLUTE/PATH`` (the default, ``$AGENTD_HOME/agentd.db``) or
``postgresql://user:password@host:port/dbname`` (any libpq URL, e.g. ``postgresql:///agentd?host=/run/pg``).
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # not POSIX: SQLite's own lock alone
    fcntl = None  # type: ignore[assignment]

SQLITE_PREFIX = "sqlite:///"
CHECKPOINT_EVERY = 200  # commits of one connection between its WAL checkpoints (~1,000 pages, SQLite's default)
_HELD = threading.local()  # per thread: the journals whose writers' lock it holds


class Row(tuple):
    """A result row read by position (``row[0]``) or by column name (``row["id"]``), and ``dict(row)``."""

    _names: tuple[str, ...] = ()

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            try:
                return tuple.__getitem__(self, self._names.index(key))
            except ValueError:
                raise IndexError(f"no column named {key!r}") from None
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


def _row_factory(cursor: Any) -> Any:
    """psycopg row factory: rows as Row (names from the cursor's description)."""
    names = tuple(col.name for col in cursor.description or ())

    def make(values: Sequence[Any]) -> Row:
        row = Row(values)
        row._names = names
        return row

    return make


class Cursor:
    """What ``execute`` returns on both databases: fetchone, fetchall, rowcount, iteration."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class SQLiteDatabase:
    """The embedded journal: one file in WAL mode; ``BEGIN IMMEDIATE`` takes the database's one write lock.

    Writers of several processes (a daemon and its worker processes, an in-process ``agentd goal``) queue for
    that lock on ``agentd.db-lock`` first (``flock``): a writer that finds SQLite's lock taken sleeps in SQLite's
    busy handler, 1 ms at the least and 5 ms on average here, where one waiting on the file lock is woken the
    moment the holder commits. Writers that skip the file lock (another program) still meet SQLite's."""

    dialect = "sqlite"
    Error: Any = sqlite3.Error

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"{SQLITE_PREFIX}{path}"
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._writer = _open_lock(path.with_name(path.name + "-lock"))
        self._locked = False  # this connection holds the writers' lock (begin to end)
        if self._writer is not None:
            # SQLite checkpoints the WAL inside the COMMIT that crosses its threshold, so under the writers' lock:
            # 20% of the lock's held time with two worker processes (fsync included). Checkpoint after it instead.
            self._db.execute("PRAGMA wal_autocheckpoint=0")
        self._commits = 0

    @property
    def in_transaction(self) -> bool:
        return self._db.in_transaction

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._db.execute(sql, tuple(params))

    def insert_id(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run an INSERT into a table with an ``id`` key; the new row's id."""
        return int(self._db.execute(sql, tuple(params)).lastrowid or 0)

    def begin(self) -> None:
        held = _held_paths()
        # A thread that already holds the file lock through another connection to this journal (one transaction
        # inside another's) would wait for itself forever: it meets SQLite's lock instead, as before.
        self._locked = self._writer is not None and self.path not in held
        if self._locked:
            fcntl.flock(self._writer, fcntl.LOCK_EX)
            held.add(self.path)
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.end()
            raise

    def end(self) -> None:
        """After COMMIT or ROLLBACK: the next writer's turn; every ``CHECKPOINT_EVERY`` commits, a WAL checkpoint
        that other writers need not wait for (PASSIVE: it copies what it can without blocking anyone)."""
        if self._locked:
            self._locked = False
            _held_paths().discard(self.path)
            fcntl.flock(self._writer, fcntl.LOCK_UN)
            self._commits += 1
            if self._commits % CHECKPOINT_EVERY == 0 and not self._db.in_transaction:
                # The write before is committed whatever happens here; a failed checkpoint is the next one's.
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def serialize(self) -> None:
        """Inside a transaction: nothing more to do, BEGIN IMMEDIATE already excludes every other writer."""

    def skip_locked(self) -> str:
        return ""

    def notify(self, channel: str, payload: str) -> None:
        """One process per SQLite journal reads it: nobody to wake."""

    def version(self) -> str:
        return f"SQLite {sqlite3.sqlite_version}"

    def close(self) -> None:
        self._db.close()
        if self._writer is not None:
            os.close(self._writer)
            self._writer = None


def _held_paths() -> set[Path]:
    """The journals whose writers' lock this thread holds."""
    if not hasattr(_HELD, "paths"):
        _HELD.paths = set()
    return _HELD.paths


def _open_lock(path: Path) -> int | None:
    """The writers' lock file (owner-only), or None where there is none to have: no ``fcntl`` (not POSIX) or a
    folder this process cannot write, whose journal it cannot write either (SQLite's lock alone then)."""
    if fcntl is None:
        return None
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return None


class PostgresDatabase:
    """A shared journal on PostgreSQL (psycopg 3), one connection per process, explicit transactions."""

    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise ImportError(
                "journal_url is a postgresql:// URL but psycopg is not installed: "
                "pip install 'agentd-daemon[postgres]' (or 'psycopg[binary]')"
            ) from None
        self._psycopg = psycopg
        self.Error = psycopg.Error
        self.url = url
        self.path = redact(url)  # what error messages name
        self._db = self._connect()

    def _connect(self) -> Any:
        try:
            return self._psycopg.connect(self.url, autocommit=True, row_factory=_row_factory, connect_timeout=10)
        except self._psycopg.Error as exc:  # an OSError to the caller: the server is not there, like a missing file
            raise ConnectionError(f"cannot connect to {self.path}: {str(exc).strip()}") from None

    @property
    def in_transaction(self) -> bool:
        return not self._db.closed and self._db.info.transaction_status != self._psycopg.pq.TransactionStatus.IDLE

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        if self._db.closed:  # lost (a server restart, a network cut): the write that saw it failed; connect again
            self._db = self._connect()
        cur = self._db.execute(_translate(sql), tuple(params))  # type: ignore[arg-type]
        rows = cur.fetchall() if cur.description else []
        return Cursor(rows, cur.rowcount)

    def insert_id(self, sql: str, params: Sequence[Any] = ()) -> int:
        (new_id,) = self.execute(sql + " RETURNING id", params).fetchone()
        return int(new_id)

    def begin(self) -> None:
        self.execute("BEGIN")

    def end(self) -> None:
        """After COMMIT or ROLLBACK: nothing to release (rows are locked as they are written)."""

    def serialize(self) -> None:
        """Inside a transaction: one migrating process at a time (released at COMMIT or ROLLBACK)."""
        self._db.execute("SELECT pg_advisory_xact_lock(hashtext('agentd-migrations'))")

    def skip_locked(self) -> str:
        return " FOR UPDATE SKIP LOCKED"

    def notify(self, channel: str, payload: str) -> None:
        """Wake the daemons LISTENing on ``channel`` (delivered when the transaction commits)."""
        self.execute("SELECT pg_notify(?, ?)", (channel, payload))

    def listen(self, channels: tuple[str, ...], on_notify: Any, stop: Any) -> None:
        """Until ``stop`` is set: call ``on_notify(channel, payload)`` for each NOTIFY, on a connection of its own."""
        try:
            with self._psycopg.connect(self.url, autocommit=True) as conn:
                for channel in channels:
                    conn.execute(f'LISTEN "{channel}"')
                while not stop.is_set():
                    for note in conn.notifies(timeout=1.0):
                        on_notify(note.channel, note.payload)
                        if stop.is_set():
                            break
        except self._psycopg.Error as exc:  # an OSError to the caller, like a lost connection anywhere else
            raise ConnectionError(f"listening on {redact(self.url)}: {str(exc).strip()}") from None

    def version(self) -> str:
        return "PostgreSQL " + str(self.execute("SHOW server_version").fetchone()[0])

    def close(self) -> None:
        self._db.close()


_DDL_REWRITES = [
    (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b", re.I), "BIGSERIAL PRIMARY KEY"),
    (re.compile(r"\bREAL\b", re.I), "DOUBLE PRECISION"),
]
_FUNCTION_REWRITES = [
    (re.compile(r"\bgroup_concat\((\w+)\)", re.I), r"string_agg(\1, ',')"),
    (re.compile(r"\bLIKE\b"), "ILIKE"),  # SQLite's LIKE ignores ASCII case; PostgreSQL's does not
]


def _translate(sql: str) -> str:
    """SQLite-style SQL as PostgreSQL runs it: %s placeholders (a literal % doubled), the DDL types it means."""
    if sql.lstrip()[:6].upper() in ("CREATE", "ALTER "):
        for pattern, replacement in _DDL_REWRITES:
            sql = pattern.sub(replacement, sql)
    for pattern, replacement in _FUNCTION_REWRITES:
        sql = pattern.sub(replacement, sql)
    return sql.replace("%", "%%").replace("?", "%s")


def is_postgres(url: str | None) -> bool:
    return bool(url) and str(url).split(":", 1)[0] in ("postgresql", "postgres")


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)


def connect(url: str) -> SQLiteDatabase | PostgresDatabase:
    """Open ``url``: ``sqlite:///PATH`` or ``postgresql://...``; ValueError for any other scheme."""
    if is_postgres(url):
        return PostgresDatabase(url)
    if url.startswith(SQLITE_PREFIX):
        return SQLiteDatabase(Path(url[len(SQLITE_PREFIX) :]))
    raise ValueError(
        f"journal_url {redact(url)!r} is neither sqlite:///PATH nor postgresql://...: fix journal_url "
        "(or AGENTD_JOURNAL_URL)"
    )
