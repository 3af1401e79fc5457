"""The long-running daemon: one per AGENTD_HOME, an HTTP API on a Unix socket, a durable run queue, workers.

Start-up: take the home's lock (fcntl.flock on ``agentd.lock``; a second daemon fails fast), clean a stale
socket and pid file left by a crash, recover every queued or running run from the journal, start the workers
and the scheduler (if installed), then serve. SIGTERM/SIGINT drain: no new runs, running ones get
``drain_timeout_s``, then are cancelled; a second signal exits at once (the journal makes that a crash a
restart recovers from).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import AgentdError, ConfigError
from ..home import config_mtime_ns
from .setup import DaemonSettings, Paths, acquire_lock, bind_unix_socket, load_settings, read_pid

log = logging.getLogger(__name__)
PEERS_MAX_AGE_S = 1.0  # /status lists the daemons sharing the journal as read at most this long ago


@dataclass
class Daemon:
    """The daemon's state shared by the API and the workers."""

    config: Any
    settings: DaemonSettings
    app: Any = None  # agentd.app.App
    queue: Any = None  # agentd.daemon.worker.RunQueue
    scheduler: Any = None
    started_at: float = field(default_factory=time.time)
    stopping: bool = False
    recovered: dict[str, list[str]] = field(default_factory=dict)
    config_mtime_ns: int = 0  # newest change to the config files when they were last read (start or reload)
    peers: Any = None  # agentd.daemon.peers.Peers: the daemons sharing the journal, with heartbeats
    _heartbeat: asyncio.Task | None = None
    _stop_listening: threading.Event = field(default_factory=threading.Event)
    _changed: asyncio.Event | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _wake_pending: bool = False  # a _wake is scheduled on the loop and has not run yet
    followers: int = 0  # open event streams: runs' events wake the loop (and cross from worker processes) only then
    _peers_cache: tuple[float, list[dict[str, Any]]] | None = None  # (monotonic time read, Peers.all())

    # -- start and stop ------------------------------------------------------------------------------
    async def start(self) -> None:
        from ..app import make_app
        from .worker import RunQueue

        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self.config_mtime_ns = config_mtime_ns(self.config.home)
        self.app = await asyncio.to_thread(make_app, self.config)
        await asyncio.to_thread(self.app.host.call_each, "daemon_starting", config=self.config)
        self.queue = RunQueue(
            self.app.engine, workers=self.settings.workers, on_change=self.notify, on_outcome=self.tell_owner,
            live=self.watched,
        )
        if self.settings.run_in == "processes":
            from .hosts import ProcessHost, check_process_safe

            check_process_safe(self.config, set(self.app.host.infos))
            self.queue.host = ProcessHost(self.config, self.settings.workers, self.settings.log_level)
            await asyncio.to_thread(self.queue.host.start)
        self.recovered = self.queue.recover(resume=self.settings.resume)
        if any(self.recovered.values()):
            log.info("recovered runs: %s", self.recovered)
        self.queue.start()
        self._start_scheduler()
        self._start_heartbeat()

    def _start_heartbeat(self) -> None:
        """The ``daemons`` row other daemons and `agentd doctor` read; every half lease, at most every 5 s."""
        from .. import __version__
        from .peers import Peers

        self.peers = Peers(self.app.journal)
        interval = min(self.config.loop.lease_ttl_s / 2, 5.0)

        def beat() -> None:
            q = self.queue
            self.peers.beat(q.owner, home=str(self.config.home), version=__version__, workers=q.workers,
                            running=len(q.running), interval_s=interval, started_at=self.started_at)

        async def heartbeat() -> None:
            while not self.stopping:
                try:
                    await asyncio.to_thread(beat)
                except AgentdError as exc:
                    log.warning("heartbeat: %s", exc)
                await asyncio.sleep(interval)

        beat()
        self._heartbeat = asyncio.create_task(heartbeat(), name="heartbeat")
        if self.app.journal.dialect != "sqlite":
            threading.Thread(target=self._listen, name="journal-listen", daemon=True).start()

    def _listen(self) -> None:
        """A shared journal: other daemons' events wake this one's followers, and cancel requests reach its queue,
        as PostgreSQL notifies them (LISTEN/NOTIFY); the polling behind both stays as the fallback."""
        from ..journal import EVENTS_CHANNEL
        from .peers import CANCEL_CHANNEL

        def heard(channel: str, _payload: str) -> None:
            if channel == CANCEL_CHANNEL:
                self.queue.wake_cancels()
            self.notify()

        while not self._stop_listening.is_set():
            try:
                self.app.journal.listen((EVENTS_CHANNEL, CANCEL_CHANNEL), heard, self._stop_listening)
            except OSError as exc:  # the database went away: polling carries on; listen again shortly
                log.warning("journal notifications: %s; listening again in 5 s", exc)
                self._stop_listening.wait(5)

    async def stop(self) -> None:
        """Drain the queue and stop the scheduler; the journal already holds everything else."""
        self.stopping = True
        self._stop_listening.set()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self.peers is not None:
            with contextlib.suppress(AgentdError):
                await asyncio.to_thread(self.peers.stopped, self.queue.owner)
        self.notify()
        if self.scheduler is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.scheduler.shutdown)
        if self.queue is not None:
            await self.queue.drain(self.settings.drain_timeout_s)
            if self.queue.host is not None:
                await asyncio.to_thread(self.queue.host.close)
        if self.app is not None:
            self.app.close()

    def _start_scheduler(self) -> None:
        """The scheduler is optional: started when ``agentd.schedule.scheduler`` provides one, else skipped."""
        try:
            from ..schedule import scheduler as scheduler_module
        except ImportError:
            return
        factory = getattr(scheduler_module, "Scheduler", None)
        if factory is None:
            return
        try:
            self.scheduler = factory(
                config=self.config, journal=self.app.journal, submit=self.submit_scheduled
            )
            self.scheduler.start()
        except Exception:  # a broken scheduler must not take the daemon (and its queue) down
            log.exception("the scheduler could not start; schedules will not fire")
            self.scheduler = None

    async def reload(self) -> dict[str, Any]:
        """Re-read the config and schedules.toml (``daemon reload``, SIGHUP). Everything is validated first; on
        any error the old configuration stays in force. Runs in flight finish on the configuration they began
        with; settings that need a restart (workers, the TCP listener) are named, not applied."""
        from ..app import make_app
        from ..config import load_config

        mtime = config_mtime_ns(self.config.home)
        try:
            config = await asyncio.to_thread(load_config, self.config.home)
            settings = load_settings(config)
            app = await asyncio.to_thread(make_app, config, journal=self.app.journal)  # one shared journal
        except AgentdError as exc:
            log.error("reload refused; the old configuration stays in force: %s", exc)
            raise ConfigError(f"reload refused, the old configuration stays in force: {exc}") from None
        restart = [k for k in RESTART_KEYS if getattr(settings, k) != getattr(self.settings, k)]
        self.config, self.app, self.config_mtime_ns = config, app, mtime
        self.settings = settings.model_copy(update={k: getattr(self.settings, k) for k in restart})
        self.queue.engine = app.engine
        if self.queue.host is not None:
            await asyncio.to_thread(self.queue.host.recycle, config)
        schedules: dict[str, list[str]] = {}
        if self.scheduler is not None:
            self.scheduler.config, self.scheduler._tools = config, app.tools
            schedules = await asyncio.to_thread(self.scheduler.import_file)
            await asyncio.to_thread(self.scheduler.sync_jobs)
        log.info("configuration reloaded (models: %s)%s", ", ".join(sorted(config.models)),
                 f"; restart to apply {', '.join(restart)}" if restart else "")
        return {"reloaded": True, "models": sorted(config.models), "needs_restart": restart, "schedules": schedules}

    def submit_scheduled(self, goal: Any, fire_id: str) -> str:
        """The scheduler's way in: a fire becomes a queued run like any other (callable from any thread)."""
        run_id = self.queue.submit(goal)
        log.info("schedule fire %s queued run %s", fire_id, run_id)
        return run_id

    def tell_owner(self, run_id: str, outcome: dict[str, Any]) -> None:
        """A scheduled run that failed, is unverified or waits for approval notifies its owner (Apprise)."""
        from ..notify import notify_outcome, reason_to_notify
        from ..records import Goal

        if reason_to_notify(outcome) is None:  # most runs: no need to read the run back
            return
        row = self.app.journal.get_run(run_id)
        if row is not None:
            notify_outcome(self.config, Goal.from_dict(row["goal_spec"]), outcome)

    # -- change notification (SSE streams wait on it) ------------------------------------------------
    def follow(self, delta: int) -> None:
        """An event stream opened (+1) or ended (-1), on the loop's thread. While none is open a run's events wake
        nothing, and worker processes keep them to themselves (each one crossing cost the daemon a wake-up:
        ~0.25 ms of its CPU per run)."""
        self.followers += delta
        if not self.followers and self.queue is not None:
            self.queue.progress.clear()  # unwatched runs report none: what is kept would be stale by the next stream
        host = self.queue.host if self.queue is not None else None
        if host is not None:
            host.followed(self.followers > 0)

    def watched(self) -> bool:
        """Whether an event stream is open: runs report live progress only then (Engine.run's ``live``)."""
        return self.followers > 0

    def notify(self) -> None:
        """Wake every event stream; safe from worker threads. Coalesced: while a wake-up is already on its way
        no other is scheduled (each one wrote to the loop's self-pipe: ~12 per goal, all from worker threads);
        the streams it wakes read everything journaled before it runs. With no stream open, nothing to wake: a
        stream counts itself (``follow``) before its first read of the journal, so it misses no event."""
        loop = self._loop
        if loop is None or not self.followers or loop.is_closed() or self._wake_pending:
            return
        self._wake_pending = True
        try:
            loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # the loop closed meanwhile
            self._wake_pending = False

    def _wake(self) -> None:
        self._wake_pending = False  # first: a notify from now on schedules its own wake-up
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    async def wait_change(self, timeout: float) -> None:
        event = self._changed
        if event is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)

    # -- status --------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        from .. import __version__ as ver
        q = self.queue
        driven = q.in_worker() if q else []
        data: dict[str, Any] = {
            "pid": os.getpid(),
            "version": ver,
            "home": str(self.config.home),
            "started_at": self.started_at,
            "uptime_s": round(time.time() - self.started_at, 1),
            "workers": self.settings.workers,
            "run_in": self.settings.run_in,
            "queue_depth": len(q.pending) + len(q.running) - len(driven) if q else 0,
            "running_runs": driven,
            "finished_since_start": q.finished_count if q else 0,
            "models_loaded": self.app.models.loaded() if self.app else [],
            "accepting": bool(q and q.accepting) and not self.stopping,
            "recovered": self.recovered,
            "config_mtime_ns": self.config_mtime_ns,
            "journal": self.app.journal.dialect if self.app else None,
        }
        if q is not None and q.host is not None:
            data["worker_pids"] = q.host.pids()
        if self.peers is not None:
            try:
                data["daemons"] = self._daemons()
            except AgentdError as exc:  # status must answer even when the database is unwell
                data["daemons"] = {"error": str(exc)}
        if self.scheduler is not None and hasattr(self.scheduler, "status"):
            try:
                data["scheduler"] = self.scheduler.status()
            except Exception as exc:  # status must answer even when the scheduler is unwell
                data["scheduler"] = {"error": str(exc)}
        return data


    def _daemons(self) -> list[dict[str, Any]]:
        """The daemons sharing the journal, read at most once per ``PEERS_MAX_AGE_S``: heartbeats change them
        every few seconds, and reading the table on every /status (a dashboard or a prober polling it) took
        the journal's lock from the workers, a fifth of the daemon's CPU under a 50/s prober."""
        now = time.monotonic()
        if self._peers_cache is None or now - self._peers_cache[0] > PEERS_MAX_AGE_S:
            self._peers_cache = (now, self.peers.all())
        return self._peers_cache[1]


