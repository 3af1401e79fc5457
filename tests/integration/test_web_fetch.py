"""fetch_url and http_request against a real loopback HTTP server, through the plugin as agentd loads it."""

from __future__ import annotations

import json

import agentd_web
import pytest
from web_fixtures import DOCS, fixture_site, free_port  # noqa: F401

from agentd import ToolContext
from agentd.tools import execute

pytestmark = pytest.mark.integration

SOLAR = DOCS[0]


@pytest.fixture
def web(scripted, fixture_site):  # noqa: F811
    """call(tool, settings=None, **args) -> ToolResult, on an app whose web plugin may reach loopback."""
    base = {"allow_private": True, "timeout_s": 3, "max_redirects": 5}
    made = {}

    def call(tool, settings=None, **args):
        key = json.dumps(settings or {}, sort_keys=True)
        if key not in made:
            made[key] = scripted(settings={"plugins.web": {**base, **(settings or {})}})[0]
        app = made[key]
        ctx = ToolContext(
            run_id="t", workspace=app.config.workspaces, settings=app.config.plugin_settings("web")
        )
        return execute(app.tools[tool], args, ctx)

    call.base = fixture_site.base_url
    call.site = fixture_site
    return call


def test_article_main_text_without_boilerplate(web):
    result = web("fetch_url", url=f"{web.base}/docs/solar")
    assert result.ok, result.error
    assert result.data["title"].startswith(SOLAR.title) and result.data["kind"] == "html"
    for paragraph in SOLAR.paragraphs:
        assert paragraph in result.output
    for boilerplate in (
        "Subscribe to our newsletter",
        "Accept all cookies",
        "Privacy policy",
        "bankers hate",
    ):
        assert boilerplate not in result.output
    assert result.output.startswith(f"Title: {result.data['title']}\nURL: {web.base}/docs/solar\n\n")


def test_json_text_and_declared_charset(web):
    data = web("fetch_url", url=f"{web.base}/data.json")
    assert (
        data.ok
        and data.data["kind"] == "json"
        and json.loads(data.output.split("\n\n", 1)[1])["population"] == 127001
    )
    text = web("fetch_url", url=f"{web.base}/plain.txt")
    assert text.ok and text.output.endswith("Plain text about loopback addresses.\nSecond line.")
    latin = web("fetch_url", url=f"{web.base}/latin1")
    assert latin.ok and "Café crème on the terrace" in latin.output


def test_redirect_chain_is_followed_up_to_the_cap(web):
    result = web("fetch_url", url=f"{web.base}/redirect/3")
    assert result.ok, result.error
    assert result.data["final_url"] == f"{web.base}/docs/solar" and len(result.data["redirects"]) == 3
    assert (
        f"(redirected from {web.base}/redirect/3)" in result.output and SOLAR.paragraphs[0] in result.output
    )
    too_long = web("fetch_url", url=f"{web.base}/redirect/9")
    assert "redirected more than 5 times (plugins.web.max_redirects)" in too_long.error


def test_a_redirect_to_a_denied_address_is_refused_at_that_hop(web):
    port = web.site.port
    result = web(
        "fetch_url",
        {"deny": ["127.0.0.2/32"]},
        url=f"{web.base}/redirect-to?url=http://127.0.0.2:{port}/docs/solar",
    )
    assert "127.0.0.2, inside the denied network 127.0.0.2/32" in result.error


def test_loopback_is_refused_with_the_default_settings(web):
    result = web("fetch_url", {"allow_private": False}, url=f"{web.base}/docs/solar")
    assert "127.0.0.1, a private, loopback or otherwise non-public address" in result.error
    assert "plugins.web.allow_private" in result.error


def test_slow_and_dripping_servers_hit_the_time_limit(web):
    slow = web("fetch_url", {"timeout_s": 1}, url=f"{web.base}/slow")
    assert "did not answer in time" in slow.error or "did not finish answering within 1 s" in slow.error
    drip = web("fetch_url", {"timeout_s": 1}, url=f"{web.base}/drip")
    assert "did not finish answering within 1 s (plugins.web.timeout_s)" in drip.error


def test_a_huge_page_is_read_up_to_max_bytes(web):
    result = web("fetch_url", {"max_bytes": 100_000, "max_chars": 5_000}, url=f"{web.base}/huge")
    assert result.ok, result.error
    assert result.data["truncated"] and result.data["cut"]
    assert (
        "only the first 100000 bytes were read" in result.output
        and "Loopback padding paragraph 00000" in result.output
    )
    assert "[... cut at 5000 characters (plugins.web.max_chars)]" in result.output


