"""One owner per run: the journal's lease (claim, renew, release, fence) and the engine and queue built on it.

Every test runs on both journals: SQLite and a real PostgreSQL (``journal_url``, tests/conftest.py)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time

import pytest

from agentd import Goal
from agentd.daemon.worker import RunQueue
from agentd.journal import Journal, JournalError, LeaseLost, RunHeld, owner_is_dead
from agentd.records import RunStatus
from agentd.testing import call, feedback, make_test_app, plan

RULES = [
    ("Write the plan", plan(("write it", "write_file"))),
    ("Write the call for step 1", call("write_file", path="a.txt", content="x")),
    ("Write the decision", feedback("done", final_answer="made a.txt")),
]
A, B = "cli:elsewhere:1:aaaaaa", "daemon:elsewhere:2:bbbbbb"  # owners on another host: never "dead" here


@pytest.fixture
def journal(journal_url):
    j = Journal(journal_url)
    yield j
    j.close()


def expire(journal: Journal, run_id: str) -> None:
    """What a holder's silence (crash, pause) looks like once its ttl has passed."""
    with journal._tx() as db:
        db.execute("UPDATE runs SET lease_expires_at = ? WHERE id = ?", (time.time() - 1, run_id))



def test_a_generated_run_id_that_is_taken_is_drawn_again(journal, tmp_path, monkeypatch):
    """Ids are a second's timestamp and 24 random bits: 120 runs in one second repeated one in CI."""
    first = journal.create_run(Goal(text="a"), tmp_path, "local")
    drawn = iter([first, "20261202-000000-abcdef"])
    monkeypatch.setattr("agentd.journal.new_run_id", lambda: next(drawn))
    assert journal.create_run(Goal(text="b"), tmp_path, "local") == "20261202-000000-abcdef"
    assert journal.get_run(first)["goal"] == "a"
    with pytest.raises(JournalError):  # an id the caller chose is not silently replaced
        journal.create_run(Goal(text="c"), tmp_path, "local", run_id=first)

def test_one_live_owner_per_run_and_a_takeover_fences_the_old_one_out(journal, tmp_path):
    run_id = journal.create_run(Goal(text="x"), tmp_path, "local")
    first = journal.claim_run(run_id, A, ttl_s=30)
    assert first is not None and first.token == 1
    assert journal.claim_run(run_id, B, ttl_s=30) is None  # A is alive: B may not drive it
    journal.add_phase(run_id, "context", {}, time.time(), lease=first)  # A writes, renewing
    with pytest.raises(RunHeld, match="driven by another process"):
        journal.add_event(run_id, "note", {})  # no lease: nobody writes over a live owner
    expire(journal, run_id)
    second = journal.claim_run(run_id, B, ttl_s=30)
    assert second is not None and second.token == 2
    with pytest.raises(LeaseLost, match=f"held by {B}"):
        journal.add_phase(run_id, "plan", {}, time.time(), lease=first)
    with pytest.raises(LeaseLost):
        journal.renew_lease(first)
    journal.release_lease(first)  # a lost lease's release changes nothing
    assert journal.get_run(run_id)["lease_owner"] == B
    takeover = [e for e in journal.events(run_id) if e["type"] == "lease_takeover"]
    assert [(e["data"]["from"], e["data"]["to"], e["data"]["token"]) for e in takeover] == [(A, B, 2)]
    assert [p["kind"] for p in journal.phases(run_id)] == ["context"]  # nothing from A after the takeover
    journal.release_lease(second, RunStatus.queued)
    row = journal.get_run(run_id)
    assert (row["lease_owner"], row["lease_token"], row["status"]) == (None, 2, "queued")
    assert journal.claim_run(run_id, A, ttl_s=30).token == 3  # tokens only grow


def test_tool_call_writes_are_fenced_too(journal, tmp_path):
    run_id = journal.create_run(Goal(text="x"), tmp_path, "local")
    lease = journal.claim_run(run_id, A, ttl_s=30)
    call_id = journal.tool_call_started(run_id, 0, "write_file", {}, lease=lease)
    expire(journal, run_id)
    assert journal.claim_run(run_id, B, ttl_s=30) is not None
    with pytest.raises(LeaseLost):
        journal.tool_call_finished(call_id, {"output": "late"}, lease=lease)
    with pytest.raises(RunHeld):
        journal.tool_call_finished(call_id, {"output": "unleased"})
    assert journal.tool_calls(run_id)[0]["status"] == "started"


