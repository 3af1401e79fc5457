"""The dashboard's pages, forms and guard in-process (scripted model, Starlette's test client).

The same pages in a real browser against a real daemon: tests/integration/test_dashboard_browser.py.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from fastapi.testclient import TestClient

from agentd.daemon.api import create_api
from agentd.daemon.server import Daemon, DaemonSettings
from agentd.daemon.ui import mount_ui
from agentd.daemon.ui.auth import UiAuth, ui_guard
from agentd.daemon.worker import RunQueue
from agentd.records import Goal, RunStatus

ORIGIN = "http://127.0.0.1:8123"


def dashboard_daemon(app) -> Daemon:
    """A Daemon over ``app`` whose queue journals goals but has no workers (nothing runs)."""
    daemon = Daemon(app.config, DaemonSettings(), app=app)
    daemon.queue = RunQueue(app.engine)
    return daemon


def dashboard(app) -> tuple[TestClient, Daemon]:
    """The API with the dashboard mounted, as the daemon's Unix socket serves it."""
    daemon = dashboard_daemon(app)
    api = create_api(daemon)
    mount_ui(api, daemon)
    return TestClient(api), daemon


def add_runs(app, n: int, prefix: str = "goal") -> list[str]:
    return [app.journal.create_run(Goal(text=f"{prefix} {i:03d}"), app.config.workspaces, "local") for i in range(n)]


# -- pages ------------------------------------------------------------------------------------------------
def test_runs_page_is_paginated_searched_and_filtered(scripted):
    app, _ = scripted([])
    ids = add_runs(app, 120)
    app.journal.set_status(ids[5], RunStatus.failed)
    client, _ = dashboard(app)
    first = client.get("/").text
    assert ids[-1] in first and ids[-50] in first and ids[-51] not in first
    older = re.search(r'href="(/\?[^"]*before=[^"]+)"', first).group(1).replace("&amp;", "&")
    second = client.get(older).text
    assert ids[-51] in second and ids[-100] in second and ids[-1] not in second
    assert client.get("/", params={"q": "goal 007"}).text.count("/ui/runs/") == 2  # the id link and the goal link
    failed = client.get("/", params={"status": "failed"}).text
    assert ids[5] in failed and ids[6] not in failed and "failed (1)" in failed
    assert "No runs match" in client.get("/", params={"q": "100%_no"}).text


def test_the_verified_flag_comes_from_the_outcome_when_present(scripted):
    app, _ = scripted([])
    checked, unchecked, plain = add_runs(app, 3)
    app.journal.add_event(checked, "run_finished", {"status": "succeeded", "verified": True})
    app.journal.add_event(unchecked, "run_finished", {"status": "succeeded", "verified": False})
    app.journal.add_event(plain, "run_finished", {"status": "succeeded"})
    client, _ = dashboard(app)
    assert "✔ verified" in client.get(f"/ui/runs/{checked}").text
    assert "✘ unverified" in client.get(f"/ui/runs/{unchecked}").text
    page = client.get(f"/ui/runs/{plain}").text
    assert "verified" not in page.split("<dt>Verified</dt>")[1].split("</dd>")[0]


def test_new_goal_form_uses_the_cli_budgets_and_explains_bad_input(scripted):
    app, _ = scripted([])
    client, _ = dashboard(app)
    form = client.get("/ui/new").text
    for field in ("max_steps", "max_replans", "max_tokens", "max_seconds", "model", "memory"):
        assert f'name="{field}"' in form
    bad = client.post("/ui/runs", data={"text": "write it", "max_steps": "0"})
    assert bad.status_code == 400 and "max_steps: Input should be greater than or equal to 1" in bad.text
    assert "write it" in bad.text  # what was typed is kept
    assert client.post("/ui/runs", data={"text": "  "}).status_code == 400
    ok = client.post("/ui/runs", data={"text": "write it", "max_steps": "3", "memory": "on"}, follow_redirects=False)
    assert ok.status_code == 303
    run = app.journal.get_run(ok.headers["location"].rsplit("/", 1)[1])
    assert run["status"] == "queued" and run["goal_spec"]["budgets"]["max_steps"] == 3
    assert run["goal_spec"]["memory"] is True


