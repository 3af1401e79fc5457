"""HTTP for model-chosen URLs: address checks on every hop, pinned connections, size and time limits.

Redirects are followed by hand (never by httpx) so each hop is checked like the first; the connection goes to
the address that was checked, with the original name in the Host header and in TLS SNI (certificates are still
verified against the name).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from agentd import ToolError

from .errors import transport_error_message
from .guard import AddressPolicy, Resolver, Target, system_resolver
from .settings import WebSettings

REDIRECTS = {301, 302, 303, 307, 308}
# Headers that must not follow a redirect to another origin.
CREDENTIAL_HEADERS = {"authorization", "proxy-authorization", "cookie"}


@dataclass
class Fetched:
    """A finished response: final URL, status, headers, (possibly cut) body, and the redirect hops taken."""

    url: str
    status: int
    reason: str
    headers: httpx.Headers
    content: bytes
    truncated: bool = False
    redirects: list[str] = field(default_factory=list)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


class Fetcher:
    """Sends one request (plus its redirects) within a time budget and a byte limit; failures are ToolErrors."""

    def __init__(
        self,
        settings: WebSettings,
        policy: AddressPolicy,
        *,
        resolver: Resolver = system_resolver,
        transport: httpx.BaseTransport | None = None,
        cancel: threading.Event | None = None,
        budget_s: float | None = None,
        check_hop: Callable[[Target], None] | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.resolver = resolver
        self.transport = transport
        self.cancel = cancel or threading.Event()
        self.budget_s = budget_s or settings.timeout_s
        self.check_hop = check_hop

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        json: Any = None,
        before_body: Callable[[httpx.Response], None] | None = None,
    ) -> Fetched:
        """Send ``method url``, following at most ``max_redirects`` redirects, each checked before it is sent."""
        deadline = time.monotonic() + self.budget_s
        headers = {k: v for k, v in (headers or {}).items() if k.lower() != "host"}
        hops: list[str] = []
        current: str | httpx.URL = url
        with httpx.Client(transport=self.transport, follow_redirects=False, trust_env=False) as client:
            for _ in range(self.settings.max_redirects + 1):
                target = self.policy.check(current, self.resolver)
                if self.check_hop is not None:
                    self.check_hop(target)
                response = self._send(client, method, target, headers, json, deadline)
                try:
                    location = response.headers.get("location")
                    if response.status_code in REDIRECTS and location:
                        nxt = target.url.join(location)
                        hops.append(str(nxt))
                        if response.status_code == 303 or (
                            response.status_code in (301, 302) and method == "POST"
                        ):
                            method, json = ("HEAD" if method == "HEAD" else "GET"), None
                        if (nxt.scheme, nxt.host, nxt.port) != (
                            target.url.scheme,
                            target.url.host,
                            target.url.port,
                        ):
                            headers = {
                                k: v for k, v in headers.items() if k.lower() not in CREDENTIAL_HEADERS
                            }
                        current = nxt
                        continue
                    if before_body is not None:
                        before_body(response)
                    content, truncated = self._read(response, target, deadline)
                    return Fetched(
                        url=str(target.url),
                        status=response.status_code,
                        reason=response.reason_phrase,
                        headers=response.headers,
                        content=content,
                        truncated=truncated,
                        redirects=hops,
                    )
                finally:
                    response.close()
        raise ToolError(
            f"{url} redirected more than {self.settings.max_redirects} times (plugins.web.max_redirects); "
            "try the final address directly or another source"
        )

    def _send(
        self,
        client: httpx.Client,
        method: str,
        target: Target,
        headers: dict[str, str],
        json: Any,
        deadline: float,
    ) -> httpx.Response:
        remaining = self._remaining(target, deadline)
        pinned = target.url.copy_with(host=target.address)
        all_headers = {
            "User-Agent": self.settings.user_agent,
            **headers,
            "Host": target.url.netloc.decode("ascii"),
        }
        # SNI and certificate checks use the name, while the socket goes to the checked address.
        extensions = {"sni_hostname": target.host} if target.url.scheme == "https" else {}
        request = client.build_request(
            method,
            pinned,
            headers=all_headers,
            json=json,
            timeout=httpx.Timeout(remaining),
            extensions=extensions,
        )
        try:
            return client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise ToolError(transport_error_message(exc, target.host)) from None

    def _read(self, response: httpx.Response, target: Target, deadline: float) -> tuple[bytes, bool]:
        limit = self.settings.max_bytes
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_bytes():
                self._remaining(target, deadline)
                if size + len(chunk) > limit:
                    chunks.append(chunk[: limit - size])
                    return b"".join(chunks), True
                chunks.append(chunk)
                size += len(chunk)
        except httpx.HTTPError as exc:
            raise ToolError(transport_error_message(exc, target.host)) from None
        return b"".join(chunks), False

    def _remaining(self, target: Target, deadline: float) -> float:
        """Seconds left in the budget; a ToolError once it is spent or the run was cancelled."""
        if self.cancel.is_set():
            raise ToolError("the request was cancelled because the run is stopping")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ToolError(
                f"{target.host} did not finish answering within {self.budget_s:g} s (plugins.web.timeout_s); "
                "try again later or another source"
            )
        return remaining
