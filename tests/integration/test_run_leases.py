"""One owner per run, with real processes: an in-process `agentd goal` and a daemon started while it runs, a
killed owner taken over, a disk that fills mid-run, and a kill -9 torture over a daemon and a second driver.

The homes, the scripted model and the ``slow_tool`` drop-in are test_daemon's; the lease ttl is short so that
takeovers happen in test time.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_daemon import Daemon, wait_for, write_home

from agentd.journal import Journal

pytestmark = pytest.mark.integration
TTL = 2.0
AGENTD = [sys.executable, "-m", "agentd"]


def lease_home(home: Path, daemon: dict | None = None, delay_s: float = 0.0, ttl: float = TTL) -> Path:
    write_home(home, daemon, delay_s)
    with open(home / "configs" / "agentd.toml", "a") as f:
        f.write(f"[loop]\nlease_ttl_s = {ttl}\n")
    return home


def env_for(home: Path) -> dict[str, str]:
    return os.environ | {"AGENTD_HOME": str(home)}


def only_run(home: Path) -> str:
    wait_for(lambda: any((home / "workspaces").glob("*/calls.log")))
    (log,) = (home / "workspaces").glob("*/calls.log")
    return log.parent.name


def read_journal(home: Path, run_id: str) -> dict:
    journal = Journal(home / "agentd.db")
    try:
        return {
            "run": journal.get_run(run_id),
            "events": journal.events(run_id),
            "phases": journal.phases(run_id),
            "tool_calls": journal.tool_calls(run_id),
        }
    finally:
        journal.close()


def test_a_daemon_started_mid_run_leaves_the_in_process_run_to_its_owner(tmp_path):
    """Issue 15, defect 1: the daemon's recovery used to drive the live in-process run a second time."""
    home = lease_home(tmp_path / "home")
    (home / "hold").touch()
    goal = subprocess.Popen(
        [*AGENTD, "goal", "--json", "SLOW job"], env=env_for(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    d = None
    try:
        run_id = only_run(home)  # the in-process run is inside its (slow) tool call
        d = Daemon(home).start()
        assert d.get("/status").json()["recovered"] == {"resumed": [], "failed": []}
        time.sleep(TTL * 1.5)  # sweeps pass: the owner is alive, so the run stays with it
        row = d.run(run_id)
        assert row["status"] == "running" and row["lease_owner"].startswith("cli:"), row
        assert d.post(f"/runs/{run_id}/cancel").status_code == 400  # not the daemon's to end
        (home / "hold").unlink()
        out, err = goal.communicate(timeout=60)
        assert goal.returncode == 0, err
        assert json.loads(out.splitlines()[-1])["status"] == "succeeded"
        record = read_journal(home, run_id)
        types = [e["type"] for e in record["events"]]
        assert types.count("run_started") == 1 and types.count("run_finished") == 1, types
        assert "lease_takeover" not in types
        kinds = [p["kind"] for p in record["phases"]]
        assert kinds == ["context", "plan", "critique", "act", "tool", "feedback", "stop"], kinds
        assert [c["status"] for c in record["tool_calls"]] == ["finished"]
        assert (home / "workspaces" / run_id / "calls.log").read_text() == "start\n"  # executed once
        assert record["run"]["lease_owner"] is None
    finally:
        with contextlib.suppress(OSError):
            goal.kill()
        if d is not None:
            d.stop()


def test_a_killed_in_process_owner_is_taken_over_by_the_daemon(tmp_path):
    home = lease_home(tmp_path / "home")
    (home / "hold").touch()
    goal = subprocess.Popen([*AGENTD, "goal", "SLOW job"], env=env_for(home), stderr=subprocess.DEVNULL)
    run_id = only_run(home)
    d = Daemon(home).start()
    try:
        goal.kill()
        goal.wait()
        (home / "hold").unlink()
        d.wait([run_id], limit=TTL * 5)  # a dead owner on this host is taken over at the next sweep
        run = d.run(run_id)
        assert (run["status"], run["stop_reason"]) == ("failed", "gave_up")  # the model saw the interruption
        assert [c["status"] for c in run["tool_calls"]] == ["interrupted"]  # recorded, not run again
        assert (home / "workspaces" / run_id / "calls.log").read_text() == "start\n"
        events = d.get(f"/runs/{run_id}/events", params={"follow": False}).text
        assert "event: lease_takeover" in events and '"from": "cli:' in events and '"to": "daemon:' in events
    finally:
        d.stop()


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MiB tmpfs: a disk that can really fill up."""
    if os.geteuid() != 0 or not sys.platform.startswith("linux"):
        pytest.skip("mounting a tmpfs needs root on Linux")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path) -> Path:
    """Write until the disk is full (ENOSPC); returns the filler, whose removal frees the space."""
    filler = path / "filler"
    with open(filler, "wb", buffering=0) as f:
        for size in (65536, 512):  # big blocks, then the last small ones
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * size)
    return filler


def test_a_full_disk_mid_run_ends_the_hold_and_every_follower_hears_it(small_disk):
    """Issue 15, defect 3: the run stayed `running` and `agentd goal` hung. Now: an error line and exit 1
    within seconds, the daemon keeps serving, and the run resumes once there is space again."""
    home = lease_home(small_disk / "home")
    d = Daemon(home).start()
    try:
        (home / "hold").touch()
        follower = subprocess.Popen(
            [*AGENTD, "goal", "SLOW job"], env=env_for(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
        run_id = only_run(home)
        filler = fill(small_disk)
        (home / "hold").unlink()  # the tool returns; journaling its result hits the full disk
        started = time.monotonic()
        _, err = follower.communicate(timeout=30)
        assert follower.returncode == 1, err
        assert time.monotonic() - started < 15
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and "disk is full" in lines[0] and run_id in lines[0], err
        assert "Traceback" not in err
        late = d.get(f"/runs/{run_id}/events")  # a follower attaching now hears it too, and is not left hanging
        assert "event: run_error" in late.text and "disk is full" in late.text, late.text[-500:]
        assert d.get("/health").status_code == 200 and d.proc.poll() is None
        filler.unlink()
        d.wait([run_id], limit=TTL * 10)  # space again: resumed from its journal, the call not re-run
        run = d.run(run_id)
        assert run["lease_owner"] is None and run["status"] == "failed", run
        assert (home / "workspaces" / run_id / "calls.log").read_text() == "start\n"
    finally:
        d.stop()


# -- kill -9 torture ------------------------------------------------------------------------------------------
EFFECT_TOOL = '''
"""A tool whose every execution leaves a line outside the workspace: executed twice shows as two lines."""
import os
import random
import time

from agentd import hookimpl


def effect(ctx) -> str:
    """Record this run's side effect."""
    with open(os.environ["AGENTD_EFFECTS"], "a") as f:
        f.write(ctx.run_id + "\\n")
    time.sleep(random.uniform(0, 0.15))
    return "done"


@hookimpl
def register_tools(register):
    register(effect)
'''

# A second driver (a stand-in for another daemon on the same journal) that tries every open run, held or not:
# only the lease keeps it from driving a run twice.
DRIVER = """
import time
from agentd.app import make_app
from agentd.daemon.worker import OPEN
from agentd.journal import LeaseLost, RunHeld

app = make_app()
while True:
    for row in [r for status in OPEN for r in app.journal.list_runs(limit=1000, status=status)]:
        try:
            app.engine.run(row["id"])
        except (RunHeld, LeaseLost):
            pass
    time.sleep(0.05)
"""


def torture_home(home: Path, run_in: str = "threads") -> Path:
    lease_home(home, {"workers": 2, "run_in": run_in}, ttl=1.0)
    (home / "plugins" / "effect.py").write_text(EFFECT_TOOL)
    rules = [
        ["Goal: Effect.*Write the plan", {"steps": [{"intent": "make the effect", "tool": "effect"}]}],
        ["Write the call for step 1", {"tool": "effect", "args": {}}],
        ["interrupted by a daemon restart.*Write the decision", {"decision": "give_up", "summary": "unsure"}],
        ["Write the decision", {"decision": "done", "summary": "ok", "final_answer": "done"}],
    ]
    (home / "script.json").write_text(json.dumps({"rules": rules, "delay_s": 0.03}))
    config = (home / "configs" / "agentd.toml").read_text().replace('"slow_tool"]', '"slow_tool", "effect"]')
    (home / "configs" / "agentd.toml").write_text(config)
    return home


@pytest.mark.parametrize("run_in", ["threads", "processes"])
def test_kill_9_torture_every_run_finishes_once_and_no_call_runs_twice(tmp_path, run_in):
    """Random kill -9 points over a daemon (its runs in its threads, or in its worker processes, which die with
    it) and a second driver process sharing the journal."""
    kills = int(os.environ.get("AGENTD_TORTURE_KILLS", "20"))
    rng = random.Random(int(os.environ.get("AGENTD_TORTURE_SEED", "15")))
    home = torture_home(tmp_path / "home", run_in)
    effects = tmp_path / "effects.log"
    env = {"AGENTD_EFFECTS": str(effects)}
    daemon: Daemon | None = None
    driver: subprocess.Popen | None = None
    submitted: list[str] = []
    killed = {"daemon": 0, "driver": 0}
    try:
        for point in range(kills):
            if daemon is None or daemon.proc.poll() is not None:
                daemon = Daemon(home, env).start()
            if driver is None or driver.poll() is not None:
                driver = subprocess.Popen(
                    [sys.executable, "-c", DRIVER], env=env_for(home) | env, stderr=subprocess.DEVNULL
                )
            submitted += [daemon.submit(f"Effect {point}-{i}") for i in range(2)]
            time.sleep(rng.uniform(0.05, 0.8))
            victim = rng.choice(["daemon", "driver"])
            (daemon.proc if victim == "daemon" else driver).send_signal(signal.SIGKILL)
            (daemon.proc if victim == "daemon" else driver).wait()
            killed[victim] += 1
        driver.kill()
        driver.wait()
        if daemon.proc.poll() is not None:
            daemon = Daemon(home, env).start()
        daemon.wait(submitted, limit=120)
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
        if daemon is not None and daemon.proc.poll() is None:
            daemon.stop()
    lines = effects.read_text().splitlines() if effects.exists() else []
    problems, seen = {}, {"resumed": 0, "takeovers": 0, "interrupted_calls": 0}
    for run_id in submitted:
        record = read_journal(home, run_id)
        types = [e["type"] for e in record["events"]]
        kinds = [p["kind"] for p in record["phases"]]
        seen["resumed"] += types.count("run_started") > 1
        seen["takeovers"] += types.count("lease_takeover")
        seen["interrupted_calls"] += [c["status"] for c in record["tool_calls"]].count("interrupted")
        found = {
            "status": record["run"]["status"],
            "run_finished": types.count("run_finished"),
            "effects": lines.count(run_id),
            "tool_calls": len(record["tool_calls"]),
            "plans": kinds.count("plan"),
            "lease_owner": record["run"]["lease_owner"],
        }
        if (
            found["status"] in ("queued", "running")
            or found["run_finished"] != 1
            or found["effects"] > 1
            or found["tool_calls"] > 1
            or found["plans"] > 1
            or found["lease_owner"] is not None
        ):
            problems[run_id] = found
    print(f"torture ({run_in}): {kills} kill points ({killed}), {len(submitted)} runs, {len(lines)} effects, {seen}")
    assert len(set(submitted)) == len(submitted) == 2 * kills
    assert problems == {}
