"""The dashboard's loopback listener: started on the first `agentd ui`, stopped with the daemon."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass, field
from typing import Any

from .auth import LOGIN_PATH, UiAuth, ui_guard

HOST = "127.0.0.1"


@dataclass
class UiListener:
    """One uvicorn server on 127.0.0.1 serving the daemon's app behind :func:`ui_guard`."""

    app: Any
    port: int = 0  # 0: a free port, chosen when it starts
    log_level: str = "warning"
    auth: UiAuth = field(default_factory=UiAuth)
    origin: str = ""
    _server: Any = None
    _task: asyncio.Task | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def login_url(self) -> str:
        """Start the listener if needed; a URL that signs the browser in once."""
        async with self._lock:
            if self._task is None or self._task.done():
                await self._start()
        return f"{self.origin}{LOGIN_PATH}?token={self.auth.mint()}"

    async def _start(self) -> None:
        from ..server import _Server

        sock = socket.create_server((HOST, self.port))
        self.origin = f"http://{HOST}:{sock.getsockname()[1]}"
        self._server = _Server(ui_guard(self.app, self.auth, self.origin), self.log_level)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="ui-listener")
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.01)
        if self._task.done():
            self._task.result()  # raises what stopped it

    async def close(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 5)
