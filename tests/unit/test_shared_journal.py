"""Several daemons on one journal (journal_url): the shared queue's claim, pulling workers, schedules that fire
once across schedulers. Each "daemon" here is an App on its own home with its own connection to one journal;
tests/integration/test_scale_out.py does the same with real daemon processes on PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from agentd import Goal, RunStatus
from agentd.daemon.worker import OPEN, RunQueue
from agentd.journal import Journal
from agentd.schedule.scheduler import Scheduler
from agentd.schedule.spec import Schedule
from agentd.testing import call, feedback, make_test_app, plan

RULES = [
    ("Write the plan", plan(("write it", "write_file"))),
    ("Write the call for step 1", call("write_file", path="a.txt", content="x")),
    ("Write the decision", feedback("done", final_answer="made a.txt")),
]
T0 = 1_800_000_000.0


def apps_on(tmp_path, journal_url, count: int, **kwargs):
    return [
        make_test_app(tmp_path / f"home{i}", rules=RULES,
                      settings={"journal_url": journal_url, "plugins.load": ["workspace"]} | kwargs)
        for i in range(count)
    ]


def test_claim_next_takes_each_free_run_once_oldest_first(journal_url, tmp_path):
    journal = Journal(journal_url)
    try:
        ids = [journal.create_run(Goal(text=f"g{i}"), tmp_path, "local") for i in range(3)]
        held = journal.claim_run(ids[0], "daemon:elsewhere:1:aaaaaa", ttl_s=60)
        assert held is not None
        first = journal.claim_next("daemon:elsewhere:2:bbbbbb", 60, OPEN)
        second = journal.claim_next("daemon:elsewhere:3:cccccc", 60, OPEN)
        assert (first.run_id, second.run_id) == (ids[1], ids[2])
        assert journal.claim_next("daemon:elsewhere:3:cccccc", 60, OPEN) is None  # all held
        with journal._tx() as db:  # the first holder went silent: its lease expired
            db.execute("UPDATE runs SET lease_expires_at = ? WHERE id = ?", (time.time() - 1, ids[0]))
        taken = journal.claim_next("daemon:elsewhere:3:cccccc", 60, OPEN)
        assert (taken.run_id, taken.token) == (ids[0], 2)
        assert [e["type"] for e in journal.events(ids[0])] == ["lease_takeover"]
    finally:
        journal.close()


def test_a_claim_in_flight_is_skipped_not_waited_for(pg_url, tmp_path):
    """PostgreSQL: while one daemon's claim transaction holds the oldest run, another daemon's claim takes the
    next run at once (FOR UPDATE SKIP LOCKED) instead of queueing behind the lock."""
    a, b = Journal(pg_url), Journal(pg_url)
    try:
        ids = [a.create_run(Goal(text=f"g{i}"), tmp_path, "local") for i in range(2)]
        got: dict = {}
        with a._tx():  # a's claim has locked the oldest run and has not committed yet
            assert a.claim_next("daemon:elsewhere:1:aaaaaa", 60, OPEN).run_id == ids[0]
            other = threading.Thread(target=lambda: got.update(lease=b.claim_next("daemon:elsewhere:2:bb", 60, OPEN)))
            other.start()
            other.join(5)
            assert not other.is_alive(), "the second claim waited for the first one's lock"
        assert got["lease"].run_id == ids[1]
    finally:
        a.close()
        b.close()


def test_pulling_daemons_share_one_queue_and_run_everything_once(journal_url, tmp_path):
    apps = apps_on(tmp_path, journal_url, 2)
    for _, model in apps:
        model.delay_s = 0.02  # runs overlap, so both daemons pull
    try:
        engine = apps[0][0].engine
        ids = [engine.submit(Goal(text=f"make a.txt ({i})")) for i in range(10)]
        queues = [RunQueue(app.engine, workers=2, pull=True, owner=f"daemon:test:{i}:{i:06d}")  # one owner each
                  for i, (app, _) in enumerate(apps)]

        async def work() -> None:
            for q in queues:
                q.start()
            while any(apps[0][0].journal.get_run(r)["status"] != "succeeded" for r in ids):
                await asyncio.sleep(0.05)
            for q in queues:
                await q.drain(5)

        asyncio.run(asyncio.wait_for(work(), 60))
        journal = apps[0][0].journal
        for run_id in ids:
            types = [e["type"] for e in journal.events(run_id)]
            assert types.count("run_started") == 1 and types.count("run_finished") == 1, types
            assert len(journal.tool_calls(run_id)) == 1
        assert all(q.finished_count > 0 for q in queues)  # both daemons took runs from the one queue
    finally:
        for app, _ in apps:
            app.close()


def test_a_schedule_fires_once_across_daemons(journal_url, tmp_path):
    """Three schedulers tick the same schedule at the same moments: one run per fire time, whichever wins."""
    apps = apps_on(tmp_path, journal_url, 3)
    now = [T0]
    submitted: list[str] = []
    schedulers = [
        Scheduler(app.config, app.journal, lambda goal, fid, app=app: submitted.append(fid) or app.engine.submit(goal),
                  tools=app.tools, clock=lambda: now[0])
        for app, _ in apps
    ]
    errors: list[BaseException] = []

    def tick(scheduler: Scheduler) -> None:
        try:
            scheduler.tick("job")
        except BaseException as exc:  # a tick that lost the race must see "handled", not an error
            errors.append(exc)

    try:
        schedulers[0].store.add(Schedule(name="job", goal="write a digest", every="10s", grace_s=1.0), now=T0)
        for fire in (1, 2, 3):
            now[0] = T0 + 10 * fire + 0.2
            threads = [threading.Thread(target=tick, args=(s,)) for s in schedulers]
            for t in threads:
                t.start()
            for t in threads:
                t.join(20)
            for run in apps[0][0].journal.list_runs(status="queued"):  # the run ends before the next fire
                apps[0][0].journal.set_status(run["id"], RunStatus.succeeded)
        assert errors == []
        fires = schedulers[1].store.fires("job")
        assert [(f.scheduled_at - T0, f.status.value) for f in fires] == [(10, "enqueued"), (20, "enqueued"),
                                                                           (30, "enqueued")]
        runs = [r for r in apps[2][0].journal.list_runs() if r["schedule"] == "job"]
        assert len(runs) == 3 and sorted(submitted) == sorted(f.id for f in fires)
        assert {f.run_id for f in fires} == {r["id"] for r in runs}
    finally:
        for app, _ in apps:
            app.close()


def test_daemons_heartbeats_say_who_is_alive(journal_url):
    from agentd.daemon.peers import Peers, describe

    journal = Journal(journal_url)
    try:
        peers = Peers(journal)
        kw = {"home": "/h", "version": "0.1.0", "workers": 2, "running": 0, "interval_s": 1.0, "started_at": T0}
        for owner in ("daemon:a:1:aa", "daemon:b:2:bb", "daemon:c:3:cc"):
            peers.beat(owner, **kw)
        peers.beat("daemon:a:1:aa", **kw | {"running": 2})  # the same row, updated
        peers.stopped("daemon:b:2:bb")
        now = time.time()
        assert {r["owner"]: (r["alive"], r["running"]) for r in peers.all(now)} == {
            "daemon:a:1:aa": (True, 2), "daemon:b:2:bb": (False, 0), "daemon:c:3:cc": (True, 0)}
        later = {r["owner"]: r["alive"] for r in peers.all(now + 3.5)}  # three beats missed: dead
        assert later == {"daemon:a:1:aa": False, "daemon:b:2:bb": False, "daemon:c:3:cc": False}
        lines = [describe(r) for r in peers.all(now + 3.5)]
        assert [line.split()[0] for line in lines] == ["dead", "stopped", "dead"] and "2/2 running" in lines[0]
        assert Peers(journal).all(now)[0]["alive"]  # a second reader applies no migration twice
    finally:
        journal.close()


def test_a_cancel_asked_of_one_daemon_stops_the_run_another_drives(journal_url, tmp_path):
    (a, _), (b, model) = apps_on(tmp_path, journal_url, 2)
    model.delay_s = 0.3  # each model call: time for the cancel to arrive mid-run
    try:
        run_id = a.engine.submit(Goal(text="make a.txt"))
        asker = RunQueue(a.engine, workers=1, pull=True, owner="daemon:test:1:aaaaaa")  # two daemons: two owners
        driver = RunQueue(b.engine, workers=1, pull=True, owner="daemon:test:2:bbbbbb")

        async def work() -> str:
            driver.start()
            while run_id not in driver.running:
                await asyncio.sleep(0.02)
            answer = await asyncio.to_thread(asker.cancel, run_id)
            while a.journal.get_run(run_id)["status"] not in ("cancelled", "succeeded"):
                await asyncio.sleep(0.05)
            await driver.drain(5)
            return answer

        assert asyncio.run(asyncio.wait_for(work(), 30)) == "cancelling"
        run = a.journal.get_run(run_id)
        assert (run["status"], run["stop_reason"], run["lease_owner"]) == ("cancelled", "cancelled", None)
        assert [e["type"] for e in a.journal.events(run_id)].count("run_finished") == 1
    finally:
        a.close()
        b.close()


def test_workspaces_dir_puts_every_daemons_workspaces_in_one_shared_folder(journal_url, tmp_path):
    shared = tmp_path / "shared-mount" / "workspaces"
    apps = apps_on(tmp_path, journal_url, 2, workspaces_dir=str(shared))
    try:
        ids = [app.engine.submit(Goal(text="make a.txt")) for app, _ in apps]
        assert [apps[1][0].journal.get_run(r)["workspace"] for r in ids] == [str(shared / r) for r in ids]
        assert all((shared / r).is_dir() for r in ids)
    finally:
        for app, _ in apps:
            app.close()


def test_a_run_whose_workspace_is_not_here_is_refused_with_the_reason_recorded(journal_url, tmp_path):
    """Another machine started the run and died; this daemon cannot see its workspace: refused, once, and left
    for a daemon that can. A run never started gets its workspace made where it is driven."""
    import shutil

    (a, _), (b, _) = apps_on(tmp_path, journal_url, 2)
    try:
        started, fresh = (a.engine.submit(Goal(text="make a.txt")) for _ in range(2))
        lease = a.journal.claim_run(started, "daemon:elsewhere:1:aaaaaa", ttl_s=60)
        a.journal.set_status(started, RunStatus.running, lease=lease)
        a.journal.release_lease(lease)  # as if its daemon's lease had expired
        for run_id in (started, fresh):
            shutil.rmtree(a.journal.get_run(run_id)["workspace"])  # the other machine's disk
        q = RunQueue(b.engine, workers=1, pull=True, owner="daemon:test:2:bbbbbb")

        async def work() -> None:
            q.start()
            while a.journal.get_run(fresh)["status"] != "succeeded":
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # more pulls pass: the refused run is not tried again
            await q.drain(5)

        asyncio.run(asyncio.wait_for(work(), 30))
        refused = [e for e in a.journal.events(started) if e["type"] == "takeover_refused"]
        assert len(refused) == 1 and "is not reachable" in refused[0]["data"]["reason"]
        run = a.journal.get_run(started)
        assert (run["status"], run["lease_owner"]) == ("running", None)  # waits for a daemon that can see it
        assert a.journal.phases(started) == [] and started in q.unreachable
    finally:
        a.close()
        b.close()


def test_postgresql_notifies_other_daemons_of_events_and_cancel_requests(pg_url, tmp_path):
    """LISTEN/NOTIFY: what wakes followers and delivers cancels on other daemons at once (polling stays behind)."""
    from agentd.daemon.peers import CANCEL_CHANNEL, Peers, request_cancel
    from agentd.journal import EVENTS_CHANNEL

    writer, listener = Journal(pg_url), Journal(pg_url)
    heard: list[tuple[str, str]] = []
    got, stop = threading.Event(), threading.Event()
    thread = threading.Thread(target=listener.listen, args=((EVENTS_CHANNEL, CANCEL_CHANNEL),
                                                             lambda c, p: heard.append((c, p)) or got.set(), stop))
    try:
        Peers(writer)
        thread.start()
        run_id = writer.create_run(Goal(text="x"), tmp_path, "local")
        deadline = time.monotonic() + 20
        while len(heard) < 2 and time.monotonic() < deadline:  # LISTEN may start after the first NOTIFY: repeat
            writer.add_event(run_id, "note", {})
            request_cancel(writer, run_id, "daemon:test:1:aaaaaa")
            got.wait(0.5)
            heard[:] = sorted(set(heard))
        assert heard == [(CANCEL_CHANNEL, run_id), (EVENTS_CHANNEL, run_id)]
    finally:
        stop.set()
        thread.join(5)
        writer.close()
        listener.close()


def test_journal_check_and_recover_say_they_are_for_sqlite(home, monkeypatch):
    from click.testing import CliRunner

    from agentd.cli import cli

    monkeypatch.setenv("AGENTD_JOURNAL_URL", "postgresql://agentd@/agentd?host=/nonexistent")
    for command in ("check", "recover"):
        result = CliRunner().invoke(cli, ["journal", command])
        assert result.exit_code == 1 and "works on a SQLite journal" in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1


def test_a_lost_database_connection_fails_one_write_then_reconnects(pg_url, tmp_path):
    """A PostgreSQL restart or network cut: the write that meets it is a JournalError; the next one connects
    again (the daemon's run is given back resumable in between, as with a full disk)."""
    import psycopg

    from agentd.journal import JournalError

    journal = Journal(pg_url)
    try:
        run_id = journal.create_run(Goal(text="x"), tmp_path, "local")
        pid = journal._db._db.info.backend_pid
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(JournalError, match="journal write failed"):
            journal.add_event(run_id, "lost", {})
        journal.add_event(run_id, "after", {})
        assert [e["type"] for e in journal.events(run_id)] == ["after"]
        assert journal._db._db.info.backend_pid != pid
    finally:
        journal.close()


def test_a_submission_retried_on_another_daemon_gets_the_same_run(journal_url):
    """Idempotency-Key on a shared journal: the retry, racing the first request's uncommitted key on another
    daemon, waits for it and answers with its run id instead of failing on the duplicate key."""
    from agentd.daemon.idempotency import IdempotencyKeys

    a, b = Journal(journal_url), Journal(journal_url)
    got: dict = {}

    def retry() -> None:
        with IdempotencyKeys(b).claim("key-1", "same body") as (run_id, _):
            got["run_id"] = run_id

    try:
        IdempotencyKeys(b)  # its migration, before a holds the database
        with a._tx(), IdempotencyKeys(a).claim("key-1", "same body") as (first, existing):
            assert existing is None
            other = threading.Thread(target=retry)
            other.start()
            time.sleep(0.3)  # the retry is now waiting for this transaction
        other.join(20)
        assert got == {"run_id": first}
    finally:
        a.close()
        b.close()
