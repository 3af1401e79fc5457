"""The escapes of the sandbox audit (issue 16), each on both backends and judged from outside by its side
effect: a canary listener that must not be hit, a file or config that must not change, a process that must
not be alive after the call. The non-root daemon cases run the daemon side as an unprivileged user created for
the purpose (root only; skipped elsewhere with the reason).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest
from agentd_code import cgroup, daemon_starting
from agentd_code.sandbox import UID_BASE, Limits, landlock_abi, sandbox_uid, select_backend
from sandbox_fixtures import _usable
from test_sandbox import py, uid_processes

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NONROOT = "agentd-sbx-nonroot"


# -- helpers ----------------------------------------------------------------------------------------------


class Canary:
    """A Unix socket listener (mode 0777) that records every connection made to it."""

    def __init__(self, path: Path) -> None:
        self.path, self.hits = path, []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        os.chmod(path, 0o777)
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                with contextlib.suppress(OSError):
                    self.hits.append(conn.recv(100) or b"(connected)")
                    conn.sendall(b"HTTP/1.1 201 Created\r\n\r\n{}")

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def fake_home(folder: Path, owner: int = 0) -> tuple[Path, Canary]:
    """An AGENTD_HOME as the daemon keeps it: socket, journal, a config with an API key, memory."""
    home = folder / "agentd-home"
    (home / "configs").mkdir(parents=True)
    (home / "memory").mkdir()
    (home / "configs" / "agentd.toml").write_text('[model]\napi_key = "sk-CANARY-KEY"\n')
    (home / "agentd.db").write_bytes(b"SQLite format 3\0CANARY-DB")
    (home / "memory" / "notes.txt").write_text("CANARY-MEMORY")
    for path in (home, *home.rglob("*")):
        os.chown(path, owner, owner)
    canary = Canary(home / "agentd.sock")
    return home, canary


def digest(home: Path) -> str:
    return hashlib.sha256((home / "configs" / "agentd.toml").read_bytes()).hexdigest()


ATTACK = """
import glob, os, socket
found = []
home = {home!r}
for path in [home + "/agentd.sock"] + glob.glob("/*/agentd.sock") + glob.glob("/tmp/**/*.sock", recursive=True):
    try:
        s = socket.socket(socket.AF_UNIX); s.connect(path)
        s.sendall(b"POST /runs HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"); found.append("socket " + path)
    except OSError:
        pass
for name in ("configs/agentd.toml", "agentd.db", "memory/notes.txt"):
    try:
        found.append(open(os.path.join(home, name), errors="replace").read())
    except OSError:
        pass
try:
    with open(os.path.join(home, "configs/agentd.toml"), "a") as fh:
        fh.write("[plugins.code]\\nnetwork = true\\n")
    found.append("appended")
except OSError:
    pass
for top in ("/root", "/home", "/work"):
    try:
        found.append(top + ":" + ",".join(os.listdir(top)))
    except OSError:
        pass
print(found)
"""


def interpreter_paths(backend) -> list[Path]:
    from agentd_code.execution import choose_interpreter
    from agentd_code.settings import CodeSettings

    return choose_interpreter(CodeSettings(), backend).ro_paths


def judge_home(home: Path, canary: Canary, before: str, output: str) -> None:
    assert canary.hits == [], f"sandboxed code reached the daemon's socket: {canary.hits}"
    assert digest(home) == before, "sandboxed code changed the daemon's config"
    for secret in ("CANARY-KEY", "CANARY-DB", "CANARY-MEMORY"):
        assert secret not in output


@pytest.fixture(scope="module")
def nonroot():
    """An unprivileged user (created when missing) to run the daemon side as."""
    if os.geteuid() != 0:
        pytest.skip("the non-root daemon cases create an unprivileged user, which needs root")
    try:
        pwd.getpwnam(NONROOT)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", NONROOT],
                       check=True, capture_output=True)
    return pwd.getpwnam(NONROOT).pw_uid


DAEMON_SIDE = """
import json, sys
from agentd_code.execution import choose_interpreter
from agentd_code.sandbox import Limits, run_sandboxed, select_backend
from agentd_code.settings import CodeSettings
backend = select_backend(sys.argv[1])
interp = choose_interpreter(CodeSettings(), backend)
print("started", flush=True)
r = run_sandboxed([interp.executable, "-c", sys.argv[3]], sys.argv[2], Limits(wall_s=float(sys.argv[4])),
                  backend=backend, ro_paths=interp.ro_paths)
