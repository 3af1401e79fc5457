"""Connections to MCP servers: one background asyncio loop per process, one client session per server.

agentd tools run synchronously in worker threads, while the MCP SDK is async and its transports must be
entered and left in one task. So each server gets a long-lived task on a dedicated event-loop thread that owns
its transport and session; tool calls are submitted to that loop with ``run_coroutine_threadsafe``. A server
that died is noticed by a ping before the next call and restarted, with a growing delay after failed starts.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 60.0
PING_TIMEOUT_S = 3.0


class ServerUnavailable(RuntimeError):
    """The server could not be started or reached; the message says why and when it is tried again."""


class ServerDied(RuntimeError):
    """The connection closed while a call was in flight: whether the call took effect is unknown."""


@dataclass
class ServerStatus:
    """What `agentd doctor` and `tools list` report about one server."""

    connected: bool = False
    tools: list[Any] | None = None  # the server's mcp Tool objects, once listed
    starts: int = 0
    restarts: int = 0
    failures: int = 0  # consecutive failed starts, for the backoff
    last_error: str | None = None
    next_attempt_at: float = 0.0
    events: list[str] = field(default_factory=list)

    def note(self, message: str) -> None:
        self.events.append(f"{time.strftime('%H:%M:%S')} {message}")
        del self.events[:-20]


class LoopThread:
    """An asyncio event loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="agentd-mcp-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float | None, cancel: threading.Event | None = None) -> Any:
        """Run a coroutine on the loop from another thread; honour ``cancel`` and ``timeout``."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return future.result(timeout=0.1)
            except concurrent.futures.TimeoutError:  # not the builtin TimeoutError before 3.11
                pass
            if (cancel is not None and cancel.is_set()) or (
                deadline is not None and time.monotonic() > deadline
            ):
                future.cancel()
                raise TimeoutError("cancelled" if cancel is not None and cancel.is_set() else "timed out")

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


class ServerConnection:
    """One MCP server: started on demand, its session kept open, restarted after it dies."""

    def __init__(self, name: str, settings: Any, log_dir: Path | None) -> None:
        self.name = name
        self.settings = settings
        self.log_dir = log_dir
        self.status = ServerStatus()
        self.session: Any = None
        self._task: asyncio.Task | None = None
        self._stop: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None
        self._errlog: TextIO | None = None

    async def ensure(self) -> Any:
        """The open session, starting (or restarting) the server first when needed."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.session is not None and await self._alive():
                return self.session
            died = self.status.connected
            if died:
                self.status.connected = False
                self.status.restarts += 1
                self.status.note("server died; restarting")
                log.warning("MCP server %s died; restarting it (restart %d)", self.name, self.status.restarts)
                await self._close()
            wait = self.status.next_attempt_at - time.monotonic()
            if wait > 0:
                raise ServerUnavailable(
                    f"MCP server {self.name!r} failed to start ({self.status.last_error}); "
                    f"the next attempt is in {wait:.0f}s"
                )
            try:
                await self._start()
            except Exception as exc:
                self.status.failures += 1
                delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (self.status.failures - 1))
                self.status.next_attempt_at = time.monotonic() + delay
                self.status.last_error = _describe(exc)
                self.status.note(f"start failed: {self.status.last_error}; retry in {delay:.0f}s")
                log.warning("MCP server %s failed to start: %s", self.name, self.status.last_error)
                raise ServerUnavailable(
                    f"MCP server {self.name!r} failed to start: {self.status.last_error}"
                ) from None
            self.status.failures = 0
            return self.session

    async def call(self, tool: str, arguments: dict[str, Any], timeout: float) -> Any:
        """Call a tool; ServerDied when the connection closes under the call."""
        session = await self.ensure()
        try:
            return await session.call_tool(tool, arguments, read_timeout_seconds=timeout)
        except Exception as exc:
            if "closed" in str(exc).lower():
                self.session = None  # the next call restarts it
                self.status.note(f"connection closed during a call to {tool}")
                raise ServerDied(str(exc)) from None
            raise

    async def aclose(self) -> None:
        """Stop the server (the transport ends its subprocess or HTTP session)."""
        await self._close()
        self.status.connected = False
        self._lock = None  # a later start may run on a new loop; a lock stays bound to its first loop
        if self._errlog is not None:
            self._errlog.close()
            self._errlog = None

    async def _alive(self) -> bool:
        try:
            await asyncio.wait_for(self.session.send_ping(), PING_TIMEOUT_S)
            return True
        except Exception:
            return False

    async def _start(self) -> None:
        ready: asyncio.Future = asyncio.get_running_loop().create_future()
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._serve(ready, self._stop), name=f"mcp-{self.name}")
        try:
            await asyncio.wait_for(asyncio.shield(ready), self.settings.timeout_s)
        except asyncio.TimeoutError:
            await self._close(graceful=False)  # it never answered: no point waiting for a clean goodbye
            raise TimeoutError(f"no answer within {self.settings.timeout_s:g}s (timeout_s)") from None
        except BaseException:
            await self._close(graceful=False)
            raise
        self.status.starts += 1
        self.status.connected = True
        self.status.last_error = None
        self.status.note(f"connected; {len(self.status.tools or [])} tools")

    async def _serve(self, ready: asyncio.Future, stop: asyncio.Event) -> None:
        from mcp import ClientSession

        try:
            async with self._transport() as streams, ClientSession(streams[0], streams[1]) as session:
                await session.initialize()
                self.status.tools = await _list_all_tools(session)
                self.session = session
                if not ready.done():
                    ready.set_result(True)
                await stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
            if not isinstance(exc, (Exception, asyncio.CancelledError)):
                raise
        finally:
            self.session = None

    def _transport(self) -> Any:
        s = self.settings
        if s.url:
            from mcp.client.streamable_http import streamable_http_client

            return streamable_http_client(s.url)
        from mcp import StdioServerParameters, stdio_client

        params = StdioServerParameters(
            command=s.command, args=list(s.args), env=dict(s.env) or None, cwd=s.cwd
        )
        return stdio_client(params, errlog=self._stderr())

    def _stderr(self) -> Any:
        """The server's stderr goes to a log file (not the terminal of `agentd goal`)."""
        import sys

        if self._errlog is None and self.log_dir is not None:
            with contextlib.suppress(OSError):
                self.log_dir.mkdir(parents=True, exist_ok=True)
                self._errlog = open(self.log_dir / f"mcp-{self.name}.log", "a", encoding="utf-8")  # noqa: SIM115
        return self._errlog or sys.stderr

    async def _close(self, graceful: bool = True) -> None:
        """End the serving task: let it leave its transport (which stops the subprocess), else cancel it."""
        task, stop = self._task, self._stop
        self._task = self._stop = None
        self.session = None
        if task is None:
            return
        if stop is not None:
            stop.set()
        if graceful:
            # wait_for cancels the task when it does not finish in time; shutdown goes on either way.
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 5)
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 5)


