"""The daemon's run queue: durable in the journal, worked by N asyncio tasks running goals off the loop.

A run is journaled as ``queued`` (Engine.submit) before anyone is told its id; the in-memory queue only says
which queued run to start next, so after a crash the journal alone rebuilds it (``recover``). Each run
executes in a thread of the queue's own pool (``loop.run_in_executor``: ``asyncio.to_thread`` with a pool
sized to the workers): model inference and tools never block the API, and long runs never starve the default
pool the API's event streams use. With ``run_in = "processes"`` the thread hands its run to a worker process and
waits for it (agentd.daemon.hosts): the queue, leases and outcomes stay here, only the driving moves.

One owner per run: a worker drives a run only under its lease (Engine.run claims it). Runs another process
drives (an in-process ``agentd goal``, another daemon) are left alone; a sweep every half lease re-queues runs
whose lease expired or whose holder died, and completes runs that ended without their last event. A run
whose journal write failed (disk full) is given back resumable; its followers get a ``run_error`` event, and
the sweep retries it a lease later.

On a shared journal (PostgreSQL: several daemons, one queue) idle workers also *pull*: ``claim_next`` takes the
oldest run nobody holds, whichever daemon queued it, with the same lease; the sweep then leaves free and
expired runs to the pull and only hands runs of dead processes on this host to their takeover.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.heartbeat import RunSignal
from ..errors import AgentdError
from ..journal import JournalError, LeaseLost, RunHeld, process_owner
from ..records import Goal, RunStatus, StopReason
from . import peers
from .hosts import INBOX, WorkerDied, WorkerUnavailable
from .intake import Intake

log = logging.getLogger(__name__)

OPEN = (RunStatus.queued.value, RunStatus.running.value)
ENDED = tuple(s.value for s in RunStatus if s.value not in OPEN)
PULL_IDLE_S = 0.25  # how long an idle puller waits before asking the shared queue again


class NotCancellable(AgentdError):
    """The run already ended, or does not exist."""


@dataclass
class RunQueue:
    """Queued run ids, the runs in flight with their cancel flags, and the workers that drain the queue."""

    engine: Any
    workers: int = 2
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    pending: set[str] = field(default_factory=set)  # queued in memory, not started yet
    running: dict[str, RunSignal] = field(default_factory=dict)
    journal_errors: dict[str, tuple[float, str]] = field(default_factory=dict)  # run id -> (when, error)
    owner: str = field(default_factory=lambda: process_owner("daemon"))
    accepting: bool = True
    finished_count: int = 0
    progress: dict[str, dict[str, Any]] = field(default_factory=dict)  # run id -> its latest progress event
    on_change: Callable[[], None] = lambda: None  # called (thread-safely) whenever a run emits an event
    on_outcome: Callable[[str, dict[str, Any]], None] = lambda run_id, outcome: None  # a run ended or parked
    live: Callable[[], bool] | None = None  # whether an event stream is open (runs report progress only then)
    pull: bool | None = None  # take runs from the shared queue; None: when the journal is not SQLite
    unreachable: set[str] = field(default_factory=set)  # runs started elsewhere whose workspace is not here
    host: Any = None  # where runs execute: None is this process's threads, else agentd.daemon.hosts.ProcessHost
    _tasks: list[asyncio.Task] = field(default_factory=list)
    _threads: dict[str, asyncio.Future] = field(default_factory=dict)
    _loop: asyncio.AbstractEventLoop | None = None
    _pool: ThreadPoolExecutor | None = None
    _room: asyncio.Event | None = None  # set when a worker may be free: the puller looks again
    _cancels: asyncio.Event | None = None  # set when a cancel was requested somewhere (LISTEN/NOTIFY)
    _intake: Intake | None = None  # journals the API's goals in groups (agentd.daemon.intake)

    @property
    def journal(self) -> Any:
        return self.engine.journal

    @property
    def slots(self) -> int:
        """Runs taken off the queue at once: the workers, and with worker processes as many as their inboxes hold
        (``hosts.INBOX`` each), so a worker process that ends a run starts the next at once instead of after a
        round trip through the daemon (a run in an inbox stays queued in the journal: nobody claimed it yet)."""
        return self.workers * INBOX if self.host is not None else self.workers

    def in_worker(self) -> list[str]:
        """The runs being driven now (not those waiting for a worker process)."""
        return self.host.running() if self.host is not None else sorted(self.running)

    @property
    def pulls(self) -> bool:
        return self.pull if self.pull is not None else self.journal.dialect != "sqlite"

    def _left_to_pull(self, row: dict[str, Any]) -> bool:
        """A free or expired run when pulling: the pull takes it when a worker is free (sweep and recovery
        only hand over runs whose holder died on this host)."""
        return self.pulls and (row["lease_owner"] is None or row["lease_expires_at"] < time.time())

    # -- life cycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._pool = ThreadPoolExecutor(self.slots, thread_name_prefix="run")
        self._tasks = [asyncio.create_task(self._work(i), name=f"worker-{i}") for i in range(self.slots)]
        self._tasks.append(asyncio.create_task(self._sweep(), name="lease-sweep"))
        if self.pulls:
            self.journal.apply_migrations(peers.MIGRATIONS)
            self._room, self._cancels = asyncio.Event(), asyncio.Event()
            self._tasks.append(asyncio.create_task(self._pull(), name="queue-pull"))
            self._tasks.append(asyncio.create_task(self._watch_cancels(), name="cancel-watch"))

    def recover(self, resume: bool = True) -> dict[str, list[str]]:
        """After a crash or restart: each queued or running run nobody live holds is re-queued (resume) or
        failed; none lost. Runs another live process drives stay with it."""
        found: dict[str, list[str]] = {"resumed": [], "failed": []}
        self.complete_endings()
        for row in self.journal.claimable_runs(OPEN):
            if self._left_to_pull(row):
                continue
            if resume or row["status"] == RunStatus.queued.value:
                self.enqueue(row["id"])
                found["resumed"].append(row["id"])
            else:
                self._end_unstarted(
                    row["id"], RunStatus.failed, StopReason.daemon_crash, "the daemon stopped mid-run"
                )
                found["failed"].append(row["id"])
        return found

    async def drain(self, timeout_s: float, grace_s: float = 10.0) -> None:
        """Stop taking runs; running ones get ``timeout_s``, then are cancelled and get ``grace_s`` more."""
        self.accepting = False
        for task in self._tasks:
            task.cancel()  # idle workers stop; a worker awaiting its run's thread is shielded (see _work)
        threads = list(self._threads.values())
        if threads:
            _, late = await asyncio.wait(threads, timeout=timeout_s)
            if late:
                log.warning("drain deadline reached: interrupting %d running run(s)", len(late))
                for signal in list(self.running.values()):
                    signal.stop("shutdown")  # resumable at the next start: only a person's cancel cancels
                await asyncio.wait(late, timeout=grace_s)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._intake is not None:
            await asyncio.to_thread(self._intake.close)
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    # -- queue operations ----------------------------------------------------------------------------
    def submit(self, goal: Goal, run_id: str | None = None) -> str:
        """Journal the goal as queued (durable), then queue it; returns the run id. Safe from any thread."""
        self.check_accepting()
        run_id = self.engine.submit(goal, run_id=run_id)
        self.enqueue_threadsafe(run_id)
        return run_id

    def check_accepting(self) -> None:
        """Raise unless the queue takes new runs (a draining daemon does not)."""
        if not self.accepting:
            raise AgentdError("the daemon is shutting down and takes no new runs; retry after it restarts")

    async def submit_soon(self, make_goal: Callable[[], Goal]) -> str:
        """On the event loop: the run id of the goal ``make_goal`` builds, once journaled as queued together with
        the other goals submitted meanwhile (one commit; agentd.daemon.intake), and queued."""
        if self._intake is None:
            self._intake = Intake(self)
        return await self._intake.submit(make_goal)

    def enqueue_threadsafe(self, run_id: str) -> None:
        loop = self._loop
        if loop is None or _in_loop(loop):
            self.enqueue(run_id)
        else:
            loop.call_soon_threadsafe(self.enqueue, run_id)

    def enqueue(self, run_id: str) -> None:
        if run_id in self.pending or run_id in self.running:
            return  # already on its way: never run twice
        self.pending.add(run_id)
        self.queue.put_nowait(run_id)

    def cancel(self, run_id: str) -> str:
        """Cancel a run (running: at its next safe point; waiting: now); returns the new status."""
        row = self.journal.get_run(run_id)
        if row is None:
            raise NotCancellable(f"no run {run_id!r}")
        run_id = row["id"]
        if run_id in self.running:
            self.running[run_id].stop("cancel")
            return "cancelling"
        if row["status"] in (
            RunStatus.queued.value,
            RunStatus.awaiting_approval.value,
            RunStatus.running.value,
        ):
            self.pending.discard(run_id)  # the worker skips ids no longer pending
            try:
                self._end_unstarted(run_id, RunStatus.cancelled, StopReason.cancelled, "cancelled before it ran")
            except RunHeld:
                if not self.pulls:
                    raise
                peers.request_cancel(self.journal, run_id, self.owner)  # another daemon drives it: ask it
                return "cancelling"
            return RunStatus.cancelled.value
        raise NotCancellable(f"run {run_id} already ended ({row['status']})")

    def decide(self, run_id: str, approved: bool, by: str = "user") -> None:
        """Record an approval or denial; the run is queued again and continues (or stops, denied)."""
        self.engine.decide(run_id, approved, by=by)
        row = self.journal.get_run(run_id)
        self.enqueue_threadsafe(row["id"] if row else run_id)

    def _end_unstarted(self, run_id: str, status: RunStatus, reason: StopReason, detail: str) -> None:
        lease = self.journal.claim_run(run_id, self.owner, self.engine.config.loop.lease_ttl_s)
        if lease is None:
            raise RunHeld(f"run {run_id} is being driven by another process; cancel it there")
        end_run(self.journal, run_id, status, reason, detail, lease)
        self.on_change()

    # -- the workers ---------------------------------------------------------------------------------
    async def _work(self, index: int) -> None:
        while self.accepting:
            run_id = await self.queue.get()
            if run_id not in self.pending or not self.accepting:
                continue  # cancelled while waiting, or the daemon is draining (the journal keeps it queued)
            self.pending.discard(run_id)
            cancel = RunSignal()
            self.running[run_id] = cancel
            assert self._loop is not None
            future = self._loop.run_in_executor(self._pool, self._run_one, run_id, cancel)
            self._threads[run_id] = future
            future.add_done_callback(functools.partial(self._forget_future, run_id))
            # Shielded: cancelling this worker (drain) must not abandon the run; drain() waits for the thread.
            await asyncio.shield(future)

    def _forget(self, run_id: str) -> None:
        self.running.pop(run_id, None)
        self._threads.pop(run_id, None)
        self.progress.pop(run_id, None)
        if self._room is not None:
            self._room.set()

    # -- the shared queue ----------------------------------------------------------------------------
    async def _pull(self) -> None:
        """While a worker is free: claim the oldest run nobody holds (any daemon's) and queue it here."""
        assert self._room is not None
        ttl = self.engine.config.loop.lease_ttl_s
        while self.accepting:
            lease = None
            if len(self.running) + len(self.pending) < self.slots:
                try:
                    lease = await asyncio.to_thread(
                        self.journal.claim_next, self.owner, ttl, OPEN, tuple(self.unreachable)
                    )
                except JournalError as exc:
                    log.warning("queue pull: %s", exc)
            if lease is not None:
                self.enqueue(lease.run_id)  # held by this daemon's owner: Engine.run re-claims it as its own
                continue
            self._room.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._room.wait(), PULL_IDLE_S)

    def _reachable(self, row: dict[str, Any]) -> bool:
        """A run is driven where its workspace is. One never started gets its folder made here; one started on
        a machine whose workspaces this one cannot see is refused, the reason recorded in the run, and left to
        a daemon that can see it (a shared ``workspaces_dir`` avoids this: docs/scale-out.md)."""
        workspace = Path(row["workspace"])
        if workspace.is_dir():
            return True
        if row["started_at"] is None:
            with contextlib.suppress(OSError):
                workspace.mkdir(parents=True, exist_ok=True)
                return True
        lease = self.journal.claim_run(row["id"], self.owner, self.engine.config.loop.lease_ttl_s)
        if lease is not None and row["id"] not in self.unreachable:
            reason = (f"workspace {workspace} is not reachable from {socket.gethostname()}: put workspaces_dir on "
                      "a file system every daemon mounts at the same path")
            self.journal.add_event(row["id"], "takeover_refused", {"by": self.owner, "reason": reason},
                                   lease=lease, release=True)
            log.warning("run %s: takeover refused: %s", row["id"], reason)
        elif lease is not None:
            self.journal.release_lease(lease)
        self.unreachable.add(row["id"])
        return False

    def wake_cancels(self) -> None:
        """A cancel was requested on the shared journal (from any thread): look now, not at the next poll."""
        if self._loop is not None and self._cancels is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._cancels.set)

    async def _watch_cancels(self) -> None:
        """Cancels other daemons were asked for, of runs this one drives (peers.request_cancel)."""
        assert self._cancels is not None
        while self.accepting:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._cancels.wait(), peers.CANCEL_POLL_S)
            self._cancels.clear()
            try:
                found = await asyncio.to_thread(peers.take_cancels, self.journal, list(self.running))
            except JournalError as exc:
                log.warning("cancel watch: %s", exc)
                continue
            for run_id in found:
                if run_id in self.running:
                    self.running[run_id].stop("cancel")

    def _forget_future(self, run_id: str, _future: object) -> None:
        self._forget(run_id)

    def _run_one(self, run_id: str, cancel: threading.Event) -> None:
        # The run as the journal has it now, read here rather than on the event loop: there the read waited for
        # the journal's lock behind a request's write, itself waiting for a worker process's commit, and every
        # request waited with it.
        try:
            row = self.journal.get_run(run_id)
            if row is None or row["status"] not in OPEN or not self._reachable(row):
                return  # ended meanwhile (a cancel, another daemon), or its workspace is not here
        except JournalError as exc:
            log.error("run %s not started: %s", run_id, exc)  # still queued: the sweep offers it again
            self.journal_errors[run_id] = (time.monotonic(), str(exc))
            return
        goal = row["goal"]
        if log.isEnabledFor(logging.INFO):
            log.info("run %s started: goal=%s", run_id, json.dumps(goal, ensure_ascii=False))
        outcome: dict[str, Any] | None = None  # stays None when the run is left to another owner or given back
        try:
            self.journal_errors.pop(run_id, None)
            runner = self.host or self.engine  # the same call either way: Engine.run's signature
            outcome = runner.run(run_id, on_event=self._on_event, cancel=cancel, owner=self.owner, live=self.live)
        except RunHeld as exc:
            log.info("%s; left to its owner", exc)
        except LeaseLost as exc:
            log.warning("stopped driving run %s: %s", run_id, exc)
        except (JournalError, WorkerUnavailable) as exc:
            # Given back resumable (Engine.run), or never started (no worker process): followers hear why, and
            # the sweep offers it again a lease later.
            log.error("run %s stopped: %s", run_id, exc)
            self.journal_errors[run_id] = (time.monotonic(), str(exc))
        except Exception as exc:  # the daemon's job runner: one broken run must not take a worker down
            log.exception("run %s crashed", run_id)
            detail = str(exc) if isinstance(exc, WorkerDied) else "the run crashed in the daemon"
            outcome = {"run_id": run_id, "status": RunStatus.failed.value,
                       "stop_reason": StopReason.daemon_crash.value, "detail": detail}
            try:
                self._end_unstarted(run_id, RunStatus.failed, StopReason.daemon_crash, detail)
            except Exception:
                log.exception("could not record the crash of run %s; a restart will pick it up", run_id)
        finally:
            self.finished_count += 1
            self.on_change()
        if outcome is None:
            return
        if outcome.get("status") == RunStatus.queued.value:  # interrupted by a shutdown: resumed at the next start
            log.info("run %s interrupted: %s", run_id, outcome.get("detail"))
            return
        if log.isEnabledFor(logging.INFO):
            log.info("run %s ended: %s (%s) goal=%s", run_id, outcome.get("status"),
                     outcome.get("stop_reason") or "-", json.dumps(goal, ensure_ascii=False))
        try:
            self.on_outcome(run_id, outcome)
        except Exception:  # a notification problem must not take a worker down either
            log.exception("run %s: acting on its outcome failed", run_id)

    def _on_event(self, type_: str, data: dict[str, Any]) -> None:
        if type_ == "progress":  # not journaled: event streams send the latest one per run (api._stream)
            self.progress[data["run_id"]] = data
        self.on_change()

    # -- the lease sweep -----------------------------------------------------------------------------
    async def _sweep(self) -> None:
        """Every half lease: queue runs whose owner went away (lease expired, or a dead process here)."""
        interval = self.engine.config.loop.lease_ttl_s / 2
        while self.accepting:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.sweep_once)
            except JournalError as exc:
                log.warning("lease sweep: %s", exc)

    def sweep_once(self) -> list[str]:
        """One pass of the sweep (callable from any thread); returns the run ids it queued."""
        self.complete_endings()
        now, queued = time.monotonic(), []
        for row in self.journal.claimable_runs(OPEN):
            if self._left_to_pull(row) or row["id"] in self.unreachable:
                continue
            failed = self.journal_errors.get(row["id"])
            if failed and now - failed[0] < self.engine.config.loop.lease_ttl_s:
                continue
            if row["id"] not in self.pending and row["id"] not in self.running:
                self.enqueue_threadsafe(row["id"])
                queued.append(row["id"])
        return queued

    def complete_endings(self) -> None:
        """Runs whose driver died between their final status and their last event: write that event now."""
        for row in self.journal.claimable_runs(ENDED, held_only=True):
            lease = self.journal.claim_run(row["id"], self.owner, self.engine.config.loop.lease_ttl_s)
            if lease is not None:
                end = "run_parked" if row["status"] == RunStatus.awaiting_approval.value else "run_finished"
                run = self.journal.get_run(row["id"]) or {}
                self.journal.add_event(row["id"], end, _outcome(run), lease=lease, release=True)
                self.on_change()


def end_run(
    journal: Any, run_id: str, status: RunStatus, reason: StopReason, detail: str, lease: Any = None
) -> None:
    """End a run no worker drives: a stop phase, the status, and the closing event that streams wait for.
    Under ``lease`` (given back with the event), or with no live lease on the run at all."""
    journal.add_phase(run_id, "stop", {"stop_reason": reason.value, "detail": detail}, time.time(), lease=lease)
    journal.set_status(run_id, status, lease=lease, stop_reason=reason)
    outcome = _outcome(journal.get_run(run_id) or {}) | {"detail": detail}
    journal.add_event(run_id, "run_finished", outcome, lease=lease, release=True)


def _outcome(row: dict[str, Any]) -> dict[str, Any]:
    """A run's outcome event from its journal row, for ends no engine wrote."""
    return {
        "run_id": row.get("id"),
        "status": row.get("status"),
        "stop_reason": row.get("stop_reason"),
        "detail": "",
        "final_answer": row.get("final_answer") or "",
        "workspace": row.get("workspace", ""),
        "steps": 0,
        "replans": 0,
        "usage": row.get("usage") or {},
    }


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