print(json.dumps({"exit": r.exit_code, "out": r.stdout, "err": r.stderr}), flush=True)
"""


def daemon_side(backend_name: str, workspace: Path, code: str, uid: int | None, wall_s: float = 30):
    """Start the daemon's side of a call (run_sandboxed in a process of its own) as ``uid`` (None: root).

    The interpreter lives under /root (0700) here: for an unprivileged uid the process gets a private mount
    namespace in which /root is an empty 0755 tmpfs with the interpreter's folder bound back in."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{ROOT}:{ROOT / 'plugins'}", "HOME": str(workspace.parent),
           "LANG": "C.UTF-8"}
    argv = [sys.executable, "-c", DAEMON_SIDE, backend_name, str(workspace), textwrap.dedent(code), str(wall_s)]
    if uid is None:
        return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    prefix = Path(sys.base_prefix).resolve()
    top = next((p for p in prefix.parents if p.parent == Path("/root")), None)
    holder = tempfile.mkdtemp(prefix="agentd-py-", dir=workspace.parent)  # removed with the test's folder
    setup = "set -e\n"
    if top is not None:
        setup += (f"mount --bind {top} {holder}\nmount -t tmpfs -o mode=0755 tmpfs /root\n"
                  f"mkdir -p {top}\nmount --move {holder} {top}\n")
    setup += f'exec setpriv --reuid={uid} --regid={uid} --clear-groups -- "$@"\n'
    return subprocess.Popen(["unshare", "--mount", "--propagation=private", "--", "/bin/sh", "-c", setup, "sh",
                             *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 90) -> dict:
    out, err = proc.communicate(timeout=timeout)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, f"the daemon side failed: {err[-2000:]}"
    return json.loads(lines[-1])


def usable_for(name: str, uid: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="agentd-probe-"))
    folder.chmod(0o755)
    workspace = folder / "ws"
    workspace.mkdir()
    os.chown(workspace, uid, uid)
    try:
        result = finish(daemon_side(name, workspace, "print('ok')", uid))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if result["out"].strip() != "ok":
        pytest.skip(f"backend {name} cannot run for an unprivileged daemon here: {result['err'][-300:]}")


# -- 1 and 4: agentd's own data out of reach -------------------------------------------------------------


def test_root_daemon_home_socket_config_and_memory_are_out_of_reach(backend, area, ws):
    area.chmod(0o755)
    home, canary = fake_home(area)
    for path in (home, *home.rglob("*")):  # even world-open modes must not help: the view holds none of it
        if not path.is_socket():
            path.chmod(0o777 if path.is_dir() else 0o666)
    before = digest(home)
    try:
        result = py(backend, ATTACK.format(home=str(home)), ws)
    finally:
        canary.close()
    assert result.ok, result.stderr
    judge_home(home, canary, before, result.stdout)
    assert "/work:" not in result.stdout and "/home:" not in result.stdout
    mounted = {part for p in interpreter_paths(backend) for part in p.parts}  # /root may hold the interpreter
    for name in set(os.listdir("/root")) - mounted:
        assert f"/root:{name}" not in result.stdout and f",{name}" not in result.stdout


@pytest.mark.parametrize("name", ["bwrap", "subprocess"])
def test_nonroot_daemon_home_socket_and_config_are_out_of_reach(name, nonroot, area):
    if _usable(name):
        pytest.skip(_usable(name))
    area.chmod(0o755)
    usable_for(name, nonroot)
    home, canary = fake_home(area, owner=nonroot)
    home.chmod(0o700)
    workspace = home / "workspaces" / "run1"  # where the daemon keeps workspaces: inside its home
    workspace.mkdir(parents=True)
    os.chown(workspace.parent, nonroot, nonroot)
    os.chown(workspace, nonroot, nonroot)
    before = digest(home)
    try:
        result = finish(daemon_side(name, workspace, ATTACK.format(home=str(home)), nonroot))
    finally:
        canary.close()
    assert result["exit"] == 0, result["err"]
    judge_home(home, canary, before, result["out"])


# -- 2: nothing outlives the daemon ------------------------------------------------------------------------

TICKER = """
import os, subprocess, time
subprocess.Popen(["/bin/sh", "-c", "while true; do echo t >> ticks-child; sleep 0.05; done"],
                 start_new_session=True)
if os.fork() == 0:
    os.setsid()
    while True:
        with open("ticks", "a") as fh:
            fh.write("t")
        time.sleep(0.05)
time.sleep(60)
"""


