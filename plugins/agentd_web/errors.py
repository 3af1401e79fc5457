"""Turning HTTP failures into messages a model can act on (what went wrong, and what to do next)."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

import httpx


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Parse a Retry-After header: delta seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def transport_error_message(exc: httpx.HTTPError, where: str) -> str:
    """A readable message for a failure below HTTP: no network, refused connection, DNS, timeouts."""
    if isinstance(exc, httpx.ConnectTimeout):
        return f"connecting to {where} timed out; the site may be down or the network slow; try again later"
    if isinstance(exc, httpx.TimeoutException):
        return f"{where} did not answer in time ({type(exc).__name__}); try again later or another source"
    if isinstance(exc, httpx.ConnectError):
        return (
            f"could not connect to {where} ({exc or 'connection failed'}); there may be no network, "
            "or the server is not running"
        )
    if isinstance(exc, httpx.TooManyRedirects):
        return f"{where} redirected too many times; try the final address directly"
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return f"the connection to {where} broke off ({type(exc).__name__}: {exc}); try again later"
    return f"request to {where} failed ({type(exc).__name__}: {exc})"


def status_message(status: int, reason: str, headers: Mapping[str, str], who: str, key_hint: str = "") -> str:
    """A readable message for an HTTP error status (4xx/5xx), including Retry-After on 429 and 503."""
    head = f"{who} answered HTTP {status} {reason or ''}".rstrip()
    retry_after = headers.get("retry-after")
    if status == 429 or (status == 503 and retry_after):
        wait = retry_after_seconds(retry_after)
        when = f"retry after {wait:g} s" if wait is not None else "wait a while before retrying"
        return f"{head}: rate limited; {when}, or use another source"
    if status in (401, 403):
        hint = f"; check {key_hint}" if key_hint else ""
        return f"{head}: not allowed{hint}"
    if status == 404 or status == 410:
        return f"{head}: no such page; check the URL or search for another source"
    if status >= 500:
        return f"{head}: the server failed; try again later or use another source"
    return f"{head}; check the request"
