"""What the later journal tables do (prompt heads, threads, folder changes), on SQLite and on PostgreSQL alike:
a feature merged after the PostgreSQL journal must not be SQLite-only."""

from __future__ import annotations

import pytest

from agentd import Goal
from agentd.errors import AgentdError
from agentd.folder_changes import FolderChanges, undo_run
from agentd.folders import attach
from agentd.testing import call, feedback, plan


@pytest.fixture
def user(tmp_path):
    root = tmp_path / "user"
    (root / "reports").mkdir(parents=True)
    (root / "reports" / "week.txt").write_text("old report")
    return root


def test_prompt_heads_threads_and_folder_changes_on_each_journal(scripted, journal_url, user):
    write = [plan(("change", "write_file")), call("write_file", path="reports/week.txt", content="new report"),
             feedback("done", final_answer="updated reports/week.txt")]
    app, _ = scripted(write * 2, settings={"journal_url": journal_url, "workspace.allowed_dirs": [str(user)]})
    assert app.journal.dialect == journal_url.split(":")[0]
    first = app.engine.submit(Goal(text="update reports/week.txt", dirs=attach([f"{user}/reports:rw"], app.config)))
    assert app.engine.run(first)["status"] == "succeeded"

    # the prompt head is stored once and put back in front of every model phase's prompt
    prompts = [p["prompt"] for p in app.journal.phases(first) if p["kind"] in ("plan", "act")]
    assert len(prompts) == 2 and all(p[0] == prompts[0][0] and p[0][0] == "system" for p in prompts)

    # a follow-up joins the thread; while it is queued the thread takes no other
    second = app.engine.submit(Goal(text="update it again", continues=first))
    assert app.journal.get_run(second)["thread_id"] == first
    with pytest.raises(AgentdError, match="of this conversation is still queued"):
        app.engine.submit(Goal(text="and once more", continues=first))
    assert app.engine.run(second)["status"] == "succeeded"

    # the folder changes are journaled and undone
    assert [c["file"] for c in FolderChanges(app.journal).changed_files(first)] == ["reports/week.txt"]
    undo_run(app.config, app.journal, second)
    undo_run(app.config, app.journal, first)
    assert (user / "reports" / "week.txt").read_text() == "old report"


# -- SQLite's writers' lock (agentd.db-lock) ---------------------------------------------------------------------
def test_sqlite_writers_queue_on_the_owner_only_lock_file_and_the_next_one_goes_as_the_first_commits(tmp_path):
    import fcntl
    import os
    import stat
    import threading
    import time

    from agentd.journal import Journal

    first, second = Journal(tmp_path / "agentd.db"), Journal(tmp_path / "agentd.db")
    try:
        lock = tmp_path / "agentd.db-lock"
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600
        probe = os.open(lock, os.O_RDWR)
        order: list[str] = []
        with first._tx():
            with pytest.raises(BlockingIOError):  # held for the whole transaction
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            thread = threading.Thread(target=lambda: _write(second, order))
            thread.start()
            time.sleep(0.2)
            assert order == []  # waiting on the file lock, not failing with "database is locked"
            order.append("first")
        thread.join(10)
        assert order == ["first", "second"]
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # and free once both committed
        os.close(probe)
    finally:
        first.close()
        second.close()


def _write(journal, order: list[str]) -> None:
    with journal._tx():
        order.append("second")


def test_sqlite_checkpoints_the_wal_after_the_writers_lock_is_released_never_inside_a_commit(tmp_path, monkeypatch):
    import fcntl
    import os

    from agentd import journal_db
    from agentd.journal import Journal

    monkeypatch.setattr(journal_db, "CHECKPOINT_EVERY", 3)
    journal = Journal(tmp_path / "agentd.db")
    try:
        db = journal._db
        assert db._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0  # not inside COMMIT, under the lock
        probe = os.open(tmp_path / "agentd.db-lock", os.O_RDWR)
        seen: list[tuple[str, bool]] = []

        class Spy:  # the connection, recording each statement and whether the writers' lock was free then
            def __init__(self, real):
                self.real = real

            def __getattr__(self, name):
                return getattr(self.real, name)

            def execute(self, sql, params=()):
                try:
                    fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fcntl.flock(probe, fcntl.LOCK_UN)
                    free = True
                except BlockingIOError:
                    free = False
                seen.append((sql, free))
                return self.real.execute(sql, params)

        db._db = Spy(db._db)
        for i in range(6):
            journal.create_run(Goal(text=f"goal {i}"), tmp_path / f"ws{i}", "local")
        checkpoints = [free for sql, free in seen if "wal_checkpoint" in sql]
        assert checkpoints == [True, True]  # after the 3rd and the 6th commit, each with the lock free
        assert all(not free for sql, free in seen if sql.startswith("INSERT"))
        db._db = db._db.real
        os.close(probe)
    finally:
        journal.close()


def test_a_thread_inside_one_sqlite_transaction_never_waits_for_itself_on_the_lock_file(tmp_path):
    import sqlite3

    from agentd.journal_db import SQLiteDatabase

    outer, inner = SQLiteDatabase(tmp_path / "agentd.db"), SQLiteDatabase(tmp_path / "agentd.db")
    try:
        inner._db.execute("PRAGMA busy_timeout = 50")
        outer.begin()
        with pytest.raises(sqlite3.OperationalError, match="locked"):  # SQLite's own lock answers, it does not hang
            inner.begin()
        assert not inner._locked
        outer._db.execute("COMMIT")
        outer.end()
        inner.begin()  # and the lock file is free again
        inner._db.execute("COMMIT")
        inner.end()
    finally:
        outer.close()
        inner.close()
