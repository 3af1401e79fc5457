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

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def run_in_pty(
    args: list[str], env: dict[str, str], cols: int = 40, rows: int = 24, ctrl_c_after: str | None = None,
    ctrl_c_delay_s: float = 0.0, timeout_s: float = 120.0,
) -> tuple[int, str, float | None]:
    """(exit code, the output without ANSI codes and with LF line ends, and how many seconds after
    ``ctrl_c_after`` first appeared Ctrl-C was pressed, or None when it was not)."""
    env = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES")} | {"TERM": "xterm-256color"}
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session leader whose controlling terminal is the pty, sized before exec
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        os.execvpe(sys.executable, [sys.executable, "-m", "agentd", *args], env)
    out = b""
    seen_at: float | None = None
    pressed: float | None = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        poller = select.poll()  # not select(): a test process may hold descriptors above 1024
        poller.register(fd, select.POLLIN)
        if poller.poll(100):
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal: it exited
                break
            if not chunk:
                break
            out += chunk
        if ctrl_c_after and seen_at is None and ctrl_c_after.encode() in out:
            seen_at = time.monotonic()
        if seen_at is not None and pressed is None and time.monotonic() - seen_at >= ctrl_c_delay_s:
            os.write(fd, b"\x03")
            pressed = time.monotonic() - seen_at
    else:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    text = ANSI.sub("", out.decode(errors="replace")).replace("\r\n", "\n")
    return os.waitstatus_to_exitcode(status), text, pressed
