"""Where the daemon's runs execute: its own threads (the default), or worker processes (``run_in = "processes"``).

Threads share the daemon's loaded models and memory, but one Python process runs one thread at a time: with a
fast model the API, the journal and every run share one core, and more workers add nothing (bench_daemon: the
daemon at ~0.5x its engine in-process, 2 workers slower than 1). Worker processes give each run slot its own
interpreter, so the API and the runs use separate cores. What that costs:

- each process loads its own models (a local GGUF once per worker) and opens its own plugins;
- memory must be a Chroma server (``[plugins.memory] backend = "http"``) or off: embedded Chroma is one
  process's store, and two processes writing it would corrupt it (``check_process_safe`` refuses to start).

The daemon stays the only owner of its runs: a worker process drives a run under the daemon's owner id, so
leases, sweeps and takeovers see one daemon. The daemon talks to each worker over a private socket pair (no path,
inherited by nobody else): ``run`` / ``stop`` / ``exit`` in, ``started`` / ``event`` / ``done`` / ``raised`` out
(a run's end and the next run's start as one ``batch`` when the next already waits). A worker
ignores SIGINT and SIGTERM (a terminal's Ctrl-C or systemd's stop reach the whole group; the daemon drains the
runs itself) and is killed by the kernel the moment the daemon ends (``PR_SET_PDEATHSIG``; elsewhere it exits
when the daemon's end of the pair closes), so a daemon killed with -9 leaves no worker driving a run its
successor resumes (and any write it tried in between is fenced by the lease).
A worker that dies mid-run (a native crash, the OOM killer) fails that run with the worker's exit status in
its detail; the next run gets a fresh worker.

Each worker holds the run it drives and the next one (``INBOX``), so it starts the next the moment one ends; the
daemon's round trip (the outcome in, the next run out) overlaps the next run instead of sitting between two.
That took the workers' time driving runs from ~77% to ~85% under load. A run waiting in an inbox is not claimed:
it stays ``queued``, a cancel reaches it there, a shutdown leaves it queued, and when its worker dies first it
goes to another worker rather than failing.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import mmap
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from ..engine.heartbeat import RunSignal
from ..errors import AgentdError, ConfigError

log = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0  # a worker imports agentd and opens the plugins before it says it is ready
EXIT_TIMEOUT_S = 10.0  # after ``exit``: how long a worker may take to close its App before it is killed


class WorkerDied(AgentdError):
    """A worker process ended while it drove a run."""


class WorkerUnavailable(AgentdError):
    """No worker process could be started for a run; the run stays queued and the sweep offers it again."""


def check_process_safe(config: Any, plugins: Any = None) -> None:
    """Worker processes need every store they share to take several processes: refuse embedded Chroma.
    ``plugins``: the names of the plugins loaded (the daemon's App knows); else read from the configuration."""
    if plugins is None:
        load = config.plugins.load
        plugins = {"memory"} - set(config.plugins.block) if load is None else set(load) - set(config.plugins.block)
    memory = config.plugin_settings("memory")
    if "memory" in plugins and memory.get("enabled", True) and memory.get("backend", "persistent") == "persistent":
        raise ConfigError(
            'plugins.daemon.run_in = "processes" needs memory that several processes can share: run a Chroma '
            'server and set [plugins.memory] backend = "http" (with host and port), or set '
            '[plugins.memory] enabled = false; else use run_in = "threads"'
        )


INBOX = 2  # runs a worker process holds at once: the one it drives and the next, waiting in its own inbox
GIVE_TRIES = 3  # workers a run is given to when each dies before it starts the run; then it stays queued


@dataclass(eq=False)
class _Worker:
    """One worker process, the daemon's end of its socket pair, and the runs given to it.

    A reader thread per worker takes every message the worker sends: a run's events go straight to that run's
    ``on_event``; its end (``done``, ``raised``, or the worker's death) goes to the run's own queue, which the
    daemon thread waiting in ``ProcessHost.run`` reads."""

    proc: subprocess.Popen
    conn: Connection
    generation: int
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    runs: dict[str, _Given] = field(default_factory=dict)  # given to it, not ended: driving or in its inbox
    driving: str = ""  # the run it said it started and has not ended
    ended: int | None = None  # its exit status, once its end of the pair closed
    reading: bool = False  # its reader thread runs: that thread closes the daemon's end (never under its recv)

    def send(self, message: tuple) -> None:
        with self.send_lock:
            self.conn.send(message)

    def usable(self, generation: int) -> bool:
        return self.ended is None and self.generation == generation and self.proc.poll() is None

    def close(self, timeout_s: float = EXIT_TIMEOUT_S) -> None:
        """Ask the process to exit (killed when it does not), then close the daemon's end unless its reader does."""
        if self.proc.poll() is None:
            try:
                self.send(("exit",))
                self.proc.wait(timeout_s)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        if not self.reading:
            self.conn.close()


class _Flag:
    """One byte the daemon and its workers share (a memfd, Linux), set while an event stream follows runs: a worker
    sends a run's events across only then (each one wakes the daemon: ~0.25 ms of its CPU per run). Where there is
    no memfd it reads as always set. A worker maps it and closes the descriptor, so no tool inherits it."""

    def __init__(self, fd: int | None = None) -> None:
        if fd is None and hasattr(os, "memfd_create"):
            fd = os.memfd_create("agentd-followed")
            os.ftruncate(fd, 1)
        self.fd = fd
        self._map = mmap.mmap(fd, 1) if fd is not None else None

    def set(self, on: bool) -> None:
        if self._map is not None:
            self._map[0] = int(on)

    def __bool__(self) -> bool:
        return self._map is None or self._map[0] != 0


@dataclass(eq=False)
class _Given:
    """A run given to a worker: where its events go, and its end."""

    on_event: Any
    end: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    started: bool = False


class ProcessHost:
    """A pool of worker processes with Engine.run's signature: ``run`` blocks its (daemon) thread until the run
    a worker drives ends, passing the run's events and stop requests across.

    Each worker holds up to ``INBOX`` runs: the one it drives and the next, so that it starts the next the moment
    one ends instead of after a round trip through the daemon (RunQueue takes that many runs per worker off its
    queue: ``RunQueue.slots``). A run in a worker's inbox is not claimed yet: it stays ``queued`` in the journal."""

    def __init__(self, config: Any, size: int, log_level: str = "info") -> None:
        self.config = config
        self.size = size
        self.log_level = log_level
        self.generation = 0  # raised by recycle(): workers of an older one get no new run, and go once idle
        self._slots: list[_Worker | None] = []  # one per worker; None while its next worker starts
        self._cond = threading.Condition()  # guards the slots and each worker's runs; notified when room frees
        self._closed = False
        self._followed = _Flag()
        # Every worker is started from this one thread, which lives as long as the host: a worker asks the kernel
        # to kill it when the thread that started it ends (PR_SET_PDEATHSIG), so it must not be a passing one.
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="worker-spawn")

    def start(self) -> None:
        """Start every worker; raises (naming the worker's error) when one cannot open the configuration."""
        started = [self._spawn() for _ in range(self.size)]
        for worker in started:
            self._ready(worker)
        with self._cond:
            self._slots = list(started)

    def run(self, run_id: str, on_event: Any = None, cancel: Any = None, owner: str = "", live: Any = None) -> dict:
        """Engine.run's call, in a worker process (``live``: there, the followed flag the daemon sets)."""
        for _ in range(GIVE_TRIES):
            if isinstance(cancel, RunSignal) and cancel.is_set() and cancel.reason == "shutdown":
                # The daemon stops while this run waited for a worker: never started, it stays queued.
                return {"run_id": run_id, "status": "queued", "detail": "the daemon stopped before a worker took it"}
            worker, given = self._give(run_id, on_event)
            try:
                with contextlib.suppress(OSError, ValueError):  # a dead worker: its reader says so below
                    worker.send(("run", run_id, owner))
                if isinstance(cancel, RunSignal):
                    cancel.listen(lambda reason, worker=worker: self._stop(worker, run_id, reason))
                end = given.end.get()
            finally:
                self._take_back(worker, run_id)
            if end[0] == "done":
                return end[1]
            if end[0] == "raised":
                raise _rebuild(*end[1:])
            if given.started:  # "died"
                raise WorkerDied(
                    f"worker process {worker.proc.pid} died while driving run {run_id} ({_exit_status(end[1])})"
                )
            log.warning("worker process %s died before it started run %s; another takes it", worker.proc.pid, run_id)
        raise WorkerUnavailable(f"{GIVE_TRIES} worker processes in a row died before they started run {run_id}")

    def followed(self, on: bool) -> None:
        """Whether an event stream follows runs now (``Daemon.follow``): workers send events only then."""
        self._followed.set(on)

    def running(self) -> list[str]:
        """The runs the workers drive now (not those waiting in a worker's inbox)."""
        with self._cond:
            return sorted(w.driving for w in self._slots if w is not None and w.driving)

    def pids(self) -> list[int]:
        """The live worker processes (``/status``)."""
        with self._cond:
            return sorted(w.proc.pid for w in self._slots if w is not None and w.ended is None and w.proc.poll() is None)

    def recycle(self, config: Any) -> None:
        """A reloaded configuration: idle workers are replaced now, busy ones once their runs ended."""
        with self._cond:
            self.config, self.generation = config, self.generation + 1
            idle = [(i, w) for i, w in enumerate(self._slots) if w is not None and not w.runs]
            for i, _ in idle:
                self._slots[i] = None
        for i, worker in idle:
            try:
                self._refill(i, worker)
            except WorkerUnavailable as exc:
                log.error("%s; the next run tries again", exc)

    def close(self) -> None:
        """Tell every worker to exit (after the daemon drained its runs); kill one that does not."""
        with self._cond:
            self._closed = True
            workers = [w for w in self._slots if w is not None]
            self._cond.notify_all()
        for worker in workers:
            worker.close()
        self._spawner.shutdown(wait=False)

    # -- giving runs to workers ------------------------------------------------------------------------
    def _give(self, run_id: str, on_event: Any) -> tuple[_Worker, _Given]:
        """The least busy worker with room in its inbox, the run registered with it. A slot whose worker died or
        is of an older configuration gets a fresh worker once it holds no run; when none starts, WorkerUnavailable
        (the slot is kept: the next run tries again)."""
        given = _Given(on_event)
        with self._cond:
            while True:
                if self._closed:
                    raise WorkerUnavailable("the daemon is stopping; no worker process takes new runs")
                room = [w for w in self._slots if w is not None and w.usable(self.generation) and len(w.runs) < INBOX]
                if room:
                    worker = min(room, key=lambda w: len(w.runs))
                    worker.runs[run_id] = given
                    return worker, given
                stale = next((i for i, w in enumerate(self._slots) if w is not None and not w.runs), None)
                if stale is not None:
                    old, self._slots[stale] = self._slots[stale], None
                    break
                self._cond.wait()
        worker = self._refill(stale, old, (run_id, given))
        return worker, given

    def _take_back(self, worker: _Worker, run_id: str) -> None:
        """A run ended (or never started): room in its worker's inbox; a worker no longer usable is replaced."""
        with self._cond:
            worker.runs.pop(run_id, None)
            replace = not worker.runs and not self._closed and not worker.usable(self.generation)
            slot = self._slots.index(worker) if replace and worker in self._slots else None
            if slot is not None:
                self._slots[slot] = None
            self._cond.notify_all()
        if slot is not None:
            try:
                self._refill(slot, worker)
            except WorkerUnavailable as exc:
                log.error("%s; the next run tries again", exc)

    def _refill(self, slot: int, old: _Worker, first: tuple[str, _Given] | None = None) -> _Worker:
        """A ready worker in ``slot`` (emptied by the caller), ``old`` closed; ``first``: a run it is given at
        once. When none starts, the slot gets ``old`` back (dead: the next run tries again) and
        WorkerUnavailable says why."""
        old.close()
        try:
            worker = self._ready(self._spawn())
        except AgentdError as exc:
            with self._cond:
                self._slots[slot] = old
                self._cond.notify_all()
            raise WorkerUnavailable(f"no worker process for the run: {exc}") from None
        with self._cond:
            if first is not None:
                worker.runs[first[0]] = first[1]
            self._slots[slot] = worker
            self._cond.notify_all()
        return worker

    # -- workers -------------------------------------------------------------------------------------
    def _spawn(self) -> _Worker:
        with self._cond:
            if self._closed:
                raise AgentdError("the daemon is stopping; no new worker process")
        return self._spawner.submit(self._start_worker).result()

    def _start_worker(self) -> _Worker:
        ours, theirs = socket.socketpair()
        flag = self._followed.fd
        proc = subprocess.Popen(
            [sys.executable, "-m", "agentd.daemon.hosts", str(theirs.fileno()), str(os.getpid()), str(flag or "")],
            pass_fds=(theirs.fileno(),) + ((flag,) if flag is not None else ()),
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        with self._cond:  # the configuration and generation of one reload, read together
            worker = _Worker(proc, Connection(ours.detach()), self.generation)
            config = self.config.model_copy()
        config._plugin_settings = {}  # validated copies (`config show`); some are local classes pickle refuses
        worker.send(("start", config, self.log_level))
        return worker

    def _ready(self, worker: _Worker) -> _Worker:
        try:
            if not worker.conn.poll(START_TIMEOUT_S):
                raise AgentdError(f"worker process {worker.proc.pid} did not start in {START_TIMEOUT_S:.0f}s")
            message = worker.conn.recv()
        except (EOFError, OSError):
            message = ("failed", f"it exited with status {worker.proc.wait()}")
        if message[0] != "ready":
            worker.close()
            raise AgentdError(f"a worker process could not start: {message[1]}")
        worker.reading = True
        threading.Thread(target=self._read, args=(worker,), name=f"worker-{worker.proc.pid}", daemon=True).start()
        return worker

    def _stop(self, worker: _Worker, run_id: str, reason: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # the worker is gone: its reader reports it
            worker.send(("stop", run_id, reason))  # the run id: a late stop must not reach the worker's next run

    def _read(self, worker: _Worker) -> None:
        """The worker's messages, until its end of the pair closes: events go to their run's ``on_event``,
        ends to the run's queue; the worker's death ends every run it held (``died``, with its exit status)."""
        while True:
            try:
                message = worker.conn.recv()
            except (EOFError, OSError):
                break
            for one in message[1] if message[0] == "batch" else (message,):  # a batch: a run's end, the next's start
                self._heard(worker, one)
        try:
            status = worker.proc.wait(EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:  # its end of the pair closed, yet it lives: end it
            worker.proc.kill()
            status = worker.proc.wait()
        worker.conn.close()
        with self._cond:
            worker.ended, worker.driving = status, ""
            held = list(worker.runs.values())
            self._cond.notify_all()
        for given in held:
            given.end.put(("died", status))

    @staticmethod
    def _heard(worker: _Worker, message: tuple) -> None:
        """One message of a worker's, as ``_read`` takes it (a batch's parts one by one, in order)."""
        kind, run_id = message[0], message[1]
        given = worker.runs.get(run_id)
        if given is None:
            return
        if kind == "event":
            if given.on_event is not None:
                given.on_event(message[2], message[3])
        elif kind == "started":
            given.started = True
            worker.driving = run_id
        else:  # "done" / "raised"
            worker.driving = ""
            given.end.put((kind, *message[2:]))


def _exit_status(status: int) -> str:
    if status < 0:
        return f"killed by {signal.Signals(-status).name}"
    return f"exit status {status}"


def _rebuild(module: str, name: str, text: str) -> BaseException:
    """The worker's exception as the same class here (agentd's own), so RunQueue treats it as in a thread."""
    if module.startswith("agentd"):
        cls = getattr(importlib.import_module(module), name, None)
        if isinstance(cls, type) and issubclass(cls, Exception):
            try:
                return cls(text)
            except TypeError:
                pass
    return AgentdError(f"{name}: {text}")


# -- the worker process ----------------------------------------------------------------------------------
def worker_main(fd: int, daemon_pid: int, flag_fd: int | None = None) -> None:
    """A worker process: open the App from the daemon's configuration, then drive the runs the daemon gives it,
    one at a time and in order, on one long-lived thread (the main thread keeps reading: stops, the next run)."""
    _die_with_the_daemon(daemon_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon drains its runs; it tells this process when to go
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.set_inheritable(fd, False)  # never passed on to a tool's process
    followed = _Flag(flag_fd)
    if flag_fd is not None:
        os.close(flag_fd)  # mapped: the descriptor itself is not needed
    conn = Connection(fd)
    _, config, level = conn.recv()
    logging.basicConfig(
        stream=sys.stderr, level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s [worker %(process)d]: %(message)s",
    )
    try:
        from ..app import make_app

        app = make_app(config)
    except Exception as exc:  # reported to the daemon, which refuses to start with it
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    send_lock = threading.Lock()

    def send(message: tuple) -> None:
        with send_lock:
            conn.send(message)

    inbox: queue.SimpleQueue[tuple[str, str] | None] = queue.SimpleQueue()
    stops: dict[str, RunSignal] = {}  # the runs given and not ended, each with its stop flag

    def forward(type_: str, data: dict[str, Any]) -> None:
        """While an event stream follows runs: a journaled event (it has a ``seq``) crosses as its reference (what
        it says is in the journal, where the daemon's streams read it); what is not journaled (``progress``)
        crosses whole. A stream opened later reads the journal first, so it misses nothing sent before."""
        if not followed:
            return
        ref = {"run_id": data["run_id"], "seq": data["seq"]} if "seq" in data else data
        send(("event", data["run_id"], type_, ref))

    def drive() -> None:
        ended: tuple | None = None  # the last run's end, held while the next run is already in the inbox
        while True:
            try:
                given = inbox.get_nowait() if ended is not None else inbox.get()
            except queue.Empty:
                send(ended)  # nothing next: the end goes alone, now
                ended, given = None, inbox.get()
            if given is None:
                if ended is not None:
                    send(ended)
                return
            run_id, owner = given
            stop = stops[run_id]
            try:
                if stop.is_set() and stop.reason == "shutdown":  # the daemon stops before this run began
                    if ended is not None:
                        send(ended)
                        ended = None
                    send(("done", run_id, {"run_id": run_id, "status": "queued",
                                           "detail": "the daemon stopped before a worker took it"}))
                    continue
                # Under load the next run waits in the inbox: the last run's end and this one's start cross in
                # one message, one wake-up of the daemon's reader instead of two.
                send(("batch", (ended, ("started", run_id))) if ended is not None else ("started", run_id))
                ended = None
                try:
                    outcome = app.engine.run(run_id, on_event=forward, cancel=stop, owner=owner,
                                             live=lambda: bool(followed))
                    ended = ("done", run_id, outcome)
                except Exception as exc:
                    if not isinstance(exc, AgentdError):
                        log.exception("run %s crashed in the worker", run_id)
                    ended = ("raised", run_id, type(exc).__module__, type(exc).__qualname__, str(exc))
            finally:
                stops.pop(run_id, None)

    driver = threading.Thread(target=drive, name="run")
    driver.start()
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            os._exit(0)  # the daemon is gone: its successor resumes the run from the journal
        if message[0] == "run":
            stops[message[1]] = RunSignal()
            inbox.put((message[1], message[2]))
        elif message[0] == "stop" and message[1] in stops:
            stops[message[1]].stop(message[2])
        elif message[0] == "exit":
            inbox.put(None)
            driver.join(EXIT_TIMEOUT_S)
            app.close()
            return


def _die_with_the_daemon(daemon_pid: int) -> None:
    """Killed by the kernel the moment the daemon ends, however it ends (Linux): no write of this worker can
    follow its daemon's death. Elsewhere the closed socket pair ends it a little later (worker_main)."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != daemon_pid:  # the daemon died before the request above: nobody to work for
        os._exit(0)


if __name__ == "__main__":
    worker_main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) if sys.argv[3:] and sys.argv[3] else None)
