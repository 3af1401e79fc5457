"""Address policy and guarded fetching: schemes, private addresses, deny lists, pinning, redirect hops."""

from __future__ import annotations

import socket
import threading

import httpx
import pytest
from agentd_web.fetcher import Fetcher
from agentd_web.guard import AddressPolicy, host_matches
from agentd_web.settings import WebSettings, load_settings

from agentd import ToolError

PUBLIC = "93.184.216.34"


def resolver_for(table):
    """A fake DNS: host -> list of addresses; unknown names fail like getaddrinfo does."""

    def resolve(host, port):
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    return resolve


def policy(**settings):
    return AddressPolicy.from_settings(load_settings(settings))


@pytest.mark.parametrize(
    ("host", "port", "pattern", "expected"),
    [
        ("api.example.com", 443, "api.example.com", True),
        ("API.Example.com.", 443, "api.example.com", True),
        ("evil-api.example.com", 443, "api.example.com", False),
        ("a.b.example.com", 443, "*.example.com", True),
        ("example.com", 443, "*.example.com", False),
        ("notexample.com", 443, "*.example.com", False),
        ("127.0.0.1", 8080, "127.0.0.1:8080", True),
        ("127.0.0.1", 8081, "127.0.0.1:8080", False),
        ("::1", 80, "[::1]:80", True),
        ("::1", 80, "::1", True),
    ],
)
def test_host_patterns(host, port, pattern, expected):
    assert host_matches(host, port, pattern) is expected


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/x", "gopher://x", "/relative/path", "http://"]
)
def test_only_absolute_http_urls(url):
    with pytest.raises(ToolError, match="http"):
        policy().parse(url)


def test_public_address_passes_and_is_pinned():
    target = policy().check("https://example.com/page?q=1", resolver_for({"example.com": [PUBLIC]}))
    assert (target.host, target.port, target.address) == ("example.com", 443, PUBLIC)


@pytest.mark.parametrize(
    "addresses",
    [
        ["10.0.0.5"],
        ["192.168.1.1"],
        ["127.0.0.1"],
        ["100.64.0.1"],  # carrier-grade NAT
        ["::1"],
        ["fd12::1"],
        ["::ffff:127.0.0.1"],  # IPv4-mapped loopback
        ["64:ff9b::a00:1"],  # NAT64 of 10.0.0.1
        ["0.0.0.0"],
        ["224.0.0.1"],
        [PUBLIC, "10.1.2.3"],  # one bad address among good ones is enough
    ],
)
def test_non_public_addresses_are_refused_by_default(addresses):
    with pytest.raises(ToolError, match="allow_private"):
        policy().check("http://site.test/", resolver_for({"site.test": addresses}))


def test_ip_literals_are_checked_without_dns():
    def no_dns(host, port):
        raise AssertionError("an IP literal must not be resolved")

    with pytest.raises(ToolError, match="non-public"):
        policy().check("http://127.0.0.1:8080/", no_dns)
    with pytest.raises(ToolError, match="non-public"):
        policy().check("http://[::1]/", no_dns)
    assert policy().check(f"http://{PUBLIC}/", no_dns).address == PUBLIC


def test_allow_private_lets_loopback_through_but_not_the_deny_list():
    open_policy = policy(allow_private=True)
    assert open_policy.check("http://127.0.0.1:9/", resolver_for({})).address == "127.0.0.1"
    # Cloud metadata stays refused: it is in the default deny list.
    with pytest.raises(ToolError, match="denied network 169.254.0.0/16"):
        open_policy.check("http://169.254.169.254/latest/meta-data/", resolver_for({}))
    with pytest.raises(ToolError, match="denied network"):
        open_policy.check("http://meta.test/", resolver_for({"meta.test": ["::ffff:169.254.169.254"]}))


def test_deny_list_takes_networks_and_host_patterns():
    strict = policy(deny=["203.0.113.0/24", "*.tracker.test", "blocked.test"])
    with pytest.raises(ToolError, match="deny list"):
        strict.parse("https://ads.tracker.test/x")
    with pytest.raises(ToolError, match="deny list"):
        strict.check("http://blocked.test/", resolver_for({"blocked.test": [PUBLIC]}))
    with pytest.raises(ToolError, match="203.0.113.0/24"):
        strict.check("http://cdn.test/", resolver_for({"cdn.test": ["203.0.113.9"]}))
    assert strict.check("http://ok.test/", resolver_for({"ok.test": [PUBLIC]})).address == PUBLIC


def test_trusted_hosts_skip_only_the_private_rule():
    settings = load_settings({"deny": ["10.9.0.0/16"]})
    trusted = AddressPolicy.from_settings(settings, trusted_hosts=["nas.lan:8123"])
    assert trusted.check("http://nas.lan:8123/api", resolver_for({"nas.lan": ["192.168.1.20"]})).port == 8123
    with pytest.raises(ToolError, match="allow_private"):  # another port of the same host is not trusted
        trusted.check("http://nas.lan:22/", resolver_for({"nas.lan": ["192.168.1.20"]}))
    with pytest.raises(ToolError, match="denied network"):
        trusted.check("http://nas.lan:8123/", resolver_for({"nas.lan": ["10.9.1.1"]}))