async def _list_all_tools(session: Any) -> list[Any]:
    from mcp import types

    tools: list[Any] = []
    cursor = None
    while True:
        params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
        page = await session.list_tools(params=params)
        tools.extend(page.tools)
        cursor = getattr(page, "next_cursor", None)
        if not cursor:
            return tools


def _describe(exc: BaseException) -> str:
    # anyio wraps transport failures in exception groups; the first leaf says what happened.
    while getattr(exc, "exceptions", None):
        exc = exc.exceptions[0]  # type: ignore[attr-defined]
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


_loop: LoopThread | None = None
_loop_lock = threading.Lock()


def loop_thread() -> LoopThread:
    """The process-wide MCP event loop, started on first use; stopped (servers closed) at exit."""
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = LoopThread()
            atexit.register(_shutdown_at_exit)
        return _loop


_connections: list[ServerConnection] = []


def track(conn: ServerConnection) -> ServerConnection:
    """Remember a connection so that shutdown() closes it."""
    _connections.append(conn)
    return conn


def shutdown() -> None:
    """Close every server this process started (their subprocesses end with them)."""
    global _loop
    with _loop_lock:
        lt, _loop = _loop, None
    if lt is None:
        return
    conns = list(_connections)
    _connections.clear()

    async def close_all() -> None:
        await asyncio.gather(*(c.aclose() for c in conns), return_exceptions=True)

    with contextlib.suppress(Exception):
        lt.run(close_all(), timeout=15)
    lt.stop()


def _shutdown_at_exit() -> None:
    with contextlib.suppress(Exception):
        shutdown()
