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
inherited by nobody else): ``run`` / ``stop`` / ``exit`` in, ``event`` / ``done`` / ``raised`` out. A worker
ignores SIGINT and SIGTERM (a terminal's Ctrl-C or systemd's stop reach the whole group; the daemon drains the
runs itself) and is killed by the kernel the moment the daemon ends (``PR_SET_PDEATHSIG``; elsewhere it exits
when the daemon's end of the pair closes), so a daemon killed with -9 leaves no worker driving a run its
successor resumes (and any write it tried in between is fenced by the lease).
A worker that dies mid-run (a native crash, the OOM killer) fails that run with the worker's exit status in
its detail; the next run gets a fresh worker.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
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


@dataclass(eq=False)
class _Worker:
    """One worker process and the daemon's end of its socket pair."""

    proc: subprocess.Popen
    conn: Connection
    generation: int
    send_lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, message: tuple) -> None:
        with self.send_lock:
            self.conn.send(message)

    def alive(self) -> bool:
        return self.proc.poll() is None and not self.conn.closed

    def close(self, timeout_s: float = EXIT_TIMEOUT_S) -> None:
        try:
            self.send(("exit",))
            self.proc.wait(timeout_s)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            self.conn.close()


class ProcessHost:
    """A pool of worker processes with Engine.run's signature: ``run`` blocks its (daemon) thread until the run
    its worker drives ends, passing the run's events and stop requests across."""

    def __init__(self, config: Any, size: int, log_level: str = "info") -> None:
        self.config = config
        self.size = size
        self.log_level = log_level
        self.generation = 0  # raised by recycle(): workers of an older one exit after their run
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._workers: set[_Worker] = set()
        self._driving: dict[_Worker, str] = {}  # worker -> the run it drives
        self._lock = threading.Lock()
        self._closed = False
        # Every worker is started from this one thread, which lives as long as the host: a worker asks the kernel
        # to kill it when the thread that started it ends (PR_SET_PDEATHSIG), so it must not be a passing one.
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="worker-spawn")

    def start(self) -> None:
        """Start every worker; raises (naming the worker's error) when one cannot open the configuration."""
        started = [self._spawn() for _ in range(self.size)]
        for worker in started:
            self._ready(worker)
            self._idle.put(worker)

    def run(self, run_id: str, on_event: Any = None, cancel: Any = None, owner: str = "") -> dict:
        worker = self._checkout()
        try:
            if isinstance(cancel, RunSignal) and cancel.is_set() and cancel.reason == "shutdown":
                # The daemon stops while this run waited for a worker: never started, it stays queued.
                return {"run_id": run_id, "status": "queued", "detail": "the daemon stopped before a worker took it"}
            with self._lock:
                self._driving[worker] = run_id
            worker.send(("run", run_id, owner))
            if isinstance(cancel, RunSignal):
                cancel.listen(lambda reason: self._stop(worker, run_id, reason))
            return self._follow(worker, run_id, on_event)
        finally:
            with self._lock:
                self._driving.pop(worker, None)
            self._checkin(worker)

    def running(self) -> list[str]:
        """The runs the workers drive now."""
        with self._lock:
            return sorted(self._driving.values())

    def pids(self) -> list[int]:
        """The live worker processes (``/status``)."""
        with self._lock:
            return sorted(w.proc.pid for w in self._workers if w.proc.poll() is None)

    def recycle(self, config: Any) -> None:
        """A reloaded configuration: idle workers are replaced now, busy ones after their run."""
        with self._lock:
            self.config, self.generation = config, self.generation + 1
        for _ in range(self.size):
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                break
            try:
                self._idle.put(self._fresh(worker))
            except WorkerUnavailable as exc:
                log.error("%s; the next run tries again", exc)

    def close(self) -> None:
        """Tell every worker to exit (after the daemon drained its runs); kill one that does not."""
        with self._lock:
            self._closed = True
            workers = list(self._workers)
        for worker in workers:
            self._retire(worker)
        self._spawner.shutdown(wait=False)

    # -- workers -------------------------------------------------------------------------------------
    def _spawn(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise AgentdError("the daemon is stopping; no new worker process")
        return self._spawner.submit(self._start_worker).result()

    def _start_worker(self) -> _Worker:
        ours, theirs = socket.socketpair()
        proc = subprocess.Popen(
            [sys.executable, "-m", "agentd.daemon.hosts", str(theirs.fileno()), str(os.getpid())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        with self._lock:  # the configuration and generation of one reload, read together
            worker = _Worker(proc, Connection(ours.detach()), self.generation)
            self._workers.add(worker)
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
            self._retire(worker)
            raise AgentdError(f"a worker process could not start: {message[1]}")
        return worker

    def _checkout(self) -> _Worker:
        # RunQueue hands out up to twice ``size`` runs (RunQueue.slots): the extra ones wait here for a worker.
        worker = self._idle.get()
        if worker.alive() and worker.generation == self.generation:
            return worker
        return self._fresh(worker)

    def _checkin(self, worker: _Worker) -> None:
        if self._closed or (worker.alive() and worker.generation == self.generation):
            self._idle.put(worker)
            return
        try:
            self._idle.put(self._fresh(worker))
        except WorkerUnavailable as exc:
            log.error("%s; the next run tries again", exc)

    def _fresh(self, old: _Worker) -> _Worker:
        """A ready worker in ``old``'s slot (``old`` retired). When none starts, the slot is kept (``old`` goes back
        to the idle queue, dead, so the next run tries again) and WorkerUnavailable says why."""
        self._retire(old)
        try:
            return self._ready(self._spawn())
        except AgentdError as exc:
            self._idle.put(old)
            raise WorkerUnavailable(f"no worker process for the run: {exc}") from None

    def _retire(self, worker: _Worker) -> None:
        with self._lock:
            self._workers.discard(worker)
        if worker.alive():
            worker.close()
        else:
            worker.conn.close()

    def _stop(self, worker: _Worker, run_id: str, reason: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # the worker is gone: _follow reports it
            worker.send(("stop", run_id, reason))  # the run id: a late stop must not reach the worker's next run

    def _follow(self, worker: _Worker, run_id: str, on_event: Any) -> dict:
        """Pass the run's events on until its outcome (or its error, re-raised here) comes back."""
        while True:
            try:
                message = worker.conn.recv()
            except (EOFError, OSError):
                try:
                    status = worker.proc.wait(EXIT_TIMEOUT_S)
                except subprocess.TimeoutExpired:  # its end of the pair closed, yet it lives: end it
                    worker.proc.kill()
                    status = worker.proc.wait()
                raise WorkerDied(
                    f"worker process {worker.proc.pid} died while driving run {run_id} "
                    f"({_exit_status(status)})"
                ) from None
            kind = message[0]
            if kind == "event":
                if on_event is not None:
                    on_event(message[1], message[2])
            elif kind == "done":
                return message[1]
            elif kind == "raised":
                raise _rebuild(*message[1:])


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
def worker_main(fd: int, daemon_pid: int) -> None:
    """A worker process: open the App from the daemon's configuration, then drive the runs the daemon sends."""
    _die_with_the_daemon(daemon_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon drains its runs; it tells this process when to go
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.set_inheritable(fd, False)  # never passed on to a tool's process
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

    current: dict[str, Any] = {}

    def forward(type_: str, data: dict[str, Any]) -> None:
        """A journaled event (it has a ``seq``) crosses as its reference: what it says is in the journal, where the
        daemon's streams read it. Only what is not journaled (``progress``) crosses whole."""
        send(("event", type_, {"run_id": data["run_id"], "seq": data["seq"]} if "seq" in data else data))

    def drive(run_id: str, owner: str, stop: RunSignal) -> None:
        try:
            outcome = app.engine.run(run_id, on_event=forward, cancel=stop, owner=owner)
            send(("done", outcome))
        except Exception as exc:
            if not isinstance(exc, AgentdError):
                log.exception("run %s crashed in the worker", run_id)
            send(("raised", type(exc).__module__, type(exc).__qualname__, str(exc)))

    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            os._exit(0)  # the daemon is gone: its successor resumes the run from the journal
        if message[0] == "run":
            stop = RunSignal()
            current.update(run_id=message[1], stop=stop)
            current["thread"] = threading.Thread(target=drive, args=(message[1], message[2], stop), name="run")
            current["thread"].start()
        elif message[0] == "stop" and current.get("run_id") == message[1]:
            current["stop"].stop(message[2])
        elif message[0] == "exit":
            if "thread" in current:
                current["thread"].join(EXIT_TIMEOUT_S)
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
    worker_main(int(sys.argv[1]), int(sys.argv[2]))
