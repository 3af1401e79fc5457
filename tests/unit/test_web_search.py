"""web_search over each built-in backend, with httpx mock transports and a fake ddgs at the library boundary."""

from __future__ import annotations

import json

import httpx
import pytest
from agentd_web.backends import BRAVE_URL, TAVILY_URL
from agentd_web.registry import load_backends
from agentd_web.settings import WebSettings
from agentd_web.tools import WebTools

from agentd import ToolContext
from agentd.tools import Tool, execute


class Recorder:
    """A MockTransport handler answering from a list of responses, recording every request."""

    def __init__(self, *responses):
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request):
        self.requests.append(request)
        answer = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def search(tmp_path, settings, handler=None, environ=None, sleeps=None, **args):
    """Run web_search through agentd's executor, as the loop does; returns the ToolResult."""
    tools = WebTools(
        tmp_path,
        load_backends(WebSettings(), tmp_path),
        search_transport=httpx.MockTransport(handler) if handler else None,
        environ=environ or {},
        sleep=sleeps.append if sleeps is not None else _no_sleep,
    )
    ctx = ToolContext(run_id="r1", workspace=tmp_path, settings={"cache_ttl_s": 0, **settings})
    return execute(Tool.from_function(tools.web_search), {"query": "solar cells", **args}, ctx)


def _no_sleep(seconds):
    raise AssertionError("this test must not wait")


BRAVE_BODY = {
    "web": {
        "results": [
            {
                "title": "Solar <strong>cells</strong> record",
                "url": "https://a.example/solar",
                "description": "31 &amp; more",
            },
            {"title": "No URL here", "description": "skipped"},
            {"title": "Second", "url": "https://b.example/2", "description": "two"},
        ]
    }
}


def test_brave_request_shape_and_result_mapping(tmp_path):
    handler = Recorder(httpx.Response(200, json=BRAVE_BODY))
    result = search(tmp_path, {"search_backend": "brave", "brave_api_key": "k-123"}, handler, max_results=3)
    assert result.ok, result.error
    request = handler.requests[0]
    assert request.method == "GET" and str(request.url).startswith(BRAVE_URL)
    assert request.url.params["q"] == "solar cells" and request.url.params["count"] == "3"
    assert request.headers["x-subscription-token"] == "k-123"
    assert request.headers["accept"] == "application/json"
    assert result.data["results"] == [
        {
            "title": "Solar cells record",
            "url": "https://a.example/solar",
            "snippet": "31 & more",
            "engine": "brave",
            "rank": 1,
        },
        {"title": "Second", "url": "https://b.example/2", "snippet": "two", "engine": "brave", "rank": 2},
    ]
    assert "1. Solar cells record\n   https://a.example/solar" in result.output


def test_brave_key_from_the_environment_and_missing_key_named(tmp_path):
    handler = Recorder(httpx.Response(200, json=BRAVE_BODY))
    result = search(tmp_path, {"search_backend": "brave"}, handler, environ={"BRAVE_API_KEY": "from-env"})
    assert result.ok and handler.requests[0].headers["x-subscription-token"] == "from-env"

    missing = search(tmp_path, {"search_backend": "brave"}, Recorder(httpx.Response(500)))
    assert "plugins.web.brave_api_key" in missing.error and "BRAVE_API_KEY" in missing.error


def test_brave_without_web_section_is_an_empty_result_not_an_error(tmp_path):
    result = search(
        tmp_path,
        {"search_backend": "brave", "brave_api_key": "k"},
        Recorder(httpx.Response(200, json={"type": "search"})),
    )
    assert result.ok and result.data["results"] == []
    assert result.output.startswith("No results for 'solar cells' from brave")


