"""The web plugin as agentd loads it: tool registration, settings errors, doctor checks, backend plugins."""

from __future__ import annotations

import os
import sys
import textwrap
import types
from pathlib import Path
from unittest import mock

import agentd_web
import httpx
import pytest
from agentd_web.backends import SearchResult
from agentd_web.hookspecs import web_hookimpl
from agentd_web.registry import load_backends
from agentd_web.settings import WebSettings, load_settings
from agentd_web.tools import WebTools

from agentd import ToolContext
from agentd.config import load_config
from agentd.tools import execute


def test_tools_are_registered_with_schemas_and_network_side_effect(scripted):
    app, _ = scripted(settings={"plugins.web": {"http_allow_hosts": ["api.example.com"]}})
    for name in ("web_search", "fetch_url", "http_request"):
        tool = app.tools[name]
        assert tool.plugin == "web" and tool.side_effects == ("network",) and tool.wants_ctx
        assert "ctx" not in tool.parameters["properties"]
    assert app.tools["web_search"].parameters["required"] == ["query"]
    assert app.tools["web_search"].parameters["properties"]["max_results"]["default"] == 5
    assert app.tools["fetch_url"].parameters["required"] == ["url"]
    assert set(app.tools["http_request"].parameters["properties"]) == {"method", "url", "headers", "json"}
    assert app.host.infos["web"].error is None


@pytest.mark.filterwarnings("ignore:Field name .json.:UserWarning")
def test_http_request_is_not_offered_until_a_host_is_allowed(scripted, tmp_path):
    app, _ = scripted()
    assert "web_search" in app.tools and "http_request" not in app.tools
    reasons = [
        r
        for plugin, rs in app.host.call_each("unavailable_tools", config=app.config)
        if plugin == "web"
        for r in rs
    ]
    assert any(r.startswith("http_request:") and "plugins.web.http_allow_hosts" in r for r in reasons)
    # The tool itself refuses too, should it be called with an empty allowlist.
    tools = WebTools(tmp_path, load_backends(WebSettings(), tmp_path), environ={})
    from agentd.tools import Tool

    ctx = ToolContext(run_id="r", workspace=tmp_path, settings={})
    result = execute(
        Tool.from_function(tools.http_request), {"method": "GET", "url": "https://x.example/"}, ctx
    )
    assert "plugins.web.http_allow_hosts is empty" in result.error


def test_unavailable_tools_names_missing_keys(tmp_path):
    from agentd_web.doctor import unavailable_tools

    config = load_config(home=tmp_path, env={}, overrides={"plugins.web": {"search_backend": "tavily"}})
    [search_reason, http_reason] = unavailable_tools(config, environ={})
    assert (
        search_reason.startswith("web_search: no Tavily API key")
        and "plugins.web.tavily_api_key" in search_reason
    )
    assert http_reason.startswith("http_request:")
    allowed = load_config(
        home=tmp_path, env={}, overrides={"plugins.web": {"http_allow_hosts": ["a.example"]}}
    )
    assert unavailable_tools(allowed, environ={}) == []  # ddgs needs no key


def test_a_bad_setting_is_named_when_a_tool_is_used(scripted, tmp_path):
    # The config refuses such a table when it loads (test_config_plugins.py); a tool handed one anyway says so.
    app, _ = scripted()
    ctx = ToolContext(run_id="r", workspace=tmp_path, settings={"max_bytes": "lots", "colour": "red"})
    result = execute(app.tools["fetch_url"], {"url": "https://example.com/"}, ctx)
    assert "plugins.web.max_bytes" in result.error and "plugins.web.colour: unknown key" in result.error


def test_default_cache_dir_is_under_home(tmp_path):
    assert WebSettings().resolved_cache_dir(tmp_path) == tmp_path / "cache" / "web"
    assert load_settings({"cache_dir": "c"}).resolved_cache_dir(tmp_path) == tmp_path / "c"
    assert load_settings({"cache_dir": "/abs/c"}).resolved_cache_dir(tmp_path) == Path("/abs/c")


def _checks(config, environ):
    from agentd_web.doctor import doctor_checks

    # Configuration only: reachability has its own loopback test.
    with mock.patch.dict(os.environ, {"AGENTD_DOCTOR_OFFLINE": "1"}):
        return {name: (ok, message) for name, ok, message in doctor_checks(config, environ)}


def test_doctor_names_the_missing_key(tmp_path):
    config = load_config(home=tmp_path, env={}, overrides={"plugins.web": {"search_backend": "brave"}})
    checks = _checks(config, environ={})
    ok, message = checks["search backend brave"]
    assert not ok and "plugins.web.brave_api_key" in message and "BRAVE_API_KEY" in message
    assert checks["settings"][0] and checks["page extraction"][0] and checks["cache"][0]
    assert _checks(config, environ={"BRAVE_API_KEY": "x"})["search backend brave"][0]


def test_doctor_reports_bad_settings_and_unknown_backends(tmp_path):
    bad = load_config(home=tmp_path, env={}, overrides={"plugins.web": {"allow_privat": True}}, validate_plugins=False)
    [(name, ok, message)] = agentd_web.doctor_checks(bad)
    assert name == "settings" and not ok and "plugins.web.allow_privat: unknown key" in message
    unknown = load_config(home=tmp_path, env={}, overrides={"plugins.web": {"search_backend": "gopher"}})
    ok, message = _checks(unknown, {})["search backend gopher"]
    assert not ok and "choose one of: brave, ddgs, searxng, tavily" in message


