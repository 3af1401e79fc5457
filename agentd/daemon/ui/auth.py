"""Who may use the dashboard's loopback listener, and from which page.

``agentd ui`` asks the daemon (over its owner-only socket) for a one-time login token. Opening
``/ui/login?token=...`` spends it and sets a session cookie (HttpOnly, SameSite=Strict, never the token itself),
then every request needs that session. State-changing requests must also come from the dashboard's own origin
(the Origin header), and the Host header must name the listener, so another site (or a DNS-rebound name) can
neither read nor drive the daemon.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

COOKIE = "agentd_ui"  # + the port: cookies ignore ports, and two daemons (two homes) may serve dashboards
LOGIN_PATH = "/ui/login"
MINT_PATH = "/ui/session"  # answered on the Unix socket only: the guard refuses it on the listener
SAFE_METHODS = (b"GET", b"HEAD", b"OPTIONS")


@dataclass
class UiAuth:
    """One-time login tokens and the sessions they open; both expire."""

    token_ttl_s: float = 120.0
    session_ttl_s: float = 12 * 3600.0
    clock: Any = time.time
    _tokens: dict[str, float] = field(default_factory=dict)
    _sessions: dict[str, float] = field(default_factory=dict)

    def mint(self) -> str:
        """A fresh one-time login token."""
        self._expire()
        token = secrets.token_urlsafe(32)
        self._tokens[token] = self.clock() + self.token_ttl_s
        return token

    def spend(self, token: str) -> str | None:
        """Trade a login token for a new session id; a token works once, and only before it expires."""
        self._expire()
        for known in list(self._tokens):
            if hmac.compare_digest(known, token):
                del self._tokens[known]
                session = secrets.token_urlsafe(32)
                self._sessions[session] = self.clock() + self.session_ttl_s
                return session
        return None

    def valid(self, session: str) -> bool:
        self._expire()
        return any(hmac.compare_digest(known, session) for known in self._sessions)

    def _expire(self) -> None:
        now = self.clock()
        for table in (self._tokens, self._sessions):
            for key in [k for k, until in table.items() if until < now]:
                del table[key]


def ui_guard(app: Any, auth: UiAuth, origin: str) -> Any:
    """ASGI middleware for the loopback listener at ``origin`` (``http://127.0.0.1:PORT``)."""
    host = origin.split("://", 1)[1].encode()
    cookie_name = f"{COOKIE}_{origin.rsplit(':', 1)[1]}"

    async def guarded(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if headers.get(b"host", b"") != host:
            await _refuse(send, 403, "wrong Host header: open the dashboard at the URL `agentd ui` prints")
            return
        if scope["path"] == MINT_PATH:
            await _refuse(send, 403, "login links are made by `agentd ui` on the daemon's own socket")
            return
        if scope["path"] == LOGIN_PATH:
            await _login(scope, send, auth, cookie_name)
            return
        if not auth.valid(_cookie(headers.get(b"cookie", b""), cookie_name)):
            await _refuse(send, 401, "not signed in: run `agentd ui` for a fresh one-time link")
            return
        if scope["method"].encode() not in SAFE_METHODS and headers.get(b"origin", b"").decode() != origin:
            await _refuse(send, 403, "cross-site request refused: the Origin header must be the dashboard's")
            return
        await app(scope, receive, send)

    return guarded


async def _login(scope: dict, send: Any, auth: UiAuth, cookie_name: str) -> None:
    token = (parse_qs(scope.get("query_string", b"").decode()).get("token") or [""])[0]
    session = auth.spend(token) if token else None
    if session is None:
        await _refuse(send, 401, "this login link was used or has expired: run `agentd ui` for a fresh one")
        return
    cookie = f"{cookie_name}={session}; HttpOnly; SameSite=Strict; Path=/"
    await send({
        "type": "http.response.start",
        "status": 303,
        "headers": [(b"location", b"/"), (b"set-cookie", cookie.encode()), (b"cache-control", b"no-store"),
                    (b"referrer-policy", b"no-referrer")],
    })
    await send({"type": "http.response.body", "body": b""})


def _cookie(raw: bytes, wanted: str) -> str:
    for part in raw.decode("latin-1").split(";"):
        name, _, value = part.strip().partition("=")
        if name == wanted:
            return value
    return ""


async def _refuse(send: Any, status: int, message: str) -> None:
    body = f"{status} {message}\n".encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())],
    })
    await send({"type": "http.response.body", "body": body})