def test_dns_failure_is_a_clear_error():
    with pytest.raises(ToolError, match=r"could not resolve host 'nowhere.test' \(DNS lookup failed"):
        policy().check("http://nowhere.test/", resolver_for({}))


# -- Fetcher over httpx.MockTransport --------------------------------------------------------------------


def fetcher(handler, table, **settings):
    s = load_settings(settings)
    return Fetcher(
        s,
        AddressPolicy.from_settings(s),
        resolver=resolver_for(table),
        transport=httpx.MockTransport(handler),
    )


def test_requests_are_pinned_to_the_checked_address_with_the_original_host_header():
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(200, text="hello", headers={"content-type": "text/plain"})

    got = fetcher(handler, {"example.com": [PUBLIC]}).request("GET", "https://example.com:8443/a?b=1")
    assert got.content == b"hello" and got.url == "https://example.com:8443/a?b=1"
    request = seen[0]
    assert request.url.host == PUBLIC and request.url.port == 8443 and request.url.path == "/a"
    assert request.headers["host"] == "example.com:8443"
    assert request.extensions["sni_hostname"] == "example.com"


def test_every_redirect_hop_is_checked_before_it_is_sent():
    seen = []

    def handler(request):
        seen.append(request.headers["host"])
        return httpx.Response(302, headers={"location": "http://internal.test/admin"})

    table = {"example.com": [PUBLIC], "internal.test": ["10.0.0.7"]}
    with pytest.raises(ToolError, match="internal.test resolves to 10.0.0.7"):
        fetcher(handler, table).request("GET", "http://example.com/")
    assert seen == ["example.com"]  # the private hop was never contacted


def test_redirects_are_capped():
    def handler(request):
        n = int(request.url.path.strip("/") or 0)
        return httpx.Response(301, headers={"location": f"/{n + 1}"})

    with pytest.raises(ToolError, match="more than 2 times"):
        fetcher(handler, {"loop.test": [PUBLIC]}, max_redirects=2).request("GET", "http://loop.test/0")

    def three(request):
        n = int(request.url.path.strip("/"))
        if n < 2:
            return httpx.Response(302, headers={"location": f"/{n + 1}"})
        return httpx.Response(200, text="end", headers={"content-type": "text/plain"})

    got = fetcher(three, {"loop.test": [PUBLIC]}, max_redirects=2).request("GET", "http://loop.test/0")
    assert got.content == b"end" and got.redirects == ["http://loop.test/1", "http://loop.test/2"]


def test_credentials_do_not_follow_a_redirect_to_another_origin_and_303_turns_post_into_get():
    seen = []

    def handler(request):
        seen.append(
            (
                request.method,
                request.headers.get("host"),
                request.headers.get("authorization"),
                request.content,
            )
        )
        if request.headers["host"] == "api.test":
            return httpx.Response(303, headers={"location": "http://other.test/result"})
        return httpx.Response(200, json={"ok": True})

    table = {"api.test": [PUBLIC], "other.test": [PUBLIC]}
    fetcher(handler, table).request(
        "POST", "http://api.test/job", headers={"Authorization": "Bearer s3cret"}, json={"a": 1}
    )
    assert seen[0] == ("POST", "api.test", "Bearer s3cret", b'{"a":1}')
    assert seen[1] == ("GET", "other.test", None, b"")


def test_bodies_are_cut_at_max_bytes():
    def handler(request):
        return httpx.Response(200, content=b"a" * 5000, headers={"content-type": "text/plain"})

    got = fetcher(handler, {"big.test": [PUBLIC]}, max_bytes=1024).request("GET", "http://big.test/")
    assert got.truncated and len(got.content) == 1024


def test_transport_failures_become_tool_errors():
    def refuse(request):
        raise httpx.ConnectError("[Errno 101] Network is unreachable", request=request)

    with pytest.raises(ToolError, match="could not connect to example.com.*Network is unreachable"):
        fetcher(refuse, {"example.com": [PUBLIC]}).request("GET", "http://example.com/")

    def stall(request):
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(ToolError, match="did not answer in time"):
        fetcher(stall, {"example.com": [PUBLIC]}).request("GET", "http://example.com/")


def test_a_cancelled_run_stops_the_request():
    cancel = threading.Event()
    cancel.set()
    s = WebSettings()
    f = Fetcher(
        s,
        AddressPolicy.from_settings(s),
        resolver=resolver_for({"x.test": [PUBLIC]}),
        transport=httpx.MockTransport(lambda r: httpx.Response(200)),
        cancel=cancel,
    )
    with pytest.raises(ToolError, match="cancelled"):
        f.request("GET", "http://x.test/")