def _kill_daemon_mid_call(name: str, ws: Path, uid: int | None) -> None:
    proc = daemon_side(name, ws, TICKER, uid, wall_s=60)
    deadline = time.monotonic() + 30
    while not ((ws / "ticks").exists() and (ws / "ticks-child").exists()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (ws / "ticks").exists(), proc.stderr.read() if proc.poll() is not None else "no ticks"
    proc.send_signal(signal.SIGKILL)  # the daemon dies mid-call
    proc.wait()
    time.sleep(1.0)
    sizes = [(ws / name).stat().st_size for name in ("ticks", "ticks-child")]
    time.sleep(1.5)
    assert [(ws / name).stat().st_size for name in ("ticks", "ticks-child")] == sizes, "sandbox outlived it"


def test_sandbox_dies_with_a_root_daemon(backend, ws):
    _kill_daemon_mid_call(backend.name, ws, None)
    assert uid_processes(sandbox_uid(ws)) == []


@pytest.mark.parametrize("name", ["bwrap", "subprocess"])
def test_sandbox_dies_with_a_nonroot_daemon(name, nonroot, area):
    if _usable(name):
        pytest.skip(_usable(name))
    usable_for(name, nonroot)
    workspace = area / "nr-ws"
    workspace.mkdir()
    os.chown(workspace, nonroot, nonroot)
    _kill_daemon_mid_call(name, workspace, nonroot)


def test_daemon_start_kills_orphans_of_sandbox_uids_but_not_live_calls(backend, ws, area):
    orphan_uid = UID_BASE + 7
    # An orphan: a sandbox-uid process whose launcher is gone (double fork: its parent is init).
    subprocess.run(["/bin/sh", "-c", f"setpriv --reuid={orphan_uid} --regid={orphan_uid} --clear-groups "
                    "-- sleep 120 >/dev/null 2>&1 &"], check=True)
    deadline = time.monotonic() + 5
    while not uid_processes(orphan_uid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert uid_processes(orphan_uid)
    live = {}
    worker = threading.Thread(target=lambda: live.update(r=py(backend, "import time; time.sleep(2); print('done')",
                                                                 ws)))
    worker.start()
    time.sleep(1.0)  # the call is running now
    daemon_starting(config=None)
    worker.join()
    assert uid_processes(orphan_uid) == []
    assert live["r"].ok and live["r"].stdout.strip() == "done"


# -- 3: workspace tools never follow a swapped-in symlink -------------------------------------------------


SWAPPER = """
import os, shutil, sys
sub, gone, outside = sys.argv[1] + "/sub", sys.argv[1] + "/gone", sys.argv[2]
while True:
    for step in (lambda: os.rename(sub, gone), lambda: os.symlink(outside, sub), lambda: os.unlink(sub),
                 lambda: os.rename(gone, sub)):
        try:
            step()
        except OSError:
            pass
    shutil.rmtree(gone, ignore_errors=True)
"""


@pytest.mark.parametrize("openat2", [True, False], ids=["openat2", "component-by-component"])
def test_a_folder_swapped_for_a_symlink_never_gets_a_file_written_outside(area, openat2, monkeypatch):
    """A surviving process keeps swapping ``sub`` between a folder and a symlink to a root-only folder while
    root's write_file writes into it; the outside folder must stay empty (the code before the fix wrote there
    a few times in 1000 writes)."""
    from agentd_workspace import write_file

    import agentd.workspace_fs
    from agentd import ToolContext, ToolError

    if not openat2:
        monkeypatch.setattr(agentd.workspace_fs, "_openat2_works", False)
    outside = area / "root-home"
    outside.mkdir(mode=0o700)
    workspace = area / "race-ws"
    workspace.mkdir()
    swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, str(workspace), str(outside)])
    ctx = ToolContext(run_id="race", workspace=workspace)
    written = 0
    try:
        for i in range(1500):
            with contextlib.suppress(ToolError):
                write_file(f"sub/f{i}.txt", "x", ctx)
                written += 1
    finally:
        swapper.kill()
        swapper.wait()
    assert list(outside.iterdir()) == []
    assert written > 0  # the race was real: some writes went through the folder


