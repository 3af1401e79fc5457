"""What the later journal tables do (prompt heads, threads, folder changes), on SQLite and on PostgreSQL alike:
a feature merged after the PostgreSQL journal must not be SQLite-only."""

from __future__ import annotations

import pytest

from agentd import Goal
from agentd.errors import AgentdError
from agentd.folder_changes import FolderChanges, undo_run
from agentd.folders import attach
from agentd.testing import call, feedback, plan


@pytest.fixture
def user(tmp_path):
    root = tmp_path / "user"
    (root / "reports").mkdir(parents=True)
    (root / "reports" / "week.txt").write_text("old report")
    return root


def test_prompt_heads_threads_and_folder_changes_on_each_journal(scripted, journal_url, user):
    write = [plan(("change", "write_file")), call("write_file", path="reports/week.txt", content="new report"),
             feedback("done", final_answer="updated reports/week.txt")]
    app, _ = scripted(write * 2, settings={"journal_url": journal_url, "workspace.allowed_dirs": [str(user)]})
    assert app.journal.dialect == journal_url.split(":")[0]
    first = app.engine.submit(Goal(text="update reports/week.txt", dirs=attach([f"{user}/reports:rw"], app.config)))
    assert app.engine.run(first)["status"] == "succeeded"

    # the prompt head is stored once and put back in front of every model phase's prompt
    prompts = [p["prompt"] for p in app.journal.phases(first) if p["kind"] in ("plan", "act")]
    assert len(prompts) == 2 and all(p[0] == prompts[0][0] and p[0][0] == "system" for p in prompts)

    # a follow-up joins the thread; while it is queued the thread takes no other
    second = app.engine.submit(Goal(text="update it again", continues=first))
    assert app.journal.get_run(second)["thread_id"] == first
    with pytest.raises(AgentdError, match="of this conversation is still queued"):
        app.engine.submit(Goal(text="and once more", continues=first))
    assert app.engine.run(second)["status"] == "succeeded"

    # the folder changes are journaled and undone
    assert [c["file"] for c in FolderChanges(app.journal).changed_files(first)] == ["reports/week.txt"]
    undo_run(app.config, app.journal, second)
    undo_run(app.config, app.journal, first)
    assert (user / "reports" / "week.txt").read_text() == "old report"
