"""Which URLs a model-chosen request may reach.

Only http and https; the host is resolved here and *every* address it resolves to is checked against the deny
rules (a name with one public and one private address is refused). The request is then pinned to the checked
address, so a second DNS answer (DNS rebinding) cannot swap in another one; redirects go through the same check
hop by hop (see fetcher.py).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import httpx

from agentd import ToolError

from .settings import WebSettings

Resolver = Callable[[str, int], list[str]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (IPv4 and IPv6), in the resolver's order, without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 scope id
        if address not in seen:
            seen.append(address)
    return seen


@dataclass(frozen=True)
class Target:
    """A URL that passed the checks, and the address the connection must use."""

    url: httpx.URL
    host: str
    port: int
    address: str


def host_matches(host: str, port: int, pattern: str) -> bool:
    """``example.com`` matches that host on any port, ``*.example.com`` its subdomains, ``host:8080`` one port."""
    host = host.lower().rstrip(".")
    pattern = pattern.strip().lower().rstrip(".")
    want_port: int | None = None
    if pattern.count(":") == 1:  # host:port (a bare IPv6 address has several colons)
        pattern, _, port_text = pattern.partition(":")
        want_port = int(port_text) if port_text.isdigit() else None
    elif pattern.startswith("[") and "]:" in pattern:
        pattern, _, port_text = pattern.partition("]:")
        pattern = pattern + "]"
        want_port = int(port_text) if port_text.isdigit() else None
    pattern = pattern.strip("[]")
    if want_port is not None and want_port != port:
        return False
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


def _is_private(ip: IPAddress) -> bool:
    """Not globally routable: loopback, RFC 1918, CGNAT, link-local, ULA, multicast, reserved, unspecified."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = (
            ip.ipv4_mapped
            or ip.sixtofour
            or (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None)
        )
        if embedded is not None and _is_private(embedded):
            return True
    return (not ip.is_global) or ip.is_multicast


def _variants(ip: IPAddress) -> list[IPAddress]:
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return [ip, mapped] if mapped else [ip]


@dataclass
class AddressPolicy:
    """The deny rules of one call: private addresses, denied networks and host patterns, trusted hosts."""

    allow_private: bool = False
    deny_networks: list[IPNetwork] = field(default_factory=list)
    deny_hosts: list[str] = field(default_factory=list)
    # Hosts the user listed by name (http_allow_hosts): the private-address rule does not apply to them.
    trusted_hosts: list[str] = field(default_factory=list)

    @classmethod
    def from_settings(cls, settings: WebSettings, trusted_hosts: Iterable[str] = ()) -> AddressPolicy:
        """Split ``deny`` into networks (anything that parses as an address or CIDR) and host patterns."""
        networks: list[IPNetwork] = []
        hosts: list[str] = []
        for entry in settings.deny:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                hosts.append(entry)
        return cls(settings.allow_private, networks, hosts, list(trusted_hosts))

    def cache_tag(self) -> str:
        """What of this policy decides which pages it may fetch; a cached page is served only to a policy with
        the same tag (a page fetched from the LAN while ``allow_private`` was on is not served once it is off)."""
        rules = json.dumps([self.allow_private, sorted(map(str, self.deny_networks)), sorted(self.deny_hosts),
                            sorted(self.trusted_hosts)])
        return hashlib.sha256(rules.encode()).hexdigest()[:16]

    def parse(self, url: str | httpx.URL) -> httpx.URL:
        """Checks that need no DNS: a valid http(s) URL with a host that no deny pattern names."""
        try:
            parsed = httpx.URL(str(url))
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise ToolError(
                f"not a valid URL: {url!r} ({exc}); give a full http:// or https:// URL"
            ) from None
        if parsed.scheme not in ("http", "https"):
            raise ToolError(
                f"only http and https URLs can be fetched, not {parsed.scheme or 'a relative URL'} ({url}); "
                "give a full http:// or https:// URL"
            )
        if not parsed.host:
            raise ToolError(f"URL {url!r} has no host; give a full http:// or https:// URL")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        for pattern in self.deny_hosts:
            if host_matches(parsed.host, port, pattern):
                raise ToolError(
                    f"refused: {parsed.host} is on the deny list (plugins.web.deny); use another source"
                )
        return parsed

    def check(self, url: str | httpx.URL, resolver: Resolver = system_resolver) -> Target:
        """Parse, resolve and check every address; return the Target pinned to the first one."""
        parsed = self.parse(url)
        host = parsed.host
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                addresses = [ipaddress.ip_address(a) for a in resolver(host, port)]
            except (socket.gaierror, UnicodeError) as exc:
                reason = getattr(exc, "strerror", None) or str(exc)
                raise ToolError(
                    f"could not resolve host {host!r} (DNS lookup failed: {reason}); check the URL's spelling, "
                    "or the network may be down"
                ) from None
        if not addresses:
            raise ToolError(f"host {host!r} resolved to no address; check the URL")
        trusted = any(host_matches(host, port, p) for p in self.trusted_hosts)
        for ip in addresses:
            self._check_address(host, ip, trusted)
        return Target(url=parsed, host=host, port=port, address=str(addresses[0]))

    def _check_address(self, host: str, ip: IPAddress, trusted: bool) -> None:
        for candidate in _variants(ip):
            for network in self.deny_networks:
                if candidate.version == network.version and candidate in network:
                    raise ToolError(
                        f"refused: {host} resolves to {ip}, inside the denied network {network} (plugins.web.deny)"
                    )
        if not self.allow_private and not trusted and _is_private(ip):
            raise ToolError(
                f"refused: {host} resolves to {ip}, a private, loopback or otherwise non-public address; "
                "reaching local networks is switched off (plugins.web.allow_private = false)"
            )
