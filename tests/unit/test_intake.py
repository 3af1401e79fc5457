"""The daemon's intake: goals submitted meanwhile are journaled in one commit, and each request gets its answer."""

from __future__ import annotations

import asyncio
import threading

import pytest

import agentd.journal
from agentd import Goal
from agentd.daemon.worker import RunQueue
from agentd.errors import AgentdError
from agentd.journal import JournalError
from agentd.testing import make_test_app


@pytest.fixture
def app(tmp_path):
    app, _ = make_test_app(tmp_path, [], settings={"plugins.load": ["workspace"]})
    yield app
    app.close()


def held_first(queue: RunQueue, makers: list, release: threading.Event) -> list:
    """Submit the first goal maker and, while the intake builds it (it waits for ``release``), the others, which
    queue up behind it: the intake takes them as one group. Returns each submission's run id or exception."""

    async def scenario() -> list:
        tasks = [asyncio.create_task(queue.submit_soon(makers[0]))]
        while not makers[0].building.is_set():  # the intake took it alone
            await asyncio.sleep(0.001)
        tasks += [asyncio.create_task(queue.submit_soon(m)) for m in makers[1:]]
        while queue._intake._waiting.qsize() < len(makers) - 1:
            await asyncio.sleep(0.001)  # every other goal waits behind the first
        release.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await queue.drain(1.0)
        return results

    return asyncio.run(scenario())


def spy_on_groups(queue: RunQueue, monkeypatch) -> list[int]:
    """The size of each group the intake journals."""
    groups: list[int] = []
    submit_many = queue.engine.submit_many

    def counted(goals):
        groups.append(len(goals))
        return submit_many(goals)

    monkeypatch.setattr(queue.engine, "submit_many", counted)
    return groups


def first_waits_for(release: threading.Event, text: str):
    def make() -> Goal:
        make.building.set()
        assert release.wait(10)
        return Goal(text=text)

    make.building = threading.Event()
    return make


def test_goals_submitted_meanwhile_are_journaled_in_one_group_and_queued(app, monkeypatch):
    release, queue = threading.Event(), RunQueue(app.engine, workers=1)
    groups = spy_on_groups(queue, monkeypatch)
    makers = [first_waits_for(release, "goal 0")] + [lambda i=i: Goal(text=f"goal {i}") for i in range(1, 6)]
    run_ids = held_first(queue, makers, release)

    assert groups == [1, 5]  # the first alone, then the five that arrived while it was being built
    assert [app.journal.get_run(r)["goal"] for r in run_ids] == [f"goal {i}" for i in range(6)]
    assert {app.journal.get_run(r)["status"] for r in run_ids} == {"queued"}
    assert sorted(queue.pending) == sorted(run_ids)  # and each one queued to run


def test_a_goal_refused_on_its_own_refuses_only_its_request(app, monkeypatch):
    release, queue = threading.Event(), RunQueue(app.engine, workers=1)
    groups = spy_on_groups(queue, monkeypatch)

    def outside() -> Goal:
        raise AgentdError("folder /etc is outside [workspace] allowed_dirs")

    makers = [first_waits_for(release, "goal 0"), lambda: Goal(text="   "), outside, lambda: Goal(text="goal 3"),
              lambda: Goal(text="x", model="no-such-model")]
    results = held_first(queue, makers, release)

    assert groups == [1, 3]  # the goal that could not be built never reached the journal
    assert isinstance(results[1], AgentdError) and "the goal is empty" in str(results[1])
    assert isinstance(results[2], AgentdError) and "allowed_dirs" in str(results[2])
    assert isinstance(results[4], AgentdError) and "no-such-model" in str(results[4])
    assert [app.journal.get_run(results[i])["goal"] for i in (0, 3)] == ["goal 0", "goal 3"]
    assert len(app.journal.list_runs()) == 2


def test_a_failed_commit_refuses_its_whole_group_and_writes_none_of_it(app, monkeypatch):
    release, queue = threading.Event(), RunQueue(app.engine, workers=1)
    create_run, writes = app.journal.create_run, []

    def full_disk_at_third(**fields):
        writes.append(fields["goal"].text)
        if len(writes) == 3:
            raise JournalError("journal write failed: database or disk is full; free space, then retry")
        return create_run(**fields)

    monkeypatch.setattr(app.journal, "create_run", full_disk_at_third)
    makers = [first_waits_for(release, "goal 0")] + [lambda i=i: Goal(text=f"goal {i}") for i in range(1, 5)]
    results = held_first(queue, makers, release)

    assert writes == [f"goal {i}" for i in range(5)][:3]  # the group stopped at the failed write
    assert isinstance(results[0], str)  # its own group, committed before
    assert all(isinstance(r, JournalError) and "disk is full" in str(r) for r in results[1:])
    assert [r["goal"] for r in app.journal.list_runs()] == ["goal 0"]  # goal 1 was written, then rolled back
    assert queue.pending == {results[0]}


def test_an_id_drawn_twice_is_drawn_again_before_anything_is_written(app, monkeypatch):
    drawn = iter(["20261203-120000-aaaaaa", "20261203-120000-aaaaaa", "20261203-120000-bbbbbb"])
    monkeypatch.setattr(agentd.journal, "new_run_id", lambda: next(drawn))
    first = app.engine.submit_many([Goal(text="one"), Goal(text="two")])

    assert first == ["20261203-120000-aaaaaa", "20261203-120000-bbbbbb"]
    assert [app.journal.get_run(r)["goal"] for r in first] == ["one", "two"]


def test_no_goal_is_taken_once_the_queue_drains(app):
    queue = RunQueue(app.engine, workers=1)

    async def scenario() -> None:
        assert await queue.submit_soon(lambda: Goal(text="before"))
        await queue.drain(1.0)
        with pytest.raises(AgentdError, match="shutting down"):
            await queue.submit_soon(lambda: Goal(text="after"))

    asyncio.run(scenario())
    assert [r["goal"] for r in app.journal.list_runs()] == ["before"]
