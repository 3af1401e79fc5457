"""Shared fixtures. Unit tests use the scripted model; integration tests use the real bundled model."""

from __future__ import annotations

import pytest

from agentd.testing import make_test_app


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty AGENTD_HOME for one test."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("AGENTD_HOME", str(h))
    monkeypatch.setenv("AGENTD_DOCTOR_OFFLINE", "1")  # no network: doctor's reachability probes are tested alone
    return h


@pytest.fixture
def scripted(home):
    """Factory: scripted(replies, **kw) -> (app, model) on the test's home."""
    apps = []

    def factory(replies=None, **kwargs):
        app, model = make_test_app(home, replies, **kwargs)
        apps.append(app)
        return app, model

    yield factory
    for app in apps:
        app.close()


@pytest.fixture
def pty_run():
    """Factory: pty_run(args, env=None, timeout=120) -> (exit code, output) of ``python -m agentd ARGS`` on a
    pseudo-terminal, as a user sees it (colours, live updates); the tree under test is on PYTHONPATH."""
    import os
    import pty
    import select
    import subprocess
    import sys
    import time

    def run(args, env=None, timeout=120.0, columns=100):
        leader, follower = pty.openpty()
        import fcntl
        import struct
        import termios

        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns), **(env or {})}
        env.pop("NO_COLOR", None)
        proc = subprocess.Popen([sys.executable, "-m", "agentd", *args], stdin=follower, stdout=follower,
                                stderr=follower, env=env, close_fds=True)
        os.close(follower)
        chunks, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
        code = proc.wait(timeout=10)
        return code, b"".join(chunks).decode("utf-8", "replace")

    return run
