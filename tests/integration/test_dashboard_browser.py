"""The dashboard in a real browser: Debian's chromium, headless, driven by Playwright (no browser download).

One real daemon (scripted model, the workspace and memory plugins, a schedule, an ingested note) serves the
dashboard on its loopback listener; the browser signs in with the one-time link `agentd ui` prints. Screenshots
of every page land in $AGENTD_TEST_ARTIFACTS (default: test-artifacts/dashboard in the repository).
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import threading
from pathlib import Path

import httpx
import pytest
from test_daemon import Daemon, cli, wait_for, write_home

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("AGENTD_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "dashboard"
PAGES = {
    "runs": "/", "new-goal": "/ui/new", "approvals": "/ui/approvals", "schedules": "/ui/schedules",
    "report": "/ui/report", "memory": "/ui/memory?q=launch+code+word", "tools": "/ui/tools",
}
NOTE = "The launch code word for project Heron is PERIWINKLE. Keep it short."
REQUESTS: list[str] = []  # every URL the browser asked for, over the whole module
FOREIGN: list[str] = []  # origins a test visits on purpose (the cross-site attacker's page)

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (scripts/install-test.sh)", allow_module_level=True)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    home = tmp_path_factory.mktemp("dash") / "home"
    write_home(home)
    config = home / "configs" / "agentd.toml"
    config.write_text(
        config.read_text().replace('load = ["workspace", "slow_tool"]', 'load = ["workspace", "slow_tool", "memory"]')
        + "[plugins.scheduler]\nsync_interval_s = 0.3\n"
    )
    (home / "note.md").write_text(NOTE + "\n")
    for args in (("schedule", "add", "nightly", "Create item-03.txt", "--cron", "0 3 * * *"),
                 ("memory", "ingest", str(home / "note.md"))):
        out = cli(home, *args, timeout=180)
        assert out.returncode == 0, out.stderr
    d = Daemon(home).start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def origin(daemon):
    link = daemon.post("/ui/session").json()["url"]
    return link.split("/ui/login")[0]


@pytest.fixture(scope="module")
def browser(daemon, tmp_path_factory):
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=FLAGS, viewport={"width": 1280, "height": 900},
        )
        context.on("request", lambda request: REQUESTS.append(request.url))
        page = context.pages[0] if context.pages else context.new_page()
        out = cli(daemon.home, "ui", "--no-browser")  # what a user runs: it prints a one-time link
        assert out.returncode == 0 and "works once" in out.stderr, out.stderr
        page.goto(out.stdout.strip())
        yield context, page
        context.close()


@pytest.fixture
def page(browser):
    return browser[1]


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def session_cookie(browser) -> dict[str, str]:
    return {c["name"]: c["value"] for c in browser[0].cookies() if c["name"].startswith("agentd_ui_")}


# -- auth and cross-site protection -----------------------------------------------------------------------
def test_the_dashboard_needs_the_one_time_link(daemon, origin, browser):
    with httpx.Client(base_url=origin) as anonymous:
        for path in ("/", "/ui/runs/x", "/runs", "/ui/static/app.css"):
            assert anonymous.get(path).status_code == 401, path
        assert anonymous.post("/runs", json={"text": "x"}).status_code == 401
        link = daemon.post("/ui/session").json()["url"]
        assert anonymous.get(link).status_code == 303  # the first use signs in ...
        assert anonymous.get(link).status_code == 401  # ... and the link is spent
        assert anonymous.post("/ui/session").status_code == 403  # links are minted on the Unix socket only
    cookie = browser[0].cookies()[0]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    with httpx.Client(base_url=origin, cookies=session_cookie(browser)) as signed_in:
        assert signed_in.get("/").status_code == 200
        wrong_host = signed_in.get("/", headers={"Host": "evil.example:80"})
        assert wrong_host.status_code == 403  # a DNS-rebound name never reaches the pages


def test_a_cross_origin_post_is_refused(daemon, origin, browser, page):
    evil = "EVIL goal from another site"
    form = (f'<form method="post" action="{origin}/ui/runs"><input name="text" value="{evil}"></form>'
            "<script>document.forms[0].submit()</script>")

    class Evil(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(form.encode())

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Evil)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    attacker = f"http://localhost:{server.server_address[1]}/"
    FOREIGN.append(attacker)
    try:
        page.goto(attacker)
        page.wait_for_url(f"{origin}/ui/runs", timeout=10_000)
        assert "401" in page.content() or "403" in page.content()
    finally:
        server.shutdown()
    assert not [r for r in daemon.get("/runs", params={"limit": 1000}).json() if r["goal"] == evil]
    with httpx.Client(base_url=origin, cookies=session_cookie(browser)) as signed_in:
        refused = signed_in.post("/ui/runs", data={"text": evil}, headers={"Origin": "http://evil.example"})
        assert refused.status_code == 403 and "cross-site" in refused.text
        assert signed_in.post("/ui/runs", data={"text": evil}).status_code == 403  # no Origin at all
        assert signed_in.post("/runs/x/cancel", headers={"Origin": "null"}).status_code == 403


# -- the pages at work ------------------------------------------------------------------------------------
def test_a_goal_submitted_from_the_page_streams_its_events_live(daemon, origin, page):
    live: list[str] = []
    page.on("console", lambda msg: live.append(msg.text) if msg.text.startswith("live:") else None)
    hold = daemon.home / "hold"
    hold.touch()
    page.goto(f"{origin}/ui/new")
    page.get_by_label("Goal").fill("SLOW job")
    page.get_by_label("Max steps").fill("4")
    page.get_by_role("button", name="Run").click()
    page.wait_for_url(f"{origin}/ui/runs/*")
    run_id = page.url.rsplit("/", 1)[1]
    page.evaluate("""() => new MutationObserver(ms => ms.forEach(m => m.addedNodes.forEach(
        n => n.className && console.log('live:' + n.className)))).observe(document.getElementById('events'),
        {childList: true})""")
    page.wait_for_selector("#events .ev-tool_call", timeout=20_000)
    hold.unlink()  # the tool returns now: its observation and the end of the run arrive while we watch
    for _ in range(300):  # Playwright delivers console events while it is called: wait through it
        if "live:ev ev-run_finished" in live:
            break
        page.wait_for_timeout(100)
    assert "live:ev ev-observation" in live
    assert any(u.startswith(f"{origin}/runs/{run_id}/events?") for u in REQUESTS)  # the daemon's own SSE
    page.wait_for_selector("#run-status .s-succeeded", timeout=20_000)  # reloaded once the run ended
    assert page.locator(".answer").inner_text() == "finished"
    assert daemon.run(run_id)["goal_spec"]["budgets"]["max_steps"] == 4
    path = shot(page, "run")
    if os.environ.get("AGENTD_UPDATE_DOCS"):  # refresh the README's picture: AGENTD_UPDATE_DOCS=1 pytest ...
        shutil.copy(path, ROOT / "docs" / "dashboard.png")


def test_a_parked_run_is_approved_on_the_page_and_finishes(daemon, origin, page):
    page.goto(origin + "/")
    run_id = daemon.submit("Create item-05.txt", allowed_tools=["read_file"])
    daemon.wait([run_id], statuses=("awaiting_approval",))
    row = page.locator("#runs-list tr", has_text=run_id)
    row.locator(".s-awaiting_approval").wait_for(timeout=15_000)  # the list refreshed itself
    page.goto(f"{origin}/ui/approvals")
    card = page.locator("article", has_text=run_id)
    assert 'write_file({"content": "05", "path": "item-05.txt"})' in card.inner_text()
    assert page.locator("nav .badge").inner_text() == "1"
    shot(page, "approvals")
    card.get_by_role("button", name="Approve").click()
    daemon.wait([run_id])
    assert daemon.run(run_id)["status"] == "succeeded"
    page.goto(f"{origin}/ui/runs/{run_id}")
    assert page.locator("#run-status").inner_text().startswith("succeeded")
    assert "item-05.txt" in page.locator(".artifacts").inner_text()
    download = page.request.get(f"{origin}/ui/runs/{run_id}/files/item-05.txt?download=true")
    assert download.ok and download.text() == "05"
    escape = page.request.get(f"{origin}/ui/runs/{run_id}/files/..%2F..%2Fconfigs%2Fagentd.toml")
    assert escape.status == 404 and "no file" in escape.text()  # nothing outside the workspace


def test_a_schedule_is_paused_and_resumed_on_the_page(daemon, origin, page):
    page.goto(f"{origin}/ui/schedules")
    card = page.locator("#schedule-nightly")
    assert "0 3 * * *" in card.inner_text()
    card.get_by_role("button", name="Pause").click()
    page.locator("#schedule-nightly .s-paused").wait_for()
    listed = json.loads(cli(daemon.home, "schedule", "list", "--json").stdout)
    assert [s["paused"] for s in listed["schedules"] if s["name"] == "nightly"] == [True]
    shot(page, "schedules")
    page.locator("#schedule-nightly").get_by_role("button", name="Resume").click()
    page.locator("#schedule-nightly").get_by_role("button", name="Run now").click()
    wait_for(lambda: [r for r in daemon.get("/runs").json() if r["schedule"] == "nightly"])
    run_id = next(r["id"] for r in daemon.get("/runs").json() if r["schedule"] == "nightly")
    daemon.wait([run_id])
    page.goto(f"{origin}/ui/report")
    assert run_id in page.locator("main").inner_text()  # the morning report lists the scheduled run


def test_memory_is_searched_with_provenance_and_forgotten(daemon, origin, page):
    page.goto(f"{origin}/ui/memory")
    page.get_by_label("Search memory").fill("launch code word")
    page.get_by_role("button", name="Search").click()
    hit = page.locator(".hits li", has_text="PERIWINKLE").first
    assert "note.md" in hit.inner_text()  # provenance: the file (and lines) it came from
    shot(page, "memory")
    hit.get_by_role("button", name="Forget").click()
    page.wait_for_url("**/ui/memory?q=*")
    assert page.locator(".hits li", has_text="PERIWINKLE").count() == 0


# -- every page: screenshots, only the daemon's own requests, phone width, dark mode ----------------------
def test_every_page_loads_only_from_the_daemon_and_fits_a_phone(daemon, origin, browser, page):
    runs = [r["id"] for r in daemon.get("/runs").json() if r["goal"] == "SLOW job"]
    if not runs:  # this test run on its own
        runs = [daemon.submit("Create item-01.txt")]
        daemon.wait(runs)
    for name, path in (PAGES | {"run": f"/ui/runs/{runs[0]}"}).items():
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            page.set_viewport_size({"width": 1280, "height": 900})
            page.goto(origin + path)
            page.wait_for_load_state("networkidle")
            shot(page, f"{name}-{scheme}")
        assert page.locator("h1").count() == 1, name
        unlabeled = page.evaluate("""() => [...document.querySelectorAll(
            'input:not([type=hidden]), select, textarea')].filter(e => !e.labels.length).map(e => e.name)""")
        assert unlabeled == [], (name, unlabeled)
        page.set_viewport_size({"width": 375, "height": 800})
        page.emulate_media(color_scheme="light")
        page.goto(origin + path)
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name} is {overflow}px wider than a phone screen"
        shot(page, f"{name}-phone")
    dark = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    page.emulate_media(color_scheme="dark")
    assert page.evaluate("() => getComputedStyle(document.body).backgroundColor") != dark
    page.set_viewport_size({"width": 1280, "height": 900})
    page.emulate_media(color_scheme="light")
    # Over the whole module (live events, forms, downloads, every page): the daemon, and nowhere else.
    outside = [u for u in REQUESTS if not u.startswith((origin + "/", *FOREIGN))]
    assert REQUESTS and outside == [], outside