def test_a_transaction_fences_its_lease_once_and_a_release_inside_it_ends_that(journal, tmp_path, monkeypatch):
    """The writes inside a batch join its transaction, whose first fence holds the run's row lock to the commit:
    they need no fence of their own. A release inside the transaction ends the lease for what follows in it."""
    run_id = journal.create_run(Goal(text="x"), tmp_path, "local")
    lease = journal.claim_run(run_id, A, ttl_s=30)
    sent: list[str] = []
    execute = journal._db.execute
    monkeypatch.setattr(journal._db, "execute", lambda sql, params=(): sent.append(sql) or execute(sql, params))
    with journal.batch(run_id, lease):
        journal.add_phase(run_id, "context", {}, time.time(), lease=lease)
        journal.add_event(run_id, "context", {}, lease=lease)
    assert sum("lease_heartbeat_at" in sql for sql in sent) == 1
    with pytest.raises(LeaseLost), journal.batch(run_id, lease):
        journal.add_event(run_id, "run_finished", {}, lease=lease, release=True)
        journal.add_event(run_id, "late", {}, lease=lease)
    assert journal.get_run(run_id)["lease_owner"] == A  # rolled back whole: the release too
    assert [e["type"] for e in journal.events(run_id)] == ["context"]
    journal.add_event(run_id, "next", {}, lease=lease)  # a new transaction fences again, and the lease holds


