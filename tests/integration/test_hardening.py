"""Issue 15 with real daemon processes: nothing exposed to another local user, bad homes refused at start,
every bad request a 4xx (schemathesis included), and idempotent submission over the real socket."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from test_daemon import Daemon, cli, make_daemon, tool_started, wait_for, write_home  # noqa: F401 - a fixture

pytestmark = pytest.mark.integration

OTHER_USER = "agentd-other"
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (to create a second user, mount, chattr)")


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def open_base():
    """A world-traversable folder (0755, outside pytest's 0700 tmp): only agentd's own modes protect a home."""
    base = Path(tempfile.mkdtemp(prefix="agentd-shared-", dir="/tmp"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def other_user():
    """An unprivileged second local user, created for the test and removed after it."""
    if shutil.which("useradd") is None or not Path("/usr/bin/python3").exists():
        pytest.skip("needs useradd and a system /usr/bin/python3 another user can run")
    created = subprocess.run(["id", OTHER_USER], capture_output=True).returncode != 0
    if created:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OTHER_USER],
                       check=True)
    yield OTHER_USER
    if created:
        subprocess.run(["userdel", OTHER_USER], check=False)


PROBE = r"""
import json, os, socket, sys
out = {}
for path in sys.argv[2:]:
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            open(path, "rb").read(1)
        out[path] = "read"
    except OSError as exc:
        out[path] = type(exc).__name__
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
    out["socket"] = "connected"
except OSError as exc:
    out["socket"] = type(exc).__name__
print(json.dumps(out))
"""


@root_only
def test_a_second_local_user_cannot_read_the_journal_logs_or_workspaces_nor_connect(open_base, other_user):
    home = open_base / "home"
    with umask(0o022):  # a common umask: without agentd's own care everything would be 0644 / 0755
        write_home(home)
        started = cli(home, "daemon", "start")
    try:
        assert started.returncode == 0, started.stderr
        goal = cli(home, "goal", "--json", "Create item-00.txt")
        assert goal.returncode == 0, goal.stdout + goal.stderr
        run_id = json.loads(goal.stdout.splitlines()[-1])["run_id"]
        control = open_base / "control.txt"  # proves the user can reach this folder: the test can fail
        control.write_text("public")
        control.chmod(0o644)
        targets = [control, home, home / "agentd.db", home / "agentd.db-wal", home / "logs" / "daemon.log",
                   home / "logs", home / "workspaces", home / "workspaces" / run_id,
                   home / "workspaces" / run_id / "item-00.txt", home / "configs" / "agentd.toml"]
        assert all(p.exists() for p in targets), [p for p in targets if not p.exists()]
        probe = subprocess.run(
            ["runuser", "-u", other_user, "--", "/usr/bin/python3", "-c", PROBE, str(home / "agentd.sock"),
             *map(str, targets)],
            capture_output=True, text=True, timeout=60, cwd="/",
        )
        seen = json.loads(probe.stdout)
    finally:
        cli(home, "daemon", "stop")
    assert seen.pop(str(control)) == "read"
    assert seen == {key: "PermissionError" for key in seen}, seen
    from agentd.home import loose_entries

    assert loose_entries(home) == []  # the test's own script.json aside, nothing of agentd's is group/world-open


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def _daemon_run(home: Path) -> subprocess.CompletedProcess:
    try:
        return cli(home, "daemon", "run", timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("the daemon started serving on a home it cannot write")


@root_only
@pytest.mark.parametrize("damage", ["read-only", "full", "immutable journal"])
def test_daemon_run_on_a_home_it_cannot_write_exits_2_with_one_line(tmp_path, damage):
    home = tmp_path / "home"
    home.mkdir()
    mounted = damage != "immutable journal"
    if damage == "full":
        _mount("-t", "tmpfs", "-o", "size=2m", "tmpfs", str(home))
    write_home(home)
    subprocess.run([sys.executable, "-c", "import sys\nfrom agentd.journal import Journal\n"
                    "Journal(sys.argv[1]).close()", str(home / "agentd.db")], check=True)
    try:
        if damage == "read-only":
            _mount("--bind", str(home), str(home))
            _mount("-o", "remount,ro,bind", str(home))
        elif damage == "full":
            with contextlib.suppress(OSError), open(home / "filler", "wb") as f:
                while True:
                    f.write(b"\0" * 65536)
        else:
            subprocess.run(["chattr", "+i", str(home / "agentd.db")], check=True)
        result = _daemon_run(home)
    finally:
        if mounted:
            subprocess.run(["umount", str(home)], check=False)
        else:
            subprocess.run(["chattr", "-i", str(home / "agentd.db")], check=False)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and len(errors) == 1, result.stderr[-3000:]
    expected = {"read-only": "Read-only file system", "full": "No space left", "immutable journal": "chattr -i"}
    assert expected[damage] in errors[0]


# -- the API over the real socket -------------------------------------------------------------------------
def test_bad_requests_are_4xx_over_the_socket_and_a_repeated_key_is_one_run(make_daemon):  # noqa: F811
    d: Daemon = make_daemon()
    bodies = [
        b'{"text": "x", "budgets": {"max_seconds": NaN}}',
        b'{"text": "x", "budgets": {"max_seconds": Infinity}}',
        b'{"text": "a\\ud800"}',
        b'{"text": "a\\u0000"}',
        b'{"text": "x", "memory": "yes"}',
        b'{"text": "x", "allowed_tools": ["no_such_tool"]}',
        json.dumps({"text": "x" * 2_000_000}).encode(),
    ]
    with d.client() as c:
        codes = [c.post("/runs", content=b, headers={"content-type": "application/json"}).status_code
                 for b in bodies]
        assert all(400 <= code < 500 for code in codes), codes
        assert c.get("/health").status_code == 200  # the connection and the daemon survived all of it
        headers = {"Idempotency-Key": "retry-1"}
        first = c.post("/runs", json={"text": "Create item-01.txt"}, headers=headers)
        again = c.post("/runs", json={"text": "Create item-01.txt"}, headers=headers)
        percent = c.get("/runs/%25")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["run_id"] == again.json()["run_id"]
    assert percent.status_code == 404
    d.wait([first.json()["run_id"]])
    assert len(d.get("/runs").json()) == 1
    shown = cli(d.home, "runs", "show", "%")
    assert shown.returncode != 0 and "no run" in shown.stderr


def test_a_goal_whose_daemon_dies_exits_5_and_the_run_is_resumed_later(make_daemon):  # noqa: F811
    d: Daemon = make_daemon({"reconnect_s": 2})
    (d.home / "hold").touch()
    goal = subprocess.Popen([sys.executable, "-m", "agentd", "goal", "SLOW job"], env=d.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any(tool_started(d, r["id"]) for r in d.get("/runs").json()))
        d.kill9()
        _, stderr = goal.communicate(timeout=60)
    finally:
        if goal.poll() is None:
            goal.kill()
    assert goal.returncode == 5, stderr
    assert "may still be going" in stderr and "Traceback" not in stderr
    (d.home / "hold").unlink()
    again = make_daemon(home=d.home)
    [run] = again.get("/runs").json()
    again.wait([run["id"]])  # recorded truthfully after all: it was not "failed" when the client said 5