@pytest.mark.parametrize("path", ["/image.png", "/disguised", "/unlabeled"])
def test_binaries_are_refused(web, path):
    result = web("fetch_url", url=f"{web.base}{path}")
    assert "is binary content" in result.error and "HTML, plain text and JSON only" in result.error


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (404, "HTTP 404 Not Found: no such page"),
        (500, "the server failed"),
        (429, "rate limited; retry after 120 s"),
    ],
)
def test_error_statuses(web, status, expected):
    assert expected in web("fetch_url", url=f"{web.base}/status/{status}").error


def test_a_closed_port_is_a_connection_error(web):
    result = web("fetch_url", url=f"http://127.0.0.1:{free_port()}/")
    assert "could not connect to 127.0.0.1" in result.error


def test_pages_are_cached(web):
    url = f"{web.base}/plain.txt?cache-test"
    settings = {"cache_ttl_s": 3600}
    first = web("fetch_url", settings, url=url)
    hits = web.site.hits.count("/plain.txt")
    second = web("fetch_url", settings, url=url)
    assert first.ok and second.ok and not first.data["cached"] and second.data["cached"]
    assert second.output == first.output and web.site.hits.count("/plain.txt") == hits


def test_a_page_fetched_while_private_addresses_were_allowed_is_not_served_once_they_are_not(web, tmp_path):
    url = f"{web.base}/plain.txt?policy-test"
    shared = {"cache_ttl_s": 3600, "cache_dir": str(tmp_path / "shared-cache")}
    first = web("fetch_url", shared, url=url)
    again = web("fetch_url", {**shared, "timeout_s": 4}, url=url)  # another app, same policy: a cache hit
    assert first.ok and again.ok and again.data["cached"]
    hits = web.site.hits.count("/plain.txt")
    after = web("fetch_url", {**shared, "allow_private": False}, url=url)
    assert not after.ok and "allow_private" in after.error, after.output
    assert web.site.hits.count("/plain.txt") == hits


def test_cache_clear_makes_the_next_fetch_go_out(scripted, fixture_site):  # noqa: F811
    app, _ = scripted(settings={"plugins.web": {"allow_private": True}})
    ctx = ToolContext(run_id="t", workspace=app.config.workspaces, settings=app.config.plugin_settings("web"))
    url = f"{fixture_site.base_url}/data.json?clear-test"
    execute(app.tools["fetch_url"], {"url": url}, ctx)
    assert [e.kind for e in agentd_web.cache_list(app.config)] == ["fetch"]
    assert agentd_web.cache_clear(app.config) == 1
    before = fixture_site.hits.count("/data.json")
    again = execute(app.tools["fetch_url"], {"url": url}, ctx)
    assert not again.data["cached"] and fixture_site.hits.count("/data.json") == before + 1


# -- http_request ---------------------------------------------------------------------------------------


def test_http_request_to_an_allowed_host(web):
    port = web.site.port
    # allow_private stays off: naming the host in http_allow_hosts is what lets it through.
    settings = {"http_allow_hosts": [f"127.0.0.1:{port}"], "allow_private": False}
    result = web(
        "http_request",
        settings,
        method="post",
        url=f"{web.base}/api/echo",
        headers={"X-Token": "abc"},
        json={"city": "Loopback", "n": [1, 2]},
    )
    assert result.ok, result.error
    echoed = result.data["json"]
    assert echoed["method"] == "POST" and echoed["json"] == {"city": "Loopback", "n": [1, 2]}
    assert echoed["headers"]["x-token"] == "abc" and echoed["headers"]["host"] == f"127.0.0.1:{port}"
    assert result.output.startswith("HTTP 200 OK\ncontent-type: application/json")

    moved = web("http_request", settings, method="POST", url=f"{web.base}/api/moved", json={"a": 1})
    assert moved.ok and moved.data["json"]["method"] == "GET" and moved.data["json"]["json"] is None

    missing = web("http_request", settings, method="GET", url=f"{web.base}/status/404")
    assert "HTTP 404" in missing.error and "status 404" in missing.error and missing.data["status"] == 404


def test_http_request_refuses_other_hosts_and_ports(web):
    settings = {"http_allow_hosts": ["api.example.com"]}
    result = web("http_request", settings, method="GET", url=f"{web.base}/api/echo")
    assert f"127.0.0.1:{web.site.port} is not an allowed host for http_request" in result.error
    assert (
        "method 'BREW' is not supported"
        in web("http_request", settings, method="brew", url=f"{web.base}/").error
    )
