"""Containment of real sandboxes, each checked from outside by its side effect, against both backends.

The tests work in a world-traversable folder under /tmp (pytest's own tmp folder is 0700 root, which would hide
everything from the sandbox uid anyway and make the weak backend look stronger than it is).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from agentd_code.sandbox import Limits, SandboxUnavailable, probe, run_sandboxed, select_backend
from sandbox_fixtures import _usable

pytestmark = pytest.mark.integration  # the backend, area and ws fixtures are in conftest.py


def py(backend, code: str, workspace: Path, limits: Limits | None = None, **kwargs):
    """Run python code in the sandbox with the interpreter the plugin would pick for this backend."""
    from agentd_code.execution import choose_interpreter
    from agentd_code.settings import CodeSettings

    interp = choose_interpreter(CodeSettings(), backend)
    return run_sandboxed([interp.executable, "-c", textwrap.dedent(code)], workspace, limits or Limits(),
                         backend=backend, ro_paths=interp.ro_paths, **kwargs)


def uid_processes(uid: int) -> list[int]:
    """Live processes of ``uid`` (zombies are dead already; the host's init reaps them)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = dict(line.split(":", 1) for line in (entry / "status").read_text().splitlines())
            except (OSError, ValueError):
                continue
            if int(fields["Uid"].split()[0]) == uid and not fields["State"].strip().startswith("Z"):
                pids.append(int(entry.name))
    return pids


class _Hits(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's naming
        _Hits.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"reached")

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Hits.hits = []
    httpd = ThreadingHTTPServer(("0.0.0.0", 0), _Hits)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1], _Hits.hits
    httpd.shutdown()


NETWORK_CODE = """
import socket, urllib.request
for url in ("http://127.0.0.1:{port}/urllib", "http://{ip}:{port}/external"):
    try:
        urllib.request.urlopen(url, timeout=3).read()
    except Exception as exc:
        print("blocked", url, exc)
try:
    s = socket.create_connection(("127.0.0.1", {port}), timeout=3)
    s.sendall(b"GET /raw HTTP/1.0\\r\\n\\r\\n"); s.recv(100)
except Exception as exc:
    print("raw blocked", exc)
"""


def _host_ip() -> str:
    probe_socket = __import__("socket").socket(2, 2)
    try:
        probe_socket.connect(("10.255.255.255", 1))
        return probe_socket.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    finally:
        probe_socket.close()


def test_no_network_but_opt_in_works(backend, ws, server):
    port, hits = server
    code = NETWORK_CODE.format(port=port, ip=_host_ip())
    py(backend, code, ws)
    assert hits == []
    py(backend, code, ws, network=True)  # the same code with network granted does reach the server
    assert "/urllib" in hits and "/raw" in hits


def test_cannot_read_root_only_file(backend, area, ws):
    secret = area / "secret.txt"
    secret.write_text("canary-" + uuid.uuid4().hex)
    secret.chmod(0o600)
    py(backend, f"""
        try:
            data = open({str(secret)!r}).read()
        except Exception as exc:
            data = repr(exc)
        open("out.txt", "w").write(data)
    """, ws)
    assert (ws / "out.txt").exists()
    assert secret.read_text() not in (ws / "out.txt").read_text()


def test_bwrap_hides_unmounted_world_readable_files(area, ws):
    if _usable("bwrap"):
        pytest.skip("bubblewrap unavailable")
    visible = area / "public.txt"
    visible.write_text("public-" + uuid.uuid4().hex)
    visible.chmod(0o644)
    backend = select_backend("bwrap")
    py(backend, f"""
        import os
        try:
            data = open({str(visible)!r}).read()
        except Exception as exc:
            data = repr(exc)
        open("out.txt", "w").write(data + str(os.path.isdir("/workspace")))
    """, ws)
    text = (ws / "out.txt").read_text()
    assert visible.read_text() not in text and text.endswith("True")


