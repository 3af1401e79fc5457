"""The daemon's parts in-process: settings, the run queue and its recovery, the API over ASGI, SSE parsing."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from types import SimpleNamespace

import httpx
import pytest

from agentd import Goal, ToolContext, hookimpl
from agentd.config import load_config
from agentd.daemon.api import create_api, token_guard
from agentd.daemon.client import daemon_running, parse_sse
from agentd.daemon.server import Daemon
from agentd.daemon.setup import DaemonSettings, load_settings, systemd_unit
from agentd.daemon.worker import RunQueue
from agentd.errors import AgentdError, ConfigError
from agentd.records import RunStatus
from agentd.testing import call, feedback, make_test_app, plan

RULES = [
    ("Write the plan", plan(("write it", "write_file"))),
    ("Write the call for step 1", call("write_file", path="a.txt", content="x")),
    ("Write the decision", feedback("done", final_answer="made a.txt")),
]


@pytest.fixture
def app(tmp_path):
    app, _ = make_test_app(tmp_path, rules=RULES, settings={"plugins.load": ["workspace"]})
    yield app
    app.close()


def test_settings_defaults_and_errors_name_the_key(app, tmp_path):
    assert load_settings(app.config) == DaemonSettings()
    assert DaemonSettings().workers == 2 and DaemonSettings().resume is True

    def settings(table):
        return load_settings(load_config(home=tmp_path, env={}, overrides={"plugins.daemon": table}))

    assert settings({"workers": 4, "resume": False}).workers == 4
    with pytest.raises(ConfigError, match="plugins.daemon.workerz: unknown key"):
        settings({"workerz": 3})
    with pytest.raises(ConfigError, match="plugins.daemon.workers"):
        settings({"workers": 0})


def test_recover_requeues_open_runs_or_fails_them_and_leaves_parked_ones(app):
    engine = app.engine
    queued, running, parked = (engine.submit(Goal(text=f"make a.txt {i}")) for i in range(3))
    app.journal.set_status(running, RunStatus.running)
    app.journal.set_status(parked, RunStatus.awaiting_approval)
    resumed = RunQueue(engine).recover(resume=True)
    assert sorted(resumed["resumed"]) == sorted([queued, running]) and resumed["failed"] == []
    q = RunQueue(engine)
    assert q.recover(resume=False) == {"resumed": [queued], "failed": [running]}
    row = app.journal.get_run(running)
    assert (row["status"], row["stop_reason"]) == ("failed", "daemon_crash")
    assert app.journal.events(running)[-1]["type"] == "run_finished"
    assert app.journal.get_run(parked)["status"] == "awaiting_approval"
    q.enqueue(queued)
    assert q.queue.qsize() == 1  # enqueueing twice never runs a run twice


def test_cancel_ends_a_waiting_run_and_refuses_an_ended_one(app):
    q = RunQueue(app.engine)
    run_id = app.engine.submit(Goal(text="make a.txt"))
    q.enqueue(run_id)
    assert q.cancel(run_id) == "cancelled"
    assert run_id not in q.pending
    assert app.journal.get_run(run_id)["stop_reason"] == "cancelled"
    with pytest.raises(AgentdError, match="already ended"):
        q.cancel(run_id)


def _daemon(app) -> Daemon:
    daemon = Daemon(app.config, DaemonSettings(workers=2))
    daemon.app = app
    daemon.queue = RunQueue(app.engine, workers=2, on_change=daemon.notify)
    return daemon


def test_api_submits_runs_streams_and_reports(app):
    async def scenario() -> None:
        daemon = _daemon(app)
        daemon._loop = asyncio.get_running_loop()
        daemon._changed = asyncio.Event()
        daemon.queue.start()
        api = create_api(daemon)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(api), base_url="http://t") as c:
            r = await c.post("/runs", json={"text": "make a.txt", "budgets": {"max_steps": 2}})
            assert r.status_code == 201
            run_id = r.json()["run_id"]
            body = (await c.get(f"/runs/{run_id}/events")).text
            events = list(parse_sse(iter(body.splitlines())))
            assert events[0]["type"] == "run_started" and events[-1]["type"] == "run_finished"
            assert events[-1]["status"] == "succeeded"
            run = (await c.get(f"/runs/{run_id}", params={"detail": True})).json()
            assert run["goal_spec"]["budgets"]["max_steps"] == 2
            assert [t["tool"] for t in run["tool_calls"]] == ["write_file"]
            assert run["verified"] is True and run["findings"] == []  # a.txt was written: the checks hold
            assert (await c.post("/runs", json={"text": ""})).status_code == 422
            assert (await c.post("/runs", json={"text": "x", "model": "nope"})).status_code == 400
            assert (await c.post(f"/runs/{run_id}/approve")).status_code == 409
            assert (await c.get("/runs/zzz/events")).status_code == 404
            status = (await c.get("/status")).json()
            assert status["finished_since_start"] == 1 and status["queue_depth"] == 0
        await daemon.queue.drain(1.0)

    asyncio.run(scenario())


def test_token_guard_requires_the_bearer_token():
    async def ok(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def scenario() -> list[int]:
        transport = httpx.ASGITransport(token_guard(ok, "t0ken"))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return [
                (await c.get("/", headers=h)).status_code
                for h in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Bearer t0ken"})
            ]

    assert asyncio.run(scenario()) == [401, 401, 200]


def test_parse_sse_reads_data_and_skips_comments():
    lines = [
        "id: 3",
        "event: plan",
        'data: {"type": "plan", "seq": 3}',
        "",
        ": keep-alive",
        "",
        'data: {"a": 1}',
    ]
    assert list(parse_sse(iter(lines))) == [{"type": "plan", "seq": 3}, {"a": 1}]


def test_stale_socket_is_not_a_running_daemon(app):
    assert not daemon_running(app.config)
    path = app.config.home / "agentd.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()  # the file stays, nobody listens: what kill -9 leaves behind
    assert path.exists() and not daemon_running(app.config)


def test_systemd_unit_runs_the_daemon_for_this_home(app):
    unit = systemd_unit(app.config)
    assert f"Environment=AGENTD_HOME={app.config.home}" in unit
    assert "-m agentd daemon run" in unit and "WantedBy=default.target" in unit
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit  # systemctl reload re-reads the config (SIGHUP)


class SlowPlugin:
    """A tool that runs until its run is cancelled (through ctx.cancel)."""

    def __init__(self) -> None:
        self.started = threading.Event()

    @hookimpl
    def register_tools(self, register):
        started = self.started

        def wait_for_cancel(ctx: ToolContext) -> str:
            """Block until cancelled."""
            started.set()
            while not ctx.cancel.is_set():
                time.sleep(0.01)
            return "saw cancel"

        register(wait_for_cancel)


def test_drain_stops_taking_runs_then_interrupts_the_running_one_resumably(tmp_path):
    slow = SlowPlugin()
    rules = [
        ("Write the plan", plan(("wait", "wait_for_cancel"))),
        ("Write the call for step 1", call("wait_for_cancel")),
        ("Write the decision", feedback("give_up", "cancelled")),
    ]
    app, _ = make_test_app(
        tmp_path, rules=rules, settings={"plugins.load": ["workspace"]}, extra_plugins=(slow,)
    )

    async def scenario() -> tuple[str, str]:
        q = RunQueue(app.engine, workers=1)
        q.start()
        running = q.submit(Goal(text="wait"))
        waiting = q.submit(Goal(text="wait again"))
        await asyncio.to_thread(slow.started.wait, 10)
        await q.drain(timeout_s=0.05)
        with pytest.raises(AgentdError, match="shutting down"):
            q.submit(Goal(text="too late"))
        return running, waiting

    try:
        running, waiting = asyncio.run(scenario())
        row = app.journal.get_run(running)
        # Not cancelled: back in the queue, unowned, its journal intact; the next start resumes it.
        assert (row["status"], row["stop_reason"], row["lease_owner"]) == ("queued", None, None)
        assert "stop" not in [p["kind"] for p in app.journal.phases(running)]
        assert [e["type"] for e in app.journal.events(running)][-1] == "run_interrupted"
        assert app.journal.get_run(waiting)["status"] == "queued"  # left for the next start
        assert [c["status"] for c in app.journal.tool_calls(running)] == ["finished"]
        outcome = app.engine.run(running)  # the next start: resumed after the tool, not re-run
        assert outcome["stop_reason"] == "gave_up" and len(app.journal.tool_calls(running)) == 1
        assert [p["kind"] for p in app.journal.phases(running)].count("plan") == 1
    finally:
        app.close()


def test_doctor_checks_report_bad_settings_and_no_daemon(tmp_path):
    from agentd.daemon.setup import doctor_checks

    good = dict((name, (ok, text)) for name, ok, text in doctor_checks(load_config(home=tmp_path, env={})))
    assert good["daemon settings"][0] and "not running" in good["daemon"][1]
    bad = load_config(home=tmp_path, env={}, overrides={"plugins.daemon": {"workers": "many"}}, validate_plugins=False)
    checks = dict((name, (ok, text)) for name, ok, text in doctor_checks(bad))
    assert checks["daemon settings"][0] is False and "plugins.daemon.workers" in checks["daemon settings"][1]


# -- per-request costs: /status's daemons list and the event streams' wake-ups (issue 20) -------------------
def test_status_reads_the_daemons_table_at_most_once_per_max_age(monkeypatch):
    from agentd.daemon import server

    reads: list[int] = []
    daemon = SimpleNamespace(peers=SimpleNamespace(all=lambda: reads.append(1) or [{"owner": "me"}]), _peers_cache=None)
    assert server.Daemon._daemons(daemon) == server.Daemon._daemons(daemon) == [{"owner": "me"}]
    assert len(reads) == 1
    monkeypatch.setattr(server, "PEERS_MAX_AGE_S", -1.0)  # older than allowed: read again
    server.Daemon._daemons(daemon)
    assert len(reads) == 2


def test_event_wake_ups_are_coalesced_until_the_loop_runs_one():
    from agentd.daemon import server

    scheduled: list = []
    loop = SimpleNamespace(is_closed=lambda: False, call_soon_threadsafe=scheduled.append)
    daemon = SimpleNamespace(_loop=loop, _wake_pending=False, _changed=None, followers=0, queue=None)
    daemon._wake = lambda: server.Daemon._wake(daemon)
    server.Daemon.notify(daemon)
    assert scheduled == []  # no event stream open: nobody to wake
    server.Daemon.follow(daemon, 1)
    for _ in range(5):  # five events from worker threads before the loop gets to run
        server.Daemon.notify(daemon)
    assert len(scheduled) == 1
    scheduled.pop()()  # the loop runs the wake-up: the streams read everything journaled so far
    server.Daemon.notify(daemon)
    assert len(scheduled) == 1  # a later event schedules its own
    scheduled.pop()()
    server.Daemon.follow(daemon, -1)
    server.Daemon.notify(daemon)
    assert scheduled == []


def test_runs_report_progress_only_while_a_stream_is_open_and_none_is_kept_past_the_last(app):
    daemon = _daemon(app)
    assert not daemon.watched()
    daemon.follow(1)
    assert daemon.watched()
    daemon.queue.progress["r1"] = {"phase": "act", "tokens": 7}  # what a watched run reported
    daemon.follow(-1)
    assert not daemon.watched() and daemon.queue.progress == {}  # a later stream never sees it stale


@pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="the shared flag needs memfd (Linux)")
def test_the_followed_flag_is_shared_through_its_descriptor_and_starts_unset():
    from agentd.daemon.hosts import ProcessHost, _Flag

    host = ProcessHost(config=None, size=0)
    worker_side = _Flag(os.dup(host._followed.fd))  # what a worker process maps
    assert not worker_side
    host.followed(True)
    assert worker_side
    host.followed(False)
    assert not worker_side
    assert _Flag.__bool__(SimpleNamespace(_map=None))  # no memfd: events always cross


# -- worker processes (agentd.daemon.hosts): the parts that need no process --------------------------------
def test_run_signal_tells_its_listeners_of_every_stop_and_at_once_when_already_stopped():
    from agentd.engine.heartbeat import RunSignal

    heard: list[str] = []
    signal = RunSignal()
    signal.listen(heard.append)
    assert heard == []
    signal.stop("shutdown")
    assert heard == ["shutdown"] and signal.is_set() and signal.reason == "shutdown"
    late: list[str] = []
    signal.listen(late.append)  # a run handed to a worker after its stop was asked still hears it
    assert late == ["shutdown"]


def test_a_workers_batch_is_a_runs_end_then_the_next_runs_start_and_a_closed_pair_ends_what_it_held():
    from multiprocessing import Pipe

    from agentd.daemon.hosts import ProcessHost, _Given, _Worker

    ours, theirs = Pipe()
    proc = SimpleNamespace(pid=1, wait=lambda timeout=None: 0, poll=lambda: 0, kill=lambda: None)
    worker = _Worker(proc=proc, conn=ours, generation=0)
    first, second = _Given(None), _Given(None)
    worker.runs.update(r1=first, r2=second)
    theirs.send(("started", "r1"))
    theirs.send(("batch", (("done", "r1", {"status": "succeeded"}), ("started", "r2"))))  # under load: one message
    theirs.close()
    ProcessHost(config=None, size=0)._read(worker)  # until the worker's end of the pair closes
    assert first.started and first.end.get_nowait() == ("done", {"status": "succeeded"})
    assert second.started and second.end.get_nowait() == ("died", 0)  # started, then its worker ended
    assert worker.ended == 0 and worker.driving == ""


def test_a_workers_error_is_rebuilt_as_agentds_own_class_or_named_in_an_agentd_error():
    from agentd.daemon.hosts import _rebuild
    from agentd.journal import LeaseLost, RunHeld

    held = _rebuild(RunHeld.__module__, RunHeld.__qualname__, "run r1 is being driven elsewhere")
    assert type(held) is RunHeld and str(held) == "run r1 is being driven elsewhere"
    assert type(_rebuild(LeaseLost.__module__, "LeaseLost", "taken over")) is LeaseLost
    other = _rebuild("builtins", "ZeroDivisionError", "division by zero")
    assert type(other) is AgentdError and str(other) == "ZeroDivisionError: division by zero"
    assert type(_rebuild("agentd.journal", "no_such_name", "x")) is AgentdError


def test_worker_processes_refuse_embedded_chroma_and_take_memory_off_or_a_server(tmp_path):
    from agentd.daemon.hosts import check_process_safe

    def config(text: str):
        home = tmp_path / str(len(list(tmp_path.iterdir())))
        (home / "configs").mkdir(parents=True)
        (home / "configs" / "agentd.toml").write_text(text)
        return load_config(home=home, env={}, validate_plugins=False)

    with pytest.raises(ConfigError, match='backend = "http"'):
        check_process_safe(config(""))  # the defaults load memory, embedded
    check_process_safe(config("[plugins.memory]\nenabled = false\n"))
    check_process_safe(config('[plugins.memory]\nbackend = "http"\n'))
    check_process_safe(config('[plugins]\nload = ["workspace"]\n'))
    check_process_safe(config('[plugins]\nblock = ["memory"]\n'))
    with pytest.raises(ConfigError):
        check_process_safe(config('[plugins]\nload = ["workspace"]\n'), plugins={"workspace", "memory"})
