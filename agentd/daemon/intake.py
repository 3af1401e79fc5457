"""Goals submitted through the API, journaled in groups: one commit for the goals that arrive together.

``POST /runs`` used to be a sync endpoint: each request went to a thread of the API's pool, which journaled its
goal in a transaction of its own and woke the event loop to answer. Here the request waits on the loop and one
thread (``intake``) takes every goal waiting when it wakes, journals them in one transaction
(``Engine.submit_many``), and wakes the loop once to queue them all and answer each request. Idle, a goal is
one transaction as before; under load (many clients, a shared PostgreSQL journal where a commit is a round
trip) the commits and the thread hand-offs are shared.

The answer is given only after the commit, so a 201 still means the run is durable. A goal refused on its own
(an empty text, a folder outside ``allowed_dirs``) refuses only its request; a failed commit (disk full)
refuses every request of that group, none of whose runs was written.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from queue import Empty, SimpleQueue
from typing import Any

from ..errors import AgentdError
from ..records import Goal

log = logging.getLogger(__name__)
MAX_GROUP = 64  # goals journaled in one transaction at most
_STOP = None


class Intake:
    """The intake thread of one RunQueue (agentd.daemon.worker): started at the first ``submit``."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue
        self._waiting: SimpleQueue[tuple[Callable[[], Goal], asyncio.Future] | None] = SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, make_goal: Callable[[], Goal]) -> str:
        """The run id of the goal ``make_goal`` builds (on the intake thread: it may check folders), once it is
        journaled as queued; raises what refused it. Call on the event loop."""
        self.queue.check_accepting()
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(target=self._work, name="intake", daemon=True)
            self._thread.start()
        answer = self._loop.create_future()
        self._waiting.put((make_goal, answer))
        return await answer

    def close(self) -> None:
        """No more goals (the queue stopped accepting first): the thread answers those waiting, then ends."""
        if self._thread is not None:
            self._waiting.put(_STOP)
            self._thread.join(30)

    # -- the intake thread ---------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            first = self._waiting.get()
            if first is _STOP:
                return
            group, stop = [first], False
            while len(group) < MAX_GROUP:
                try:
                    item = self._waiting.get_nowait()
                except Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                group.append(item)
            results = self._journal([make_goal for make_goal, _ in group])
            assert self._loop is not None
            try:
                self._loop.call_soon_threadsafe(self._answer, [answer for _, answer in group], results)
            except RuntimeError:  # the loop closed (the daemon exited): nobody waits for these answers
                return
            if stop:
                return

    def _journal(self, makers: list[Callable[[], Goal]]) -> list[str | Exception]:
        """Each goal's run id, or what refused it (a goal that cannot be built refuses only itself)."""
        try:
            self.queue.check_accepting()  # the daemon began draining after these were handed in
        except AgentdError as exc:
            return [exc] * len(makers)
        results: list[str | Exception | None] = []  # None: the goal was built, its run id comes below
        goals: list[Goal] = []
        for make_goal in makers:
            try:
                goals.append(make_goal())
                results.append(None)
            except Exception as exc:  # noqa: BLE001 - this request's answer
                results.append(exc)
        try:
            ids = iter(self.queue.engine.submit_many(goals))
        except Exception as exc:  # noqa: BLE001 - a bug here must answer the requests, not leave them waiting
            log.exception("intake: journaling %d goal(s) failed", len(goals))
            ids = iter([exc] * len(goals))
        return [next(ids) if result is None else result for result in results]

    # -- back on the event loop ----------------------------------------------------------------------
    def _answer(self, answers: list[asyncio.Future], results: list[str | Exception]) -> None:
        """Queue the journaled runs and answer each request (one whose client left is queued all the same)."""
        for answer, result in zip(answers, results, strict=True):
            if isinstance(result, str):
                self.queue.enqueue(result)
                if not answer.done():
                    answer.set_result(result)
            elif not answer.done():
                answer.set_exception(result)