def test_doctor_searxng_needs_its_url(tmp_path):
    config = load_config(home=tmp_path, env={}, overrides={"plugins.web": {"search_backend": "searxng"}})
    ok, message = _checks(config, {})["search backend searxng"]
    assert not ok and "plugins.web.searxng_url" in message


# -- third-party search backends ------------------------------------------------------------------------


class EchoBackend:
    """A backend that answers with the query it was given, and the options table it was configured with."""

    def search(self, query, max_results, context):
        prefix = context.options("echo").get("prefix", "")
        return [
            SearchResult(title=f"{prefix}{query} {i}", url=f"https://echo.example/{i}")
            for i in range(max_results)
        ]


def _run_search(tmp_path, registry, settings):
    tools = WebTools(tmp_path, registry, environ={})
    ctx = ToolContext(run_id="r", workspace=tmp_path, settings={"cache_ttl_s": 0, **settings})
    from agentd.tools import Tool

    return execute(Tool.from_function(tools.web_search), {"query": "owls", "max_results": 2}, ctx)


def test_a_plugin_adds_a_backend_through_the_hook(tmp_path):
    plugin = types.SimpleNamespace(
        __name__="echo_plugin",
        register_search_backends=web_hookimpl(lambda register: register("echo", EchoBackend())),
    )
    registry = load_backends(WebSettings(), tmp_path, extra_plugins=(plugin,))
    assert (
        registry.names() == ["brave", "ddgs", "echo", "searxng", "tavily"]
        and registry.sources["echo"] == "echo_plugin"
    )
    result = _run_search(
        tmp_path, registry, {"search_backend": "echo", "backends": {"echo": {"prefix": ">"}}}
    )
    assert result.ok, result.error
    assert [(r["title"], r["rank"]) for r in result.data["results"]] == [(">owls 0", 1), (">owls 1", 2)]


BACKEND_FILE = textwrap.dedent(
    """
    from agentd_web import web_hookimpl
    from agentd_web.backends import SearchResult

    class Dropin:
        def problem(self, settings, environ):
            return None if environ.get("DROPIN_TOKEN") else "set DROPIN_TOKEN"

        def search(self, query, max_results, context):
            data = context.request_json("Dropin", "GET", "https://dropin.example/q", params={"q": query})
            return [dict(title=row["t"], url=row["u"], snippet="", engine="dropin") for row in data]

    @web_hookimpl
    def register_search_backends(register):
        register("dropin", Dropin())
    """
)


def test_backend_plugins_setting_loads_a_file_under_home(tmp_path):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "dropin_search.py").write_text(BACKEND_FILE, encoding="utf-8")
    settings = load_settings({"backend_plugins": ["plugins/dropin_search.py", "no_such_module_xyz"]})
    registry = load_backends(settings, tmp_path)
    assert "dropin" in registry.names()
    assert len(registry.problems) == 1 and "no_such_module_xyz" in registry.problems[0]

    def handler(request):
        return httpx.Response(200, json=[{"t": request.url.params["q"].upper(), "u": "https://d.example/1"}])

    tools = WebTools(tmp_path, registry, search_transport=httpx.MockTransport(handler), environ={})
    from agentd.tools import Tool

    tool = Tool.from_function(tools.web_search)
    ctx = ToolContext(run_id="r", workspace=tmp_path, settings={"search_backend": "dropin", "cache_ttl_s": 0})
    assert execute(tool, {"query": "owls"}, ctx).error == "web search is not set up: set DROPIN_TOKEN"
    tools.environ = {"DROPIN_TOKEN": "1"}
    result = execute(tool, {"query": "owls"}, ctx)
    assert result.ok and result.data["results"][0]["title"] == "OWLS"


def test_backends_are_found_through_the_agentd_web_entry_point_group(tmp_path, monkeypatch):
    site = tmp_path / "site"
    dist = site / "fake_web_backend-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fake-web-backend\nVersion: 0.1\n", encoding="utf-8"
    )
    (dist / "entry_points.txt").write_text("[agentd_web]\nepfake = agentd_web_epfake\n", encoding="utf-8")
    (site / "agentd_web_epfake.py").write_text(BACKEND_FILE.replace('"dropin"', '"epfake"'), encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "agentd_web_epfake", raising=False)
    registry = load_backends(WebSettings(), tmp_path)
    assert "epfake" in registry.names() and registry.sources["epfake"] == "entry point epfake"


def test_a_broken_backend_plugin_is_reported_and_the_rest_keep_working(tmp_path):
    def explode(register):
        raise RuntimeError("boom")

    broken = types.SimpleNamespace(__name__="broken", register_search_backends=web_hookimpl(explode))
    no_search = types.SimpleNamespace(
        __name__="nosearch", register_search_backends=web_hookimpl(lambda register: register("bad", object()))
    )
    registry = load_backends(WebSettings(), tmp_path, extra_plugins=(broken, no_search))
    assert "bad" not in registry.names() and "ddgs" in registry.names()
    assert any("RuntimeError: boom" in p for p in registry.problems)
    assert any("no search(query, max_results, context) method" in p for p in registry.problems)
