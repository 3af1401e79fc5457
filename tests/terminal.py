"""Run the `agentd` CLI the way a person does: on a real pseudo-terminal of a chosen size, optionally pressing
Ctrl-C once some text has appeared."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import sys
import termios
import time
from collections.abc import Callable

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def run_in_pty(
    args: list[str], env: dict[str, str], cols: int = 40, rows: int = 24, ctrl_c_after: str | None = None,
    ctrl_c_delay_s: float = 0.0, timeout_s: float = 120.0,
) -> tuple[int, str, float | None]:
    """(exit code, the output without ANSI codes and with LF line ends, and how many seconds after
    ``ctrl_c_after`` first appeared Ctrl-C was pressed, or None when it was not)."""
    seen_at: float | None = None
    pressed: float | None = None

    def on_output(out: bytes, fd: int) -> None:
        nonlocal seen_at, pressed
        if ctrl_c_after and seen_at is None and ctrl_c_after.encode() in out:
            seen_at = time.monotonic()
        if seen_at is not None and pressed is None and time.monotonic() - seen_at >= ctrl_c_delay_s:
            os.write(fd, b"\x03")
            pressed = time.monotonic() - seen_at

    code, text = _session(args, env, cols, rows, timeout_s, on_output)
    return code, text, pressed


def _session(
    args: list[str], env: dict[str, str], cols: int, rows: int, timeout_s: float,
    on_output: Callable[[bytes, int], None],
) -> tuple[int, str]:
    """Run the CLI on a pty, calling ``on_output(everything so far, the pty)`` as output arrives."""
    pid, fd = _spawn(args, env, cols, rows)
    out, chunk = b"", b""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        chunk = _read_some(fd)
        if chunk is None:
            break
        out += chunk
        on_output(out, fd)
    return _reap(pid, fd, out, timed_out=chunk is not None)


def _spawn(args: list[str], env: dict[str, str], cols: int, rows: int) -> tuple[int, int]:
    env = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES")} | {"TERM": "xterm-256color"}
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session leader whose controlling terminal is the pty, sized before exec
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        os.execvpe(sys.executable, [sys.executable, "-m", "agentd", *args], env)
    return pid, fd


def _read_some(fd: int) -> bytes | None:
    """What the terminal shows within 0.1 s (maybe nothing); None once the child closed it."""
    poller = select.poll()  # not select(): a test process may hold descriptors above 1024
    poller.register(fd, select.POLLIN)
    if not poller.poll(100):
        return b""
    try:
        return os.read(fd, 65536) or None
    except OSError:  # the child closed the terminal: it exited
        return None


def _reap(pid: int, fd: int, out: bytes, timed_out: bool) -> tuple[int, str]:
    """The exit code (a child still running at the deadline is killed) and the output as people read it."""
    if timed_out:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), ANSI.sub("", out.decode(errors="replace")).replace("\r\n", "\n")


def converse_in_pty(
    args: list[str], env: dict[str, str], steps: list[tuple[str, int, bytes]], cols: int = 100,
    timeout_s: float = 120.0,
) -> tuple[int, str]:
    """Type into the CLI like a person: each step waits until ``text`` has appeared ``count`` times, then sends
    its keys (``b"\\x03"`` is Ctrl-C, ``b"\\x04"`` Ctrl-D). (exit code, the output as run_in_pty gives it)."""
    pending = list(steps)

    def on_output(out: bytes, fd: int) -> None:
        if pending and ANSI.sub("", out.decode(errors="replace")).count(pending[0][0]) >= pending[0][1]:
            os.write(fd, pending.pop(0)[2])

    return _session(args, env, cols, 24, timeout_s, on_output)
