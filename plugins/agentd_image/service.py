"""Keeping one pipeline warm: loaded on first use, shared by calls one at a time, released when idle.

Nothing here knows about torch; the loader and the work are functions handed in, so the lifecycle (lazy
load, the queue, the idle timer, unloading around use when ``keep_warm_s`` is 0) is tested with fakes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from agentd import ToolError

log = logging.getLogger(__name__)

T = TypeVar("T")
P = TypeVar("P")

POLL_S = 0.1  # how often a queued call looks at its cancel flag


@dataclass
class UseInfo:
    """How a call found the service: whether it had to load, and whether it unloaded afterwards."""

    cold_start: bool
    waited_s: float
    released_after: bool


class PipelineService(Generic[P]):
    """One loaded thing (a pipeline) behind a lock, loaded lazily and released after ``keep_warm_s`` idle."""

    def __init__(self, key: Hashable, load: Callable[[], P], release: Callable[[P], None]) -> None:
        self.key = key
        self._load = load
        self._release = release
        self._lock = threading.Lock()
        self._loaded: P | None = None
        self._timer: threading.Timer | None = None
        self.loads = 0  # how many times it was loaded (tests and diagnostics)

    @property
    def loaded(self) -> P | None:
        return self._loaded

    def use(self, work: Callable[[P], T], keep_warm_s: float, cancel: threading.Event) -> tuple[T, UseInfo]:
        """Run ``work(pipeline)`` when the pipeline is free; concurrent calls queue here, in turn."""
        started = time.monotonic()
        while not self._lock.acquire(timeout=POLL_S):
            if cancel.is_set():
                raise ToolError(
                    "cancelled while waiting for the image generator, which was busy with another call"
                )
        waited = time.monotonic() - started
        cold = self._loaded is None
        try:
            self._cancel_timer()
            if self._loaded is None:
                self._loaded = self._load()
                self.loads += 1
            try:
                result = work(self._loaded)
            except BaseException:
                # A failed call (out of memory, cancelled) may leave device memory in a poor state: start afresh.
                self._unload()
                raise
        finally:
            released = self._loaded is None or keep_warm_s <= 0
            if keep_warm_s <= 0:
                self._unload()
            elif self._loaded is not None:
                self._arm_timer(keep_warm_s)
            self._lock.release()
        return result, UseInfo(cold_start=cold, waited_s=round(waited, 3), released_after=released)

    def close(self) -> None:
        """Wait for the call in progress, then release the pipeline."""
        with self._lock:
            self._cancel_timer()
            self._unload()

    def _arm_timer(self, seconds: float) -> None:
        timer = threading.Timer(seconds, self._expire, args=())
        timer.daemon = True  # an idle timer must never keep the process alive
        timer.name = "agentd-image-idle"
        self._timer = timer
        timer.start()

    def _expire(self) -> None:
        if not self._lock.acquire(blocking=False):
            return  # a call is using the pipeline; it arms a fresh timer when it ends
        try:
            if self._timer is threading.current_thread():
                self._timer = None
                log.info("image pipeline idle; releasing it")
                self._unload()
        finally:
            self._lock.release()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _unload(self) -> None:
        loaded, self._loaded = self._loaded, None
        if loaded is not None:
            self._release(loaded)


_registry_lock = threading.Lock()
_active: PipelineService[Any] | None = None


def service_for(key: Hashable, load: Callable[[], P], release: Callable[[P], None]) -> PipelineService[P]:
    """The process's one service for ``key``; a different key first releases the old pipeline (one at a time,
    so two models never share the accelerator)."""
    global _active
    with _registry_lock:
        if _active is not None and _active.key != key:
            _active.close()
            _active = None
        if _active is None:
            _active = PipelineService(key, load, release)
        return _active


def release_all() -> None:
    """Release whatever pipeline is loaded (for shutdown and tests)."""
    global _active
    with _registry_lock:
        if _active is not None:
            _active.close()
            _active = None