RESTART_KEYS = ("workers", "run_in", "tcp_host", "tcp_port", "token_env")  # daemon settings a reload cannot change


class _Server:
    """A uvicorn server that leaves signals to the daemon (it drains the queue first)."""

    def __new__(cls, app: Any, log_level: str) -> Any:
        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self):  # type: ignore[override]
                yield

            def install_signal_handlers(self) -> None:  # the same hook in uvicorn < 0.29
                pass

        config = uvicorn.Config(
            app,
            log_level=log_level,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=3,
        )
        return Server(config)


async def serve(config: Any) -> None:
    """Run the daemon until SIGTERM/SIGINT; the caller configures logging."""
    from ..home import check_writable, prepare_home
    from .api import create_api, token_guard
    from .ui import mount_ui

    settings = load_settings(config)
    if config.notify:
        from ..notify import check_urls

        check_urls(config.notify, "notify")
    paths = Paths(config.home)
    prepare_home(config.home)
    check_writable(config.home, config.journal_path)  # never serve on a journal that cannot be written
    lock_fd = acquire_lock(paths)
    token = ""
    if settings.tcp_host:
        token = os.environ.get(settings.token_env, "")
        if not token:
            raise ConfigError(
                f"plugins.daemon.tcp_host is set, so the TCP listener needs a bearer token: "
                f"set ${settings.token_env}"
            )
    daemon = Daemon(config, settings)
    paths.pid.write_text(str(os.getpid()))
    try:
        await daemon.start()
        api = create_api(daemon)
        ui = mount_ui(api, daemon, settings.ui_port, settings.log_level)
        servers = [(_Server(api, settings.log_level), [bind_unix_socket(paths.socket)])]
        if settings.tcp_host:
            tcp = socket.create_server((settings.tcp_host, settings.tcp_port), reuse_port=False)
            servers.append((_Server(token_guard(api, token), settings.log_level), [tcp]))
            log.info("TCP listener on %s:%s (bearer token required)", *tcp.getsockname()[:2])
        tasks = [asyncio.create_task(s.serve(sockets=socks)) for s, socks in servers]
        log.info(
            "agentd daemon %s serving on %s with %d workers", os.getpid(), paths.socket, settings.workers
        )
        reloads: set[asyncio.Task] = set()  # referenced until done, so a reload task is never collected early

        def on_sighup() -> None:
            task = asyncio.create_task(daemon.reload())
            reloads.add(task)
            task.add_done_callback(_reload_done(reloads))

        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, on_sighup)
        await _wait_for_signal()
        log.info("shutting down: draining (up to %.0fs)", settings.drain_timeout_s)
        await daemon.stop()
        await ui.close()
        for server, _ in servers:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        with contextlib.suppress(OSError):
            paths.socket.unlink()
        if read_pid(paths) == os.getpid():
            with contextlib.suppress(OSError):
                paths.pid.unlink()
        os.close(lock_fd)
        stuck = sorted(daemon.queue.running) if daemon.queue is not None else []
        if stuck:
            # A run thread that ignored cancel (a long model call) would block interpreter exit; the journal
            # already says it was running, so the next start resumes it like after a crash.
            log.warning("exiting with run(s) still in flight, resumed at next start: %s", ", ".join(stuck))
            logging.shutdown()
            os._exit(0)
        log.info("agentd daemon stopped")


def _reload_done(tasks: set[asyncio.Task]) -> Any:
    """Forget a finished SIGHUP reload; its error (already logged by reload()) is marked as retrieved."""

    def done(task: asyncio.Task) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()

    return done


async def _wait_for_signal() -> None:
    """Return on the first SIGTERM/SIGINT; a second one exits at once (a restart recovers the journal)."""
    loop = asyncio.get_running_loop()
    first = asyncio.Event()

    def handle(sig: int) -> None:
        if first.is_set():
            log.warning("second signal: exiting now")
            os._exit(128 + sig)
        first.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, handle, sig)
    await first.wait()


def run_foreground(config: Any) -> None:
    """``agentd daemon run``: serve in this process until signalled."""
    asyncio.run(serve(config))