def test_a_dead_holder_on_this_host_is_taken_over_at_once(journal, tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = f"cli:{socket.gethostname()}:{gone.pid}:cccccc"
    alive = f"cli:{socket.gethostname()}:{subprocess.os.getpid()}:dddddd"
    assert owner_is_dead(dead) and not owner_is_dead(alive) and not owner_is_dead(A)
    run_id = journal.create_run(Goal(text="x"), tmp_path, "local")
    assert journal.claim_run(run_id, dead, ttl_s=300) is not None
    assert [r["id"] for r in journal.claimable_runs(("queued",))] == [run_id]
    assert journal.claim_run(run_id, B, ttl_s=30, take_from_dead=False) is None
    assert journal.claim_run(run_id, B, ttl_s=30) is not None
    assert journal.claimable_runs(("queued",)) == []  # B lives (on paper): not claimable


def test_the_engine_will_not_drive_a_run_someone_else_holds(tmp_path, journal_url):
    app, model = make_test_app(tmp_path, rules=RULES, settings={"journal_url": journal_url, "plugins.load": ["workspace"]})
    try:
        run_id = app.engine.submit(Goal(text="make a.txt"))
        assert app.journal.claim_run(run_id, A, ttl_s=30) is not None
        with pytest.raises(RunHeld):
            app.engine.run(run_id)
        assert app.journal.phases(run_id) == [] and app.journal.events(run_id) == [] and model.calls == []
    finally:
        app.close()


def test_a_driver_that_loses_its_lease_stops_and_writes_nothing_more(tmp_path, journal_url):
    """A paused driver (silent past its ttl) is taken over; on waking, its next write is refused."""
    planning = threading.Event()
    rules = [("Write the plan", lambda _prompt: planning.set() or plan(("write it", "write_file"))), *RULES[1:]]
    app, model = make_test_app(
        tmp_path, rules=rules, settings={"journal_url": journal_url, "plugins.load": ["workspace"], "loop.lease_ttl_s": 0.6}
    )
    model.delay_s = 0.5
    try:
        run_id = app.engine.submit(Goal(text="make a.txt"))
        result: dict = {}

        def drive() -> None:
            try:
                result["outcome"] = app.engine.run(run_id)
            except LeaseLost as exc:
                result["lost"] = str(exc)

        thread = threading.Thread(target=drive)
        thread.start()
        assert planning.wait(10)  # the plan call is under way
        with app.journal._lock:  # no heartbeat in between
            expire(app.journal, run_id)
            thief = app.journal.claim_run(run_id, B, ttl_s=60)
        thread.join(20)
        assert thief is not None and "lost" in result and "outcome" not in result, result
        assert "plan" not in [p["kind"] for p in app.journal.phases(run_id)]
        assert not (tmp_path / "workspaces" / run_id / "a.txt").exists()
        assert app.journal.get_run(run_id)["lease_owner"] == B
    finally:
        app.close()


def test_the_lease_is_renewed_while_a_long_call_runs(tmp_path, journal_url):
    app, model = make_test_app(
        tmp_path, rules=RULES, settings={"journal_url": journal_url, "plugins.load": ["workspace"], "loop.lease_ttl_s": 0.6}
    )
    model.delay_s = 1.0  # each model call outlasts the ttl; the heartbeat keeps the run owned
    try:
        run_id = app.engine.submit(Goal(text="make a.txt"))
        outcome = app.engine.run(run_id)
        assert outcome["status"] == "succeeded"
        events = [e["type"] for e in app.journal.events(run_id)]
        assert "lease_takeover" not in events and events[-1] == "run_finished"
        assert app.journal.get_run(run_id)["lease_owner"] is None  # given back with the last event
    finally:
        app.close()


def test_the_heartbeat_wakes_for_a_lease_due_sooner_and_sleeps_on_for_one_due_later():
    from agentd.engine.heartbeat import LeaseKeeper
    from agentd.journal import Lease

    class Renewals:
        def __init__(self) -> None:
            self.renewed: list[str] = []

        def renew_lease(self, lease: Lease) -> None:
            self.renewed.append(lease.run_id)

    keeper, journal = LeaseKeeper(), Renewals()
    keeper.hold(journal, Lease("slow", A, 1, 300.0), threading.Event())  # its first renewal in 100 s
    for _ in range(500):
        if keeper._due:  # the thread counted it and sleeps until then
            break
        time.sleep(0.01)
    keeper.hold(journal, Lease("later", A, 1, 600.0), threading.Event())
    assert not keeper._wake.is_set()  # due after the thread's wake: no thread switch for it
    keeper.hold(journal, Lease("soon", A, 1, 0.3), threading.Event())  # due before it: woken, or it would lapse
    for _ in range(500):
        if "soon" in journal.renewed:
            break
        time.sleep(0.01)
    assert journal.renewed.count("soon") >= 1 and "slow" not in journal.renewed


def test_in_process_runs_are_born_held(tmp_path, journal_url):
    app, _ = make_test_app(tmp_path, rules=RULES, settings={"journal_url": journal_url, "plugins.load": ["workspace"]})
    try:
        run_id = app.engine.submit(Goal(text="make a.txt"), hold=True)
        assert app.journal.claimable_runs(("queued", "running")) == []  # no daemon sweep may take it
        assert app.engine.run(run_id)["status"] == "succeeded"
    finally:
        app.close()


def test_the_sweep_requeues_expired_runs_and_completes_unfinished_endings(tmp_path, journal_url):
    app, _ = make_test_app(tmp_path, rules=RULES, settings={"journal_url": journal_url, "plugins.load": ["workspace"]})
    try:
        held = app.engine.submit(Goal(text="make a.txt"))
        app.journal.claim_run(held, A, ttl_s=300)
        ended = app.engine.submit(Goal(text="make a.txt"))
        lease = app.journal.claim_run(ended, A, ttl_s=300)
        app.journal.set_status(ended, RunStatus.succeeded, lease=lease)  # ...and the driver died here
        q = RunQueue(app.engine, workers=1, pull=False)  # the sweep alone (PostgreSQL would pull, see worker.py)
        assert q.sweep_once() == []  # A lives: neither is touched
        expire(app.journal, held)
        expire(app.journal, ended)
        assert q.sweep_once() == [held]
        assert [e["type"] for e in app.journal.events(ended)][-1] == "run_finished"
        assert app.journal.get_run(ended)["lease_owner"] is None

        async def work() -> None:
            q.start()
            while app.journal.get_run(held)["status"] != "succeeded":
                await asyncio.sleep(0.02)
            await q.drain(5)

        asyncio.run(asyncio.wait_for(work(), 30))
    finally:
        app.close()


def test_a_run_ended_by_its_last_owner_is_not_driven_again(tmp_path, journal_url):
    """A second driver that read the run as open just before its owner ended it claims an ended run."""
    app, model = make_test_app(tmp_path, rules=RULES, settings={"journal_url": journal_url, "plugins.load": ["workspace"]})
    try:
        run_id = app.engine.submit(Goal(text="make a.txt"))
        assert app.engine.run(run_id)["status"] == "succeeded"
        calls = len(model.calls)
        again = app.engine.run(run_id)
        assert (again["status"], again["detail"]) == ("succeeded", "nothing to drive")
        assert [e["type"] for e in app.journal.events(run_id)].count("run_finished") == 1
        assert len(model.calls) == calls and app.journal.get_run(run_id)["lease_owner"] is None
    finally:
        app.close()