def test_cannot_write_outside_workspace(backend, area, ws):
    closed = area / "closed"
    closed.mkdir(mode=0o755)
    tag = uuid.uuid4().hex[:8]
    targets = [closed / "x.txt", area / "y.txt", Path(f"/usr/agentd-sbx-{tag}"), Path(f"/etc/agentd-sbx-{tag}")]
    if backend.strong:  # the fallback shares the host's world-writable folders; bwrap shows none of them
        shared = area / "shared"
        shared.mkdir()
        shared.chmod(0o777)
        targets.append(shared / "z.txt")
    result = py(backend, f"""
        for path in {[str(t) for t in targets]!r}:
            try:
                open(path, "w").write("escaped")
            except Exception as exc:
                print(path, exc)
        open("inside.txt", "w").write("ok")
    """, ws)
    escaped = [t for t in targets if t.exists()]
    for path in escaped:
        path.unlink()
    assert (ws / "inside.txt").read_text() == "ok", result.stderr
    assert escaped == []
    assert (ws / "inside.txt").stat().st_uid not in (0, os.getuid())  # written by the unprivileged sandbox uid


def test_cannot_see_or_signal_other_processes(backend, ws):
    outsider = subprocess.Popen(["sleep", "60"])
    try:
        py(backend, f"""
            import os
            open("seen.txt", "w").write(str(os.path.exists("/proc/{outsider.pid}/status")))
            for sig in (9, 15):
                try:
                    os.kill({outsider.pid}, sig)
                except Exception as exc:
                    print(exc)
        """, ws)
        time.sleep(0.2)
        assert outsider.poll() is None
        assert (ws / "seen.txt").read_text() == "False"  # a fresh pid namespace in both backends
    finally:
        outsider.kill()
        outsider.wait()


def test_fork_bomb_is_contained(backend, ws):
    limits = Limits(max_procs=16, wall_s=3)
    result = py(backend, """
        import os, time
        while True:
            try:
                if os.fork() == 0:
                    fd = os.open("forks.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
                    os.write(fd, b"x")
                    os.close(fd)
            except OSError:
                time.sleep(0.01)
    """, ws, limits)
    forks = (ws / "forks.log").stat().st_size
    assert 1 <= forks <= limits.max_procs  # no process ever exits, so every fork beyond the limit failed
    assert result.timed_out
    assert uid_processes(result.uid) == []


def test_memory_bomb_is_stopped(backend, ws):
    limits = Limits(memory_mb=200)
    py(backend, """
        blocks = []
        while True:
            blocks.append(bytearray(10 * 1024 * 1024))
            open("allocated.txt", "w").write(str(len(blocks) * 10))
    """, ws, limits)
    assert 0 < int((ws / "allocated.txt").read_text()) <= limits.memory_mb


def test_cpu_loop_is_stopped(backend, ws):
    limits = Limits(cpu_s=1, wall_s=120)
    result = py(backend, """
        import time
        next_mark = 0.0
        while True:
            if time.process_time() >= next_mark:
                open("cpu.txt", "w").write(str(time.process_time()))
                next_mark += 0.1
    """, ws, limits)
    assert 0 < float((ws / "cpu.txt").read_text()) <= limits.cpu_s + 1.0  # soft limit, then the hard one
    assert result.signal in ("SIGXCPU", "SIGKILL") and not result.timed_out


def test_disk_filling_write_is_stopped(backend, ws):
    limits = Limits(file_size_mb=1)
    result = py(backend, """
        with open("big.bin", "wb") as fh:
            for _ in range(50):
                fh.write(b"\\0" * 100_000)
                fh.flush()
    """, ws, limits)
    assert (ws / "big.bin").stat().st_size <= 1024 * 1024
    assert "File too large" in result.stderr