def test_tavily_request_shape_and_result_mapping(tmp_path):
    body = {"results": [{"title": "T1", "url": "https://t.example/1", "content": "c1", "score": 0.9}]}
    handler = Recorder(httpx.Response(200, json=body))
    result = search(
        tmp_path, {"search_backend": "tavily", "tavily_api_key": "tvly-x"}, handler, max_results=4
    )
    assert result.ok, result.error
    request = handler.requests[0]
    assert request.method == "POST" and str(request.url) == TAVILY_URL
    assert request.headers["authorization"] == "Bearer tvly-x"
    assert json.loads(request.content) == {"query": "solar cells", "max_results": 4, "search_depth": "basic"}
    assert result.data["results"][0] == {
        "title": "T1",
        "url": "https://t.example/1",
        "snippet": "c1",
        "engine": "tavily",
        "rank": 1,
    }


def test_tavily_missing_key_is_named(tmp_path):
    result = search(tmp_path, {"search_backend": "tavily", "tavily_api_key_env": "MY_TAVILY"}, None)
    assert "plugins.web.tavily_api_key" in result.error and "MY_TAVILY" in result.error


def test_a_short_retry_after_is_waited_for_once(tmp_path):
    handler = Recorder(
        httpx.Response(429, headers={"retry-after": "1"}), httpx.Response(200, json=BRAVE_BODY)
    )
    sleeps: list[float] = []
    result = search(tmp_path, {"search_backend": "brave", "brave_api_key": "k"}, handler, sleeps=sleeps)
    assert result.ok and len(handler.requests) == 2 and sleeps == [1.0]


def test_a_long_retry_after_is_reported(tmp_path):
    handler = Recorder(httpx.Response(429, headers={"retry-after": "120"}))
    sleeps: list[float] = []
    result = search(tmp_path, {"search_backend": "brave", "brave_api_key": "k"}, handler, sleeps=sleeps)
    assert "HTTP 429" in result.error and "rate limited; retry after 120 s" in result.error
    assert sleeps == [] and len(handler.requests) == 1


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (httpx.Response(401), "not allowed; check plugins.web.brave_api_key"),
        (httpx.Response(503), "the server failed"),
        (httpx.Response(200, text="<html>oops</html>"), "malformed JSON (it starts '<html>oops</html>')"),
        (httpx.Response(200, json=["not", "an", "object"]), "not an object"),
    ],
)
def test_backend_failures_are_tool_errors(tmp_path, response, expected):
    result = search(tmp_path, {"search_backend": "brave", "brave_api_key": "k"}, Recorder(response))
    assert expected in result.error


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            httpx.ConnectError("[Errno -3] Temporary failure in name resolution"),
            "could not connect to Brave Search",
        ),
        (httpx.ConnectTimeout("timed out"), "connecting to Brave Search"),
        (httpx.ReadTimeout("timed out"), "did not answer in time"),
    ],
)
def test_no_network_and_timeouts_are_tool_errors(tmp_path, exc, expected):
    result = search(tmp_path, {"search_backend": "brave", "brave_api_key": "k"}, Recorder(exc))
    assert expected in result.error


def test_searxng_json_api(tmp_path):
    body = {
        "results": [
            {"url": "https://s.example/1", "title": "One", "content": "first", "engine": "wikipedia"},
            {"url": "https://s.example/2", "title": "Two", "content": "second", "engines": ["bing", "qwant"]},
        ],
        "unresponsive_engines": [["google", "timeout"]],
    }
    handler = Recorder(httpx.Response(200, json=body))
    result = search(tmp_path, {"search_backend": "searxng", "searxng_url": "http://sx.test:8888/"}, handler)
    assert result.ok, result.error
    request = handler.requests[0]
    assert str(request.url).startswith("http://sx.test:8888/search?")
    assert request.url.params["format"] == "json" and request.url.params["q"] == "solar cells"
    assert [r["engine"] for r in result.data["results"]] == ["wikipedia", "bing,qwant"]
    assert "Note: engine google did not answer (timeout)" in result.output


def test_searxng_without_json_format_gets_a_hint(tmp_path):
    result = search(
        tmp_path,
        {"search_backend": "searxng", "searxng_url": "http://sx.test"},
        Recorder(httpx.Response(403)),
    )
    assert "HTTP 403" in result.error and "search.formats" in result.error


