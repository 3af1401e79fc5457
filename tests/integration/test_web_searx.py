"""web_search through a real searx (Debian's searx-run) whose engine is the loopback fixture site."""

from __future__ import annotations

import pytest
from web_fixtures import fixture_site, free_port, rank, searx  # noqa: F401

from agentd import ToolContext
from agentd.tools import execute

pytestmark = pytest.mark.integration


@pytest.fixture
def search(scripted, searx):  # noqa: F811
    """search(query, max_results=5, url=None) -> ToolResult from the plugin's web_search over searx."""

    def run(query, max_results=5, url=None):
        settings = {
            "search_backend": "searxng",
            "searxng_url": url or searx.url,
            "cache_ttl_s": 0,
            "timeout_s": 10,
        }
        app, _ = scripted(settings={"plugins.web": settings})
        ctx = ToolContext(
            run_id="t", workspace=app.config.workspaces, settings=app.config.plugin_settings("web")
        )
        return execute(app.tools["web_search"], {"query": query, "max_results": max_results}, ctx)

    return run


@pytest.mark.parametrize(
    "query", ["solar cells efficiency", "wind power for the grid", "bread in a hot oven with steam"]
)
def test_searx_returns_the_engines_ranking(search, fixture_site, query):  # noqa: F811
    result = search(query)
    assert result.ok, result.error
    expected = [f"{fixture_site.base_url}/docs/{doc.slug}" for doc in rank(query)]
    assert expected  # each query matches at least one fixture document
    assert [r["url"] for r in result.data["results"]] == expected
    top = result.data["results"][0]
    assert top["engine"] == "loopback" and top["rank"] == 1
    assert top["title"] == rank(query)[0].title and top["snippet"] == rank(query)[0].paragraphs[0]
    assert result.output.startswith(f"Results for {query!r} (searxng):\n1. {top['title']}\n   {top['url']}")


def test_searx_result_count_is_capped(search):
    query = "solar wind bread"  # matches every document
    assert len(search(query).data["results"]) == 3
    assert len(search(query, max_results=2).data["results"]) == 2


def test_no_hits_is_an_empty_result(search):
    result = search("zebra xylophone")
    assert result.ok and result.data["results"] == []
    assert result.output.startswith("No results for 'zebra xylophone' from searxng")


def test_a_failing_engine_behind_searx_is_reported_not_raised(search):
    result = search("malformed")  # the fixture engine answers broken JSON to this query
    assert result.ok and result.data["results"] == []
    assert "Note: engine loopback did not answer" in result.output


def test_searx_not_running_is_a_clear_error(search):
    result = search("solar", url=f"http://127.0.0.1:{free_port()}")
    assert "could not connect to SearxNG (127.0.0.1)" in result.error