def test_environment_canary_is_not_visible(backend, ws, monkeypatch):
    canary = "canary-" + uuid.uuid4().hex
    monkeypatch.setenv("AGENTD_TEST_CANARY", canary)
    py(backend, f"""
        import os
        found = [repr(dict(os.environ))]
        for pid in ("1", str(os.getppid()), "{os.getpid()}"):
            try:
                found.append(open(f"/proc/{{pid}}/environ", "rb").read().decode(errors="replace"))
            except Exception as exc:
                found.append(repr(exc))
        open("env.txt", "w").write("\\n".join(found))
    """, ws)
    text = (ws / "env.txt").read_text()
    assert "PATH" in text and canary not in text
    assert os.environ["AGENTD_TEST_CANARY"] == canary  # the canary was really in the daemon's environment


GRANDCHILD_CODE = """
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        while True:
            with open("ticks.txt", "a") as fh:
                fh.write("x")
            time.sleep(0.05)
    os._exit(0)
time.sleep(3600)
"""


def _ticks_stop(ws: Path) -> None:
    ticks = ws / "ticks.txt"
    assert ticks.exists() and ticks.stat().st_size > 0  # the grandchild did run
    size = ticks.stat().st_size
    time.sleep(0.5)
    assert ticks.stat().st_size == size


def test_timeout_kills_the_whole_tree(backend, ws):
    result = py(backend, GRANDCHILD_CODE, ws, Limits(wall_s=1.5))
    assert result.timed_out
    _ticks_stop(ws)
    assert uid_processes(result.uid) == []


def test_cancel_kills_the_whole_tree(backend, ws):
    cancel = threading.Event()
    threading.Timer(1.5, cancel.set).start()
    result = py(backend, GRANDCHILD_CODE, ws, Limits(wall_s=60), cancel=cancel)
    assert result.cancelled and not result.timed_out
    _ticks_stop(ws)


def test_background_process_does_not_outlive_the_call(backend, ws):
    result = py(backend, GRANDCHILD_CODE.replace("time.sleep(3600)", "time.sleep(0.5)"), ws)
    assert result.exit_code == 0
    _ticks_stop(ws)


def test_second_run_cannot_see_first_runs_workspace(backend, area):
    first, second = area / "run1", area / "run2"
    first.mkdir()
    second.mkdir()
    secret = "first-run-" + uuid.uuid4().hex
    py(backend, f"open('secret.txt', 'w').write({secret!r})", first)
    assert (first / "secret.txt").read_text() == secret
    py(backend, f"""
        import glob, os
        found = []
        for path in glob.glob({str(area)!r} + "/*/secret.txt") + [{str(first / "secret.txt")!r}]:
            try:
                found.append(open(path).read())
            except Exception as exc:
                found.append(repr(exc))
        found.append(str(os.listdir(".")))
        open("found.txt", "w").write("\\n".join(found))
    """, second)
    assert secret not in (second / "found.txt").read_text()


def test_output_is_truncated_with_a_note(backend, ws):
    result = py(backend, "print('a' * 100_000); print('END')", ws, Limits(output_chars=1000))
    assert result.stdout_cut > 90_000
    assert "cut here" in result.stdout and result.stdout.rstrip().endswith("END")
    assert len(result.stdout) < 1200


def test_stdin_reaches_the_code(backend, ws):
    result = py(backend, "import sys; print(sys.stdin.read().upper())", ws, stdin=b"hello")
    assert result.stdout.strip() == "HELLO"


def test_weak_backend_is_marked_weak(ws):
    if _usable("subprocess"):
        pytest.skip("fallback unavailable")
    backend = select_backend("subprocess")
    assert probe(backend) is None and not backend.strong
    with pytest.raises(SandboxUnavailable, match="require_strong"):
        select_backend("subprocess", require_strong=True)


def test_sandbox_python_is_the_daemons_under_bwrap(ws):
    if _usable("bwrap"):
        pytest.skip("bubblewrap unavailable")
    result = py(select_backend("bwrap"), "import sys; print(sys.version)", ws)
    assert result.stdout.strip() == sys.version


def test_kill_signal_is_reported(backend, ws):
    result = run_sandboxed(["/bin/sh", "-c", "kill -9 $$"], ws, backend=backend)
    assert result.exit_code is None and result.signal == signal.Signals.SIGKILL.name