def test_unknown_backend_lists_the_known_ones(tmp_path):
    result = search(tmp_path, {"search_backend": "altavista"}, None)
    assert "'altavista' is not a known search backend" in result.error
    assert "brave, ddgs, searxng, tavily" in result.error


class FakeDDGS:
    """Stands in for ddgs.DDGS: records its arguments and answers from the class attribute ``answer``."""

    answer: list | Exception = []
    calls: list = []

    def __init__(self, timeout=None, **kwargs):
        self.timeout = timeout

    def text(self, query, **kwargs):
        FakeDDGS.calls.append((query, kwargs, self.timeout))
        if isinstance(FakeDDGS.answer, Exception):
            raise FakeDDGS.answer
        return FakeDDGS.answer


@pytest.fixture
def fake_ddgs(monkeypatch):
    import ddgs

    FakeDDGS.calls = []
    monkeypatch.setattr(ddgs, "DDGS", FakeDDGS)
    return FakeDDGS


def test_ddgs_is_the_default_backend(tmp_path, fake_ddgs):
    fake_ddgs.answer = [
        {"title": "D1", "href": "https://d.example/1", "body": "b1"},
        {"title": "D2", "href": "https://d.example/2", "body": "b2"},
    ]
    result = search(tmp_path, {"safesearch": "strict", "timeout_s": 7}, None, max_results=2)
    assert result.ok, result.error
    query, kwargs, timeout = fake_ddgs.calls[0]
    assert query == "solar cells" and timeout == 7
    assert kwargs == {"max_results": 2, "region": "us-en", "safesearch": "on", "backend": "auto"}
    assert [(r["title"], r["url"], r["snippet"], r["engine"]) for r in result.data["results"]] == [
        ("D1", "https://d.example/1", "b1", "ddgs"),
        ("D2", "https://d.example/2", "b2", "ddgs"),
    ]


def test_ddgs_failures(tmp_path, fake_ddgs):
    from ddgs.exceptions import DDGSException, RatelimitException, TimeoutException

    fake_ddgs.answer = DDGSException("No results found.")
    empty = search(tmp_path, {}, None)
    assert empty.ok and empty.data["results"] == []

    fake_ddgs.answer = RatelimitException("202 Ratelimit")
    assert "rate-limited" in search(tmp_path, {}, None).error

    fake_ddgs.answer = TimeoutException("timed out")
    assert "did not answer in time" in search(tmp_path, {}, None).error

    fake_ddgs.answer = DDGSException("ConnectError: network unreachable")
    assert "there may be no network" in search(tmp_path, {}, None).error


def test_empty_query_and_result_limit(tmp_path, fake_ddgs):
    assert "query is empty" in search(tmp_path, {}, None, query="   ").error
    fake_ddgs.answer = [{"title": f"R{i}", "href": f"https://r.example/{i}", "body": ""} for i in range(30)]
    result = search(tmp_path, {"max_results_limit": 4}, None, max_results=50)
    assert fake_ddgs.calls[-1][1]["max_results"] == 4 and len(result.data["results"]) == 4


def test_results_are_cached_per_query(tmp_path):
    handler = Recorder(httpx.Response(200, json=BRAVE_BODY))
    tools = WebTools(
        tmp_path,
        load_backends(WebSettings(), tmp_path),
        search_transport=httpx.MockTransport(handler),
        environ={},
    )
    tool = Tool.from_function(tools.web_search)
    ctx = ToolContext(
        run_id="r1", workspace=tmp_path, settings={"search_backend": "brave", "brave_api_key": "k"}
    )
    first = execute(tool, {"query": "solar cells"}, ctx)
    second = execute(tool, {"query": "solar cells"}, ctx)
    other = execute(tool, {"query": "wind"}, ctx)
    assert len(handler.requests) == 2  # "solar cells" once, "wind" once
    assert not first.data["cached"] and second.data["cached"] and not other.data["cached"]
    assert second.data["results"] == first.data["results"]
    assert list((tmp_path / "cache" / "web").glob("*.json"))
