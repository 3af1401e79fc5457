"""A run's heartbeat and stop flag: while a process drives a run, one thread per process renews the run's lease
(journal.py) each third of its ttl; a lease found lost, or a person's cancel, raises the run's stop flag."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..journal import Journal, JournalError, Lease, LeaseLost

log = logging.getLogger(__name__)


class RunSignal(threading.Event):
    """A run's stop flag (tools see it as ``ctx.cancel``) and why it was raised: ``cancel`` (a person) or
    ``shutdown`` (the daemon stops; the run stays resumable)."""

    reason = "cancel"

    def __init__(self) -> None:
        super().__init__()
        self._listeners: list = []

    def listen(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(reason)`` on every stop (at once when already stopped): a run driven in another
        process (agentd.daemon.hosts) hears its stop this way."""
        self._listeners.append(listener)
        if self.is_set():
            listener(self.reason)

    def stop(self, reason: str) -> None:
        self.reason = reason
        self.set()
        for listener in list(self._listeners):
            listener(reason)


@dataclass(eq=False)
class HeldLease:
    """A lease this process is driving a run under; ``lost`` says why, once another process took the run."""

    journal: Journal
    lease: Lease
    stop: threading.Event
    renewed: float = field(default_factory=time.monotonic)
    lost: str = ""


class LeaseKeeper:
    """The heartbeat: one thread per process renews every held lease each third of its ttl (a thread per run
    would cost its start-up on every run); a lease found lost raises its run's stop flag."""

    def __init__(self) -> None:
        self._held: set[HeldLease] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._due = 0.0  # when the thread wakes next (monotonic), set under the lock with the leases it counted

    def hold(self, journal: Journal, lease: Lease, stop: threading.Event) -> HeldLease:
        held = HeldLease(journal, lease, stop)
        with self._lock:
            self._held.add(held)
            if self._thread is None or not self._thread.is_alive():  # first use, or after a fork
                self._thread = threading.Thread(target=self._beat, name="lease-keeper", daemon=True)
                self._thread.start()
            # Woken only when it would sleep past this lease's first renewal: while runs follow each other the
            # thread already wakes sooner for an older lease, and a wake per run was a thread switch per run.
            wake = self._due > held.renewed + lease.ttl_s / 3
        if wake:
            self._wake.set()
        return held

    def drop(self, held: HeldLease) -> None:
        with self._lock:
            self._held.discard(held)

    def _beat(self) -> None:
        while True:
            with self._lock:
                held = list(self._held)
            now = time.monotonic()
            for h in held:
                if now - h.renewed >= h.lease.ttl_s / 3:
                    self._renew(h)
            with self._lock:  # the leases held now, not the snapshot: one added meanwhile is counted or wakes us
                now = time.monotonic()
                pause = max(min((h.lease.ttl_s / 3 - (now - h.renewed) for h in self._held), default=60.0), 0.01)
                self._due = now + pause
            self._wake.wait(pause)
            self._wake.clear()

    def _renew(self, held: HeldLease) -> None:
        try:
            held.journal.renew_lease(held.lease)
            held.renewed = time.monotonic()
        except LeaseLost as exc:
            held.lost = str(exc)
            held.stop.set()
            self.drop(held)
        except JournalError:  # the next journal write of the run fails too, and ends its drive
            log.warning("could not renew the lease on run %s", held.lease.run_id, exc_info=True)
        except Exception:  # a closed journal (its run already ended) must not end the heartbeat
            self.drop(held)


KEEPER = LeaseKeeper()