def test_run_page_shows_the_wanted_call_and_approval_requeues_it(scripted):
    app, _ = scripted([])
    (run_id,) = add_runs(app, 1)
    call = {"tool": "write_file", "args": {"path": "a.txt", "content": "x"}}
    app.journal.add_phase(run_id, "approval_needed", {"call": call}, 0.0)
    app.journal.set_status(run_id, RunStatus.awaiting_approval)
    client, daemon = dashboard(app)
    assert 'write_file({&#34;args&#34;' not in client.get("/ui/approvals").text
    assert "write_file" in client.get("/ui/approvals").text and ">1<" in client.get("/").text  # nav badge
    decided = client.post(f"/ui/runs/{run_id}/deny", data={"next": "//evil.example/"}, follow_redirects=False)
    assert decided.headers["location"] == f"/ui/runs/{run_id}"  # never redirected off the site
    assert run_id in daemon.queue.pending


def test_cancel_from_the_run_page_and_an_unknown_run_explained(scripted):
    app, _ = scripted([])
    (run_id,) = add_runs(app, 1)
    client, _ = dashboard(app)
    assert "Cancel run" in client.get(f"/ui/runs/{run_id}").text
    client.post(f"/ui/runs/{run_id}/cancel", data={})
    assert app.journal.get_run(run_id)["status"] == "cancelled"
    assert "Cancel run" not in client.get(f"/ui/runs/{run_id}").text
    missing = client.get("/ui/runs/nope")
    assert missing.status_code == 404 and "No run &#39;nope&#39;" in missing.text


def test_artifacts_show_image_previews_and_downloads(scripted):
    app, _ = scripted([])
    (run_id,) = add_runs(app, 1)
    workspace = app.config.workspaces
    (workspace / "plot.png").write_bytes(b"\x89PNG")
    (workspace / "data.csv").write_text("a,b\n")
    call_id = app.journal.tool_call_started(run_id, 0, "make_plot", {})
    app.journal.tool_call_finished(call_id, {"output": "ok", "artifacts": ["plot.png", "data.csv", "/etc/passwd"]})
    client, _ = dashboard(app)
    page = client.get(f"/ui/runs/{run_id}").text
    assert f'<img src="/ui/runs/{run_id}/files/plot.png"' in page
    assert f'href="/ui/runs/{run_id}/files/data.csv?download=true" download' in page
    assert "passwd" not in page.split("Artifacts")[1].split("</section>")[0]  # outside the workspace: left out
    download = client.get(f"/ui/runs/{run_id}/files/data.csv", params={"download": "true"})
    assert download.headers["content-disposition"].startswith("attachment")


def test_schedules_show_missed_fires_and_the_report_puts_failures_first(scripted):
    from agentd.schedule.spec import Schedule
    from agentd.schedule.store import Fire, FireStatus, ScheduleStore

    app, _ = scripted([])
    store = ScheduleStore(app.journal)
    store.add(Schedule(name="daily", goal="tidy up", cron="0 6 * * *"))
    ok, bad = (app.journal.create_run(Goal(text=t, schedule="daily"), app.config.workspaces, "local")
               for t in ("tidy up", "tidy up again"))
    app.journal.set_status(ok, RunStatus.succeeded)
    app.journal.set_status(bad, RunStatus.failed)
    now = time.time()
    for i, (status, run_id) in enumerate(((FireStatus.enqueued, ok), (FireStatus.enqueued, bad),
                                          (FireStatus.missed, None))):
        store.record_fire(Fire(f"daily@{i}", "daily", now - 3600 + i, status, "timer", status == FireStatus.missed,
                               run_id, "the daemon was down" if run_id is None else "", now - 60 + i))
    client, _ = dashboard(app)
    page = client.get("/ui/schedules").text
    assert "missed: the daemon was down" in page and "due " in page
    report = client.get("/ui/report").text
    assert report.index("Failures") < report.index(bad) < report.index("Ran") < report.index(ok)
    assert "1 missed" in report


