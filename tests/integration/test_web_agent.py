"""A whole run: plan -> web_search (real searx) -> fetch_url (loopback page) -> write_file, scripted model.

The model's replies for steps 2 and 3 are computed from the prompt the loop builds, so the URL that is fetched
and the summary that is written come from the real search results and the real extracted page.
"""

from __future__ import annotations

import re

import pytest
from web_fixtures import DOCS, fixture_site, searx  # noqa: F401

from agentd import Goal
from agentd.testing import call, feedback, plan

pytestmark = pytest.mark.integration


def last_result(prompt: str) -> str:
    """The newest tool result in the conversation the loop sent (the text after its last "Result:")."""
    assert "Result: " in prompt, "no tool result in the prompt"
    body = prompt.rsplit("Result: ", 1)[1]
    return re.split(r"\n(?:Steps left|That was the last step)", body, maxsplit=1)[0]


def fetch_top_result(prompt: str) -> dict:
    """Act for step 2: fetch the first URL of the search results."""
    url = re.search(r"http://127\.0\.0\.1:\d+/docs/[a-z]+", last_result(prompt)).group(0)
    return call("fetch_url", url=url)


def write_summary(prompt: str) -> dict:
    """Act for step 3: write the page's first paragraph (as the loop showed it) to summary.md."""
    page = last_result(prompt)
    url = re.search(r"^URL: (\S+)$", page, re.M).group(1)
    lines = page.split("\n\n", 1)[1].splitlines()
    first_sentence = next(line for line in lines if line.endswith("."))  # skip the page's own heading
    return call("write_file", path="summary.md", content=f"# Summary\n\nSource: {url}\n\n{first_sentence}\n")


def test_search_fetch_and_summarise(scripted, searx, fixture_site):  # noqa: F811
    settings = {"search_backend": "searxng", "searxng_url": searx.url, "allow_private": True, "timeout_s": 10}
    app, model = scripted(
        [
            plan(
                ("search the web for tandem solar cell efficiency", "web_search"),
                ("read the top result", "fetch_url"),
                ("write summary.md", "write_file"),
            ),
            call("web_search", query="tandem solar cells efficiency", max_results=3),
            feedback("continue", "found results"),
            fetch_top_result,
            feedback("continue", "read the page"),
            write_summary,
            feedback("done", "summary written", final_answer="Wrote summary.md"),
        ],
        settings={"plugins.web": settings},
    )
    run_id = app.engine.submit(
        Goal(text="Find out how efficient tandem solar cells are and write summary.md")
    )
    outcome = app.engine.run(run_id)

    assert outcome["status"] == "succeeded", outcome
    calls = app.journal.tool_calls(run_id)
    assert [c["tool"] for c in calls] == ["web_search", "fetch_url", "write_file"]
    solar = DOCS[0]
    assert calls[1]["args"] == {"url": f"{fixture_site.base_url}/docs/{solar.slug}"}
    summary = (app.config.workspaces / run_id / "summary.md").read_text(encoding="utf-8")
    assert f"Source: {fixture_site.base_url}/docs/solar" in summary
    assert solar.paragraphs[0] in summary  # extracted from the real page, not boilerplate
    assert "cookies" not in summary
