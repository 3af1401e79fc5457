"""The journal: SQLite (WAL) record of every goal, run, phase, tool call and event.

It is the source of truth for what happened; a run's loop state is rebuilt from its phases on resume.
Its migrations are in journal_schema.py, the lease's parts in journal_leases.py.

One owner per run: whoever drives a run (the in-process CLI, a daemon worker) holds its lease: an owner id, a
fencing token that grows with every claim, a heartbeat and an expiry, in the ``runs`` row. Every write of a
run checks the fence in its own transaction: with a Lease, owner and token must still match (and the write
renews the expiry); without one, nobody may hold a live lease. A process whose lease was taken over gets
LeaseLost and stops driving. The lease SQL is plain enough for SQLite and PostgreSQL alike (a conditional
UPDATE locks the row in both), so a shared journal with several daemons builds on the same operations.

The database is SQLite (the default, ``$AGENTD_HOME/agentd.db``) or PostgreSQL (``journal_url``, several daemons
sharing one queue); journal_db.py runs the same SQL on both.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import AgentdError
from .journal_db import connect
from .journal_leases import Lease, LeaseLost, RunHeld, owner_is_dead, process_owner  # noqa: F401  (re-exported)
from .journal_schema import MIGRATIONS  # noqa: F401  (re-exported)
from .records import Goal, RunStatus


class JournalError(AgentdError):
    """The journal could not be read or written (disk full, permissions, corruption)."""


class AmbiguousRunId(AgentdError):
    """A run id prefix that more than one run starts with."""

    exit_code = 2


class ThreadBusy(AgentdError):
    """A run of this conversation has not ended yet: two runs never work in the same workspace at once."""

    exit_code = 2


EVENTS_CHANNEL = "agentd_events"  # NOTIFY channel: a run's events grew (payload: the run id)


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


class Journal:
    """Thread-safe access to the journal database; one instance per process."""

    def __init__(self, path: Path | str) -> None:
        """``path``: the SQLite file, or a ``journal_url`` (``sqlite:///PATH``, ``postgresql://...``)."""
        url = str(path) if "://" in str(path) else f"sqlite:///{Path(path)}"
        self._lock = threading.RLock()
        self._depth = 0  # open _tx blocks of the thread holding the lock: an inner one joins the outer one
        # Leases (run, owner, token) the open transaction has fenced: its inner writes need no second check, as
        # the first one's row lock keeps every other writer out until the commit. Emptied by a write that
        # changes a lease (a claim, a release) and by each new transaction.
        self._fenced: set[tuple[str, str, int]] = set()
        self._errors: tuple[type[BaseException], ...] = (sqlite3.Error, OSError)
        try:
            if url.startswith("sqlite:///"):
                file = Path(url[len("sqlite:///") :])
                file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                with contextlib.suppress(FileExistsError):  # owner-only; SQLite gives the WAL the file's mode
                    os.close(os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            self._db = connect(url)
            self.path, self.url, self.dialect = self._db.path, self._db.url, self._db.dialect
            self._errors = (sqlite3.Error, self._db.Error)
            self._heads: dict[tuple[tuple[str, str], ...], str] = {}  # prompt heads stored: messages -> digest
            self._head_messages: dict[str, list[list[str]]] = {}  # and read back: digest -> messages
            self._migrate()
        except (sqlite3.Error, OSError, ImportError, *self._errors) as exc:  # OSError: a server not reachable
            where = getattr(self, "path", url)
            raise JournalError(f"cannot open the journal at {where}: {exc}; {_advice(exc)}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- plumbing ---------------------------------------------------------------------------------
    @contextmanager
    def _tx(self, run_id: str | None = None, lease: Lease | None = None) -> Iterator[Any]:
        """One write transaction: committed whole or rolled back whole, even when Ctrl-C lands inside it.

        A write of run ``run_id`` (or of ``lease.run_id``) checks the fence first, inside the transaction.
        Inside another ``_tx`` of the same thread it joins that transaction (the scheduler records a fire and
        creates its run as one)."""
        with self._lock:
            if self._depth:
                if lease is not None or run_id is not None:
                    self._fence(run_id, lease)
                self._depth += 1
                try:
                    yield self._db
                finally:
                    self._depth -= 1
                return
            try:
                if self._db.in_transaction:  # a write interrupted before its rollback ran: drop it now
                    self._db.execute("ROLLBACK")
                self._db.begin()
                self._fenced.clear()
                try:
                    if lease is not None or run_id is not None:
                        self._fence(run_id, lease)
                    self._depth = 1
                    try:
                        yield self._db
                    finally:
                        self._depth = 0
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
                finally:
                    self._db.end()
            except (*self._errors, ConnectionError) as exc:  # ConnectionError: the server is still gone
                raise JournalError(f"journal write failed ({self.path}): {exc}; {_advice(exc)}") from None

    @contextmanager
    def batch(self, run_id: str, lease: Lease | None = None) -> Iterator[None]:
        """Several writes of run ``run_id`` in one transaction (one fence check, one commit): a phase and its
        event are recorded together or not at all. A batch inside a batch joins it."""
        with self._tx(run_id, lease):  # the writes inside are inner _tx blocks of this thread: they join it
            yield

    @contextmanager
    def together(self) -> Iterator[None]:
        """Writes of several runs in one transaction: all committed or none (the daemon journals the goals that
        arrive together so, one commit for all). Fenced writes inside still check their own run's fence."""
        with self._tx():
            yield

    def _fence(self, run_id: str | None, lease: Lease | None) -> None:
        """Owner and token still match (the write renews the lease), or, without a lease, no live one exists."""
        now = time.time()
        if lease is not None:
            if run_id is not None and run_id != lease.run_id:
                raise ValueError(f"a lease on run {lease.run_id} cannot write run {run_id}")
            held = (lease.run_id, lease.owner, lease.token)
            if held in self._fenced:
                return
            cur = self._db.execute(
                "UPDATE runs SET lease_heartbeat_at = ?, lease_expires_at = ?"
                " WHERE id = ? AND lease_owner = ? AND lease_token = ?",
                (now, now + lease.ttl_s, lease.run_id, lease.owner, lease.token),
            )
            if cur.rowcount != 1:
                raise LeaseLost(f"{lease.owner} lost the lease on run {lease.run_id}: {self._holder(lease.run_id)}")
            self._fenced.add(held)
            return
        cur = self._db.execute(  # a no-op UPDATE: it takes the row's write lock where the database has them
            "UPDATE runs SET lease_token = lease_token WHERE id = ? AND (lease_owner IS NULL OR lease_expires_at < ?)",
            (run_id, now),
        )
        if cur.rowcount != 1 and self._db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone():
            raise RunHeld(f"run {run_id} is being driven by another process ({self._holder(str(run_id))})")

    def _holder(self, run_id: str) -> str:
        row = self._db.execute(
            "SELECT lease_owner, lease_token, lease_expires_at FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        if row is None or row["lease_owner"] is None:
            return "nobody holds it now"
        left = row["lease_expires_at"] - time.time()
        return f"held by {row['lease_owner']} (token {row['lease_token']}, expires in {left:.1f}s)"

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except (*self._errors, ConnectionError) as exc:  # ConnectionError: the server is still gone
                raise JournalError(f"journal read failed ({self.path}): {exc}; {_advice(exc)}") from None

    def _migrate(self) -> None:
        with self._tx() as db:
            db.serialize()  # daemons starting together on one PostgreSQL: one creates the table
            db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
        self.apply_migrations(MIGRATIONS)

    def apply_migrations(self, migrations: list[Callable[[Any], None]]) -> None:
        """Apply named migrations not yet recorded; other modules (the scheduler) bring their own lists."""
        done = {row[0] for row in self._query("SELECT name FROM migrations")}
        for migration in migrations:
            if migration.__name__ not in done:
                with self._tx() as db:
                    db.serialize()  # another process may have applied it since `done` was read
                    if db.execute("SELECT 1 FROM migrations WHERE name = ?", (migration.__name__,)).fetchone():
                        continue
                    migration(db)
                    db.execute("INSERT INTO migrations VALUES (?, ?)", (migration.__name__, time.time()))

    def listen(self, channels: tuple[str, ...], on_notify: Callable[[str, str], None], stop: threading.Event) -> None:
        """PostgreSQL: call ``on_notify(channel, payload)`` for each NOTIFY until ``stop`` is set (on a connection
        of its own; raises when it breaks). SQLite: returns at once, there is nobody else to hear."""
        listen = getattr(self._db, "listen", None)
        if listen is not None:
            listen(channels, on_notify, stop)

    def database(self) -> str:
        """Which database this is, for `agentd doctor`: its version and where (a URL without its password)."""
        with self._lock:
            return f"{self._db.version()} at {self.path}"

    def migrations(self) -> list[str]:
        return [row[0] for row in self._query("SELECT name FROM migrations ORDER BY name")]

    # -- leases: claim, renew, release (the fence is in _tx) ----------------------------------------
    def claim_run(self, run_id: str, owner: str, ttl_s: float, take_from_dead: bool = True) -> Lease | None:
        """Take the run's lease when nobody holds it, it expired, or (``take_from_dead``) its holder is a dead
        process on this host; the token grows, fencing every earlier holder out. None: a live owner holds it."""
        with self._lock:
            rows = self._query("SELECT lease_owner FROM runs WHERE id = ?", (run_id,))
        dead = rows[0]["lease_owner"] if rows and take_from_dead and owner_is_dead(rows[0]["lease_owner"]) else None
        with self._tx() as db:
            return self._take(db, run_id, owner, ttl_s, rows[0]["lease_owner"] if rows else None, dead)

    def claim_next(
        self, owner: str, ttl_s: float, statuses: tuple[str, ...], skip: tuple[str, ...] = ()
    ) -> Lease | None:
        """Claim the oldest run in ``statuses`` (and not in ``skip``) whose lease is free or expired, whoever
        queued it: the shared queue. Daemons pulling at once each get a different run (``FOR UPDATE SKIP
        LOCKED`` on PostgreSQL; on SQLite the one writer at a time). None: nothing to take."""
        marks = ", ".join("?" * len(statuses))
        skipped = f" AND id NOT IN ({', '.join('?' * len(skip))})" if skip else ""
        with self._tx() as db:
            row = db.execute(
                f"SELECT id, lease_owner FROM runs WHERE status IN ({marks}){skipped}"
                " AND (lease_owner IS NULL OR lease_expires_at < ?)"
                f" ORDER BY created_at LIMIT 1{db.skip_locked()}",
                (*statuses, *skip, time.time()),
            ).fetchone()
            return self._take(db, row["id"], owner, ttl_s, row["lease_owner"]) if row else None

    def _take(
        self, db: Any, run_id: str, owner: str, ttl_s: float, previous: str | None, dead: str | None = None
    ) -> Lease | None:
        """The claim itself (a conditional UPDATE: the row's lock decides between racing claimers)."""
        now = time.time()
        self._fenced.clear()
        cur = db.execute(
            "UPDATE runs SET lease_owner = ?, lease_token = lease_token + 1, lease_heartbeat_at = ?,"
            " lease_expires_at = ? WHERE id = ?"
            " AND (lease_owner IS NULL OR lease_expires_at < ? OR lease_owner = ? OR lease_owner = ?)",
            (owner, now, now + ttl_s, run_id, now, owner, dead),
        )
        if cur.rowcount != 1:
            return None
        (token,) = db.execute("SELECT lease_token FROM runs WHERE id = ?", (run_id,)).fetchone()
        if previous not in (None, owner):  # recorded by the new owner, not the old
            data = {"from": previous, "to": owner, "token": token}
            db.execute(
                "INSERT INTO events (run_id, type, data_json, ts) VALUES (?, ?, ?, ?)",
                (run_id, "lease_takeover", json.dumps(data), now),
            )
        return Lease(run_id, owner, int(token), ttl_s)

    def renew_lease(self, lease: Lease) -> None:
        """The heartbeat; LeaseLost when another process took the run over."""
        with self._tx(lease=lease):
            pass

    def release_lease(self, lease: Lease, status: RunStatus | None = None) -> None:
        """Give the run back (optionally with a new status); nothing happens if it was already lost."""
        with self._tx() as db:
            self._fenced.clear()
            db.execute(
                "UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL, status = COALESCE(?, status)"
                " WHERE id = ? AND lease_owner = ? AND lease_token = ?",
                (status.value if status else None, lease.run_id, lease.owner, lease.token),
            )

    def claimable_runs(self, statuses: tuple[str, ...], held_only: bool = False) -> list[dict[str, Any]]:
        """Runs in ``statuses`` whose lease is free (unless ``held_only``), expired, or held by a dead process
        here, oldest first."""
        marks = ", ".join("?" * len(statuses))
        rows = self._query(
            "SELECT id, status, lease_owner, lease_expires_at FROM runs"
            f" WHERE status IN ({marks}) AND (lease_owner IS NOT NULL OR ? = 0) ORDER BY created_at",
            (*statuses, int(held_only)),
        )
        now = time.time()
        return [
            dict(r)
            for r in rows
            if r["lease_owner"] is None or r["lease_expires_at"] < now or owner_is_dead(r["lease_owner"])
        ]

    # -- runs -------------------------------------------------------------------------------------
    def create_run(
        self, goal: Goal, workspace: Path, model: str, run_id: str | None = None, lease: Lease | None = None,
        thread_id: str | None = None,
    ) -> str:
        """A queued run; with ``lease`` (its run_id, owner, ttl; token 1) it is born held by that owner. With
        ``thread_id`` it continues that conversation, refused (ThreadBusy) while a run of it has not ended."""
        # A generated id (a second's timestamp and 24 random bits) can repeat when many runs start in one second
        # (about once in 14 minutes at 200 submissions a second): then the insert does nothing and a new id is drawn.
        generated = lease is None and run_id is None
        run_id = lease.run_id if lease else run_id or new_run_id()
        while not self._insert_run(goal, workspace, model, run_id, lease, thread_id, generated):
            run_id = new_run_id()
        return run_id

    def _insert_run(
        self, goal: Goal, workspace: Path, model: str, run_id: str, lease: Lease | None, thread_id: str | None,
        generated: bool,
    ) -> bool:
        """Insert the run; False when ``generated`` and its id is taken (nothing was written)."""
        now = time.time()
        with self._tx() as db:
            if thread_id is not None:  # checked in the insert's transaction: two submitters cannot both pass
                db.serialize()  # PostgreSQL: READ COMMITTED alone would let two daemons both see the thread free
                busy = db.execute(
                    "SELECT id, status FROM runs WHERE thread_id = ? AND status IN (?, ?, ?) LIMIT 1",
                    (thread_id, RunStatus.queued.value, RunStatus.running.value, RunStatus.awaiting_approval.value),
                ).fetchone()
                if busy is not None:
                    raise ThreadBusy(
                        f"run {busy['id']} of this conversation is still {busy['status']}: wait for it "
                        f"(`agentd runs follow {busy['id']}`) or cancel it (`agentd runs cancel {busy['id']}`), "
                        "then continue"
                    )
            cur = db.execute(
                "INSERT INTO runs (id, goal, goal_json, status, workspace, model, schedule, created_at,"
                " lease_owner, lease_token, lease_heartbeat_at, lease_expires_at, thread_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)" + (" ON CONFLICT (id) DO NOTHING" if generated else ""),
                (
                    run_id,
                    goal.text,
                    json.dumps(goal.to_dict()),
                    RunStatus.queued.value,
                    str(workspace),
                    model,
                    goal.schedule,
                    now,
                    lease.owner if lease else None,
                    lease.token if lease else 0,
                    now if lease else None,
                    now + lease.ttl_s if lease else None,
                    thread_id or run_id,
                ),
            )
            return cur.rowcount == 1

    def set_status(self, run_id: str, status: RunStatus, lease: Lease | None = None, **fields: Any) -> None:
        sets = ["status = ?"]
        values: list[Any] = [status.value]
        if status == RunStatus.running:
            sets.append("started_at = COALESCE(started_at, ?)")
            values.append(time.time())
        if status.finished:
            sets.append("finished_at = ?")
            values.append(time.time())
        for key in ("stop_reason", "final_answer"):
            if key in fields:
                sets.append(f"{key} = ?")
                value = fields[key]
                values.append(getattr(value, "value", value))
        if "usage" in fields:
            sets.append("usage_json = ?")
            values.append(json.dumps(fields["usage"]))
        with self._tx(run_id, lease) as db:
            db.execute(f"UPDATE runs SET {', '.join(sets)} WHERE id = ?", (*values, run_id))

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        """The run with this id, or the one run whose id starts with it (literally: ``%`` and ``_`` are text)."""
        rows = self._query("SELECT * FROM runs WHERE id = ?", (run_id,)) if run_id else []
        if run_id and not rows:
            rows = self._query(
                "SELECT * FROM runs WHERE substr(id, 1, ?) = ? ORDER BY id LIMIT 11", (len(run_id), run_id)
            )
        if len(rows) > 1:
            more = ", ..." if len(rows) > 10 else ""
            raise AmbiguousRunId(
                f"run id prefix {run_id!r} is ambiguous: runs {', '.join(r['id'] for r in rows[:10])}{more} "
                "all start with it; give more of the id"
            )
        return _run_row(rows[0]) if rows else None

    def list_runs(self, limit: int = 50, status: str | None = None, since: float | None = None) -> list[dict]:
        sql, params = "SELECT * FROM runs WHERE 1=1", list[object]()
        if status:
            sql += " AND status = ?"
            params.append(status)
        if since:
            sql += " AND created_at >= ?"
            params.append(since)
        sql += " ORDER BY created_at DESC LIMIT ?"
        params.append(limit)
        return [_run_row(r) for r in self._query(sql, tuple(params))]

    # -- phases, tool calls, events ---------------------------------------------------------------
    def add_phase(
        self, run_id: str, kind: str, data: dict[str, Any], started_at: float, lease: Lease | None = None
    ) -> int:
        with self._tx(run_id, lease) as db:  # numbered by the INSERT itself: one statement, not two
            (seq,) = db.execute(
                "INSERT INTO phases SELECT ?, COALESCE(MAX(seq), 0) + 1, ?, ?, ?, ? FROM phases WHERE run_id = ?"
                " RETURNING seq",
                (run_id, kind, json.dumps(data, default=str), started_at, time.time(), run_id),
            ).fetchone()
        return int(seq)

    def phases(self, run_id: str) -> list[dict[str, Any]]:
        """The run's phases in order; a model phase's ``prompt`` is whole again (its stored head put back)."""
        rows = self._query("SELECT * FROM phases WHERE run_id = ? ORDER BY seq", (run_id,))
        found = []
        for r in rows:
            data = json.loads(r["data_json"])
            if "prompt_head" in data:
                data["prompt"] = self._prompt_head(data.pop("prompt_head")) + data["prompt"]
            times = {"started_at": r["started_at"], "finished_at": r["finished_at"]}
            found.append({"seq": r["seq"], "kind": r["kind"]} | times | data)
        return found

    def store_prompt_head(self, messages: tuple[tuple[str, str], ...]) -> str:
        """Store a prompt's constant head once (per journal, by content); returns the digest phases name it by."""
        digest = self._heads.get(messages)
        if digest is None:
            text = json.dumps([list(m) for m in messages], ensure_ascii=False)
            digest = hashlib.sha256(text.encode()).hexdigest()[:32]
            with self._tx() as db:
                db.execute("INSERT INTO prompt_heads VALUES (?, ?) ON CONFLICT (digest) DO NOTHING", (digest, text))
            if not self._depth:  # an enclosing transaction (a batch) may yet roll the row back
                self._heads[messages] = digest
        return digest

    def _prompt_head(self, digest: str) -> list[list[str]]:
        if digest not in self._head_messages:
            rows = self._query("SELECT messages_json FROM prompt_heads WHERE digest = ?", (digest,))
            if not rows:
                raise JournalError(f"the journal lacks prompt head {digest} ({self.path}); restore it from a backup")
            self._head_messages[digest] = json.loads(rows[0][0])
        return list(self._head_messages[digest])

    def tool_call_started(
        self, run_id: str, step: int, tool: str, args: dict[str, Any], lease: Lease | None = None
    ) -> int:
        with self._tx(run_id, lease) as db:
            return db.insert_id(
                "INSERT INTO tool_calls (run_id, step, tool, args_json, status, started_at) VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, step, tool, json.dumps(args, default=str), "started", time.time()),
            )

    def tool_call_finished(
        self, call_id: int, result: dict[str, Any], status: str = "finished", lease: Lease | None = None
    ) -> None:
        rows = [] if lease else self._query("SELECT run_id FROM tool_calls WHERE id = ?", (call_id,))
        with self._tx(rows[0]["run_id"] if rows else None, lease) as db:
            db.execute(
                "UPDATE tool_calls SET status = ?, result_json = ?, finished_at = ? WHERE id = ?",
                (status, json.dumps(result, default=str), time.time(), call_id),
            )

    def tool_calls(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._query("SELECT * FROM tool_calls WHERE run_id = ? ORDER BY id", (run_id,))
        return [
            dict(r) | {"args": json.loads(r["args_json"]), "result": json.loads(r["result_json"] or "null")}
            for r in rows
        ]

    def add_event(
        self, run_id: str, type_: str, data: dict[str, Any], lease: Lease | None = None, release: bool = False
    ) -> int:
        """Journal an event; ``release`` gives the lease back in the same transaction (a run's last event)."""
        with self._tx(run_id, lease) as db:
            seq = db.insert_id(
                "INSERT INTO events (run_id, type, data_json, ts) VALUES (?, ?, ?, ?)",
                (run_id, type_, json.dumps(data, default=str), time.time()),
            )
            if release and lease is not None:
                self._fenced.clear()
                db.execute("UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL WHERE id = ?", (run_id,))
            db.notify(EVENTS_CHANNEL, run_id)  # followers on other daemons (PostgreSQL)
            return seq

    def events(self, run_id: str, after: int = 0) -> list[dict[str, Any]]:
        rows = self._query("SELECT * FROM events WHERE run_id = ? AND id > ? ORDER BY id", (run_id, after))
        return [
            {"seq": r["id"], "run_id": r["run_id"], "type": r["type"], "ts": r["ts"], "data": json.loads(r["data_json"])}
            for r in rows
        ]


def _run_row(row: Any) -> dict[str, Any]:
    data = dict(row)
    data["goal_spec"] = json.loads(data.pop("goal_json"))
    data["usage"] = json.loads(data.pop("usage_json") or "{}")
    return data


def _advice(exc: BaseException) -> str:
    text = str(exc).lower()
    if "full" in text or "no space" in text:
        return "the disk is full: free some space and retry; nothing already journaled was lost"
    if "readonly" in text or "permission" in text:
        return "check that AGENTD_HOME is writable by this user"
    if "locked" in text:
        return "another process holds the journal; retry shortly"
    if "connect" in text or "server closed" in text or "password" in text:
        return "check journal_url (AGENTD_JOURNAL_URL) and that the PostgreSQL server is up and reachable"
    if "psycopg" in text:
        return "install the PostgreSQL driver: pip install 'agentd-daemon[postgres]'"
    if any(sign in text for sign in ("malformed", "not a database", "corrupt", "could not decode")):
        return "the journal is damaged: `agentd journal recover` keeps it aside and rebuilds one from what is readable"
    return "run `agentd doctor` for a diagnosis"
