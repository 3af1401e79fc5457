"""A/B: a goal that can only be done well with a fact from an earlier run succeeds with memory, fails without.

The model is scripted but honest: it has no knowledge of its own and writes the report wherever the prompt it
is given says reports go, else to a default name. Memory (real Chroma, real offline embedding) is the only way
the fact can reach it, so the difference between the arms is memory's doing.
"""

from __future__ import annotations

import json
import re

import pytest

from agentd import Goal
from agentd.testing import feedback, make_test_app, plan

pytestmark = pytest.mark.integration

USUAL = "reports/team-weekly.md"


class ReportWriter:
    """Scripted replies for a 'write the team report' run: the path comes from the prompt, or a default."""

    def __init__(self) -> None:
        self.path = ""

    def plan(self, prompt: str) -> dict:
        found = re.findall(r"reports/[\w.-]+\.md", prompt)
        self.path = found[-1] if found else "team-report.md"
        return plan(("write the report", "write_file"))

    def act(self, prompt: str) -> dict:
        return {"tool": "write_file", "args": {"path": self.path, "content": "# Team report\n\nAll good.\n"}}

    def replies(self) -> list:
        return [self.plan, self.act, feedback("done", final_answer="wrote the report")]


def report_run(app, model, memory: bool) -> tuple[bool, str]:
    writer = ReportWriter()
    model.enqueue(writer.replies())
    run_id = app.engine.submit(
        Goal(text="Write this week's team report and put it where it usually goes", memory=memory)
    )
    outcome = app.engine.run(run_id)
    done_well = outcome["status"] == "succeeded" and (app.config.workspaces / run_id / USUAL).is_file()
    return done_well, run_id


@pytest.mark.parametrize("how", ["episode", "remember"])
def test_memory_on_succeeds_and_memory_off_fails(home, how):
    app, model = make_test_app(home, [])
    try:
        if how == "episode":  # the earlier run simply wrote the report; its episode records the file it made
            model.enqueue([plan(("write the report", "write_file")),
                           {"tool": "write_file", "args": {"path": USUAL, "content": "# Team report\n"}},
                           feedback("done", final_answer=f"wrote {USUAL}")])  # fmt: skip
            goal = f"Write the team report to {USUAL}"
        else:  # the user told an earlier run, which stored the preference with the remember tool
            model.enqueue([plan(("store the preference", "remember")),
                           {"tool": "remember", "args": {"note": f"Team reports always go to {USUAL}"}},
                           feedback("done", final_answer="noted")])  # fmt: skip
            goal = f"From now on team reports go to {USUAL}; remember that"
        first = app.engine.submit(Goal(text=goal))
        assert app.engine.run(first)["status"] == "succeeded"

        with_memory, run_a = report_run(app, model, memory=True)
        without_memory, run_b = report_run(app, model, memory=False)

        assert with_memory, json.dumps([p.get("request") for p in app.journal.phases(run_a)], indent=1)
        assert not without_memory
        assert (app.config.workspaces / run_b / "team-report.md").is_file(), (
            "without memory it guessed a name"
        )
        context = [p for p in app.journal.phases(run_a) if p["kind"] == "context"][0]["memories"]
        assert (
            any(USUAL in m and first in m for m in context)
            if how == "episode"
            else any(USUAL in m for m in context)
        )
    finally:
        app.close()