def test_write_file_replaces_a_hard_link_instead_of_writing_through_it(area):
    from agentd_workspace import read_file, write_file

    from agentd import ToolContext, ToolError

    victim = area / "victim.conf"
    victim.write_text("root's config")
    workspace = area / "hl-ws"
    workspace.mkdir()
    os.link(victim, workspace / "linked.conf")
    ctx = ToolContext(run_id="hl", workspace=workspace)
    if os.stat(workspace).st_uid == victim.stat().st_uid:
        os.chown(workspace, 12345, 12345)  # the workspace belongs to another uid than the linked file
    with pytest.raises(ToolError, match="hard link"):
        read_file("linked.conf", ctx)
    write_file("linked.conf", "overwritten", ctx)
    assert victim.read_text() == "root's config"
    assert (workspace / "linked.conf").read_text() == "overwritten"


def test_ownership_walk_never_chowns_outside(backend, area, ws):
    victim = area / "victim.txt"
    victim.write_text("root's")
    folder = area / "root-dir"
    folder.mkdir()
    (folder / "inner.txt").write_text("root's too")
    py(backend, f"""
        import os
        os.symlink({str(folder)!r}, "dirlink")
        os.symlink({str(victim)!r}, "filelink")
        os.makedirs("a/b/c")
        os.symlink({str(folder)!r}, "a/b/c/deep")
    """, ws)
    py(backend, "print('second call: the workspace is walked again')", ws)
    for path in (victim, folder, folder / "inner.txt"):
        assert path.stat().st_uid == 0


# -- 5: host /tmp, /dev/shm, /var/tmp and their sockets ---------------------------------------------------


def test_host_temporary_folders_and_their_sockets_are_private(backend, ws):
    tag = os.urandom(4).hex()
    sock_path = Path(f"/tmp/agentd-canary-{tag}.sock")
    canary = Canary(sock_path)
    try:
        result = py(backend, f"""
            import socket
            for folder in ("/tmp", "/dev/shm", "/var/tmp"):
                try:
                    open(f"{{folder}}/agentd-escape-{tag}", "w").write("x")
                except OSError as exc:
                    print("refused", folder, exc)
            try:
                s = socket.socket(socket.AF_UNIX); s.connect({str(sock_path)!r}); s.sendall(b"hello")
                print("connected")
            except OSError as exc:
                print("no socket", exc)
        """, ws)
    finally:
        canary.close()
        sock_path.unlink(missing_ok=True)
    assert "connected" not in result.stdout and canary.hits == []
    for folder in ("/tmp", "/dev/shm", "/var/tmp"):
        assert not Path(f"{folder}/agentd-escape-{tag}").exists()


# -- 6: totals, not per process ----------------------------------------------------------------------------


def test_memory_is_bounded_for_the_whole_call(backend, ws):
    if cgroup.parent()[0] is None:
        pytest.skip(f"no cgroup here ({cgroup.parent()[1]}): memory is bounded per process only")
    result = py(backend, """
        import os, time
        kids = []
        for i in range(5):
            pid = os.fork()
            if pid == 0:
                block = bytearray(150 * 1024 * 1024)
                for j in range(0, len(block), 4096):
                    block[j] = 1
                open(f"done-{i}", "w").write("held")
                time.sleep(2)
                os._exit(0)
            kids.append(pid)
        for pid in kids:
            os.waitpid(pid, 0)
    """, ws, Limits(memory_mb=400, wall_s=30, cpu_s=20))
    done = sorted(p.name for p in ws.glob("done-*"))
    assert len(done) < 5, "five processes of 150 MB each fit under a 400 MB limit"
    assert result.memory_exceeded


def test_leftover_call_cgroups_of_a_dead_daemon_are_swept():
    folder, _ = cgroup.parent()
    if folder is None:
        pytest.skip("no cgroup here")
    dead = _dead_pid()
    stale = folder / f"{cgroup.PREFIX}{dead}-0"
    stale.mkdir()
    sleeper = subprocess.Popen(["sleep", "60"])
    (stale / "cgroup.procs").write_text(str(sleeper.pid))
    assert cgroup.sweep() >= 1
    assert not stale.exists() and sleeper.wait(timeout=5) == -signal.SIGKILL


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# -- 7: Landlock, a second layer ---------------------------------------------------------------------------


def test_landlock_denies_what_the_mounts_would_allow(backend, ws):
    if not landlock_abi():
        pytest.skip("this kernel has no Landlock")
    code = """
        import os
        try:
            print(sorted(os.listdir("/")))
        except OSError as exc:
            print("denied", exc.errno)
    """
    with_landlock = py(backend, code, ws)
    without = py(backend, code, ws, landlock=False)
    assert "denied 13" in with_landlock.stdout and "workspace" in without.stdout


def test_selected_backend_names_are_the_ones_tested():
    for name in ("bwrap", "subprocess"):
        if not _usable(name):
            assert select_backend(name).name == name