def test_files_outside_the_workspace_are_never_served(scripted, tmp_path):
    app, _ = scripted([])
    (run_id,) = add_runs(app, 1)
    workspace = app.config.workspaces
    (workspace / "chart.png").write_bytes(b"\x89PNG fake")
    (tmp_path / "secret.txt").write_text("no")
    client, _ = dashboard(app)
    assert client.get(f"/ui/runs/{run_id}/files/chart.png").content == b"\x89PNG fake"
    for path in ("..%2Fsecret.txt", "%2Fetc%2Fpasswd", "nope.txt"):
        assert client.get(f"/ui/runs/{run_id}/files/{path}").status_code == 404, path


def test_memory_page_says_why_when_no_plugin_offers_memory(scripted):
    app, _ = scripted([], settings={"plugins.memory": {"enabled": False}})
    client, _ = dashboard(app)
    assert "no plugin offers long-term memory" in client.get("/ui/memory", params={"q": "x"}).text


def test_tools_and_schedules_pages_render(scripted):
    from agentd.schedule.spec import Schedule
    from agentd.schedule.store import ScheduleStore

    app, _ = scripted([])
    ScheduleStore(app.journal).add(Schedule(name="daily", goal="tidy up", cron="0 6 * * *"))
    client, _ = dashboard(app)
    assert "write_file" in client.get("/ui/tools").text
    page = client.get("/ui/schedules").text
    assert "daily" in page and "0 6 * * *" in page and "UTC" in page
    client.post("/ui/schedules/daily/pause", data={})
    assert ScheduleStore(app.journal).require("daily").paused
    assert client.post("/ui/schedules/nope/pause", data={}).status_code == 400


# -- the guard ------------------------------------------------------------------------------------------
def test_login_links_work_once_and_expire():
    now = [1000.0]
    auth = UiAuth(clock=lambda: now[0])
    token = auth.mint()
    session = auth.spend(token)
    assert session and auth.valid(session)
    assert auth.spend(token) is None
    late = auth.mint()
    now[0] += auth.token_ttl_s + 1
    assert auth.spend(late) is None
    now[0] += auth.session_ttl_s
    assert not auth.valid(session)


@pytest.fixture
def scripted(scripted, journal_url, monkeypatch):
    """conftest's factory, on SQLite and then on PostgreSQL: every page reads through either journal."""
    monkeypatch.setenv("AGENTD_JOURNAL_URL", journal_url)

    def factory(replies=None, settings=None, **kwargs):
        return scripted(replies, settings={"journal_url": journal_url} | (settings or {}), **kwargs)

    return factory


@pytest.fixture
def guarded(scripted):
    app, _ = scripted([])
    daemon = dashboard_daemon(app)
    api = create_api(daemon)
    listener = mount_ui(api, daemon)
    client = TestClient(ui_guard(api, listener.auth, ORIGIN), base_url=ORIGIN)
    return client, listener.auth


def test_the_guard_wants_a_session_the_right_host_and_the_same_origin(guarded):
    client, auth = guarded
    assert client.get("/").status_code == 401
    assert client.get("/runs").status_code == 401
    assert client.post("/ui/session").status_code == 403
    login = client.get(f"/ui/login?token={auth.mint()}", follow_redirects=False)
    assert login.status_code == 303 and "HttpOnly; SameSite=Strict" in login.headers["set-cookie"]
    assert client.get("/").status_code == 200
    assert client.get("/", headers={"Host": "attacker.example:8123"}).status_code == 403
    refused = client.post("/ui/runs", data={"text": "x"}, headers={"Origin": "http://attacker.example"})
    assert refused.status_code == 403 and "cross-site" in refused.text
    assert client.post("/ui/runs", data={"text": "x"}).status_code == 403  # no Origin header at all
    same = client.post("/ui/runs", data={"text": "x"}, headers={"Origin": ORIGIN}, follow_redirects=False)
    assert same.status_code == 303


def test_runs_json_api_stays_unchanged_next_to_the_pages(scripted):
    app, _ = scripted([])
    add_runs(app, 2)
    client, _ = dashboard(app)
    assert len(client.get("/runs").json()) == 2
    page = client.get("/")
    assert page.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]  # no clickjacked Approve
    assert json.loads(client.get("/openapi.json").text)["paths"].get("/") is None  # pages stay out of the schema
