"""Supervising one sandboxed process tree: pump its output (keeping head and tail within a limit), enforce the
deadline and the cancel flag, kill the whole group, reap, and make sure no process of the sandbox uid lingers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import IO

log = logging.getLogger(__name__)

INSIDE_WORKSPACE = "/workspace"  # where the workspace appears inside the sandbox


@dataclass
class SandboxResult:
    """What came of one command. ``exit_code`` is None when it died by a signal (``signal`` names it)."""

    exit_code: int | None
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0
    backend: str = ""
    strong: bool = False
    signal: str | None = None
    timed_out: bool = False
    cancelled: bool = False
    stdout_cut: int = 0
    stderr_cut: int = 0
    uid: int | None = None
    workspace_inside: str = INSIDE_WORKSPACE
    memory_exceeded: bool = False  # the call's cgroup hit its memory limit and the kernel killed a process

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class Capture:
    """Keeps the head and the tail of a stream within ``limit`` bytes and counts what was cut between."""

    def __init__(self, limit: int) -> None:
        self.head_limit = max(0, limit * 3 // 4)
        self.tail_limit = max(0, limit - self.head_limit)
        self.head, self.tail, self.cut = bytearray(), bytearray(), 0

    def feed(self, data: bytes) -> None:
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        self.tail += data
        if len(self.tail) > self.tail_limit:
            drop = len(self.tail) - self.tail_limit
            self.cut += drop
            del self.tail[:drop]

    def text(self, stream: str) -> str:
        head, tail = (part.decode("utf-8", errors="replace") for part in (self.head, self.tail))
        return f"{head}\n[... {self.cut} bytes of {stream} cut here ...]\n{tail}" if self.cut else head + tail


def supervise(proc: subprocess.Popen[bytes], stdin: bytes | None, deadline: float, cancel: threading.Event | None,
               result: SandboxResult, out_limit: int) -> None:
    """Pump the output, enforce the deadline and the cancel flag, reap, and fill ``result``."""
    assert proc.stdout is not None and proc.stderr is not None
    if stdin is not None:
        threading.Thread(target=_feed, args=(proc.stdin, stdin), daemon=True).start()
    out, err = Capture(out_limit), Capture(out_limit)
    captures = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    pidfd = os.pidfd_open(proc.pid)
    sel = selectors.DefaultSelector()
    for fd in (*captures, pidfd):
        sel.register(fd, selectors.EVENT_READ)
    status: int | None = None
    exited_at = 0.0
    try:
        while status is None or (sel.get_map() and time.monotonic() - exited_at < 1.0):
            # After the exit, wait a little for the rest of the output; a pipe still held open after that
            # can only be held outside the (dead) tree, so stop waiting.
            if status is None and not (result.timed_out or result.cancelled):
                if time.monotonic() >= deadline:
                    result.timed_out = True
                    kill_group(proc.pid)
                elif cancel is not None and cancel.is_set():
                    result.cancelled = True
                    kill_group(proc.pid)
            for key, _ in sel.select(timeout=0.05):
                if key.fd == pidfd:
                    kill_group(proc.pid)  # leftovers die while the zombie leader still holds the group id
                    status = os.waitpid(proc.pid, 0)[1]
                    exited_at = time.monotonic()
                    sel.unregister(pidfd)
                elif data := os.read(key.fd, 65536):
                    captures[key.fd].feed(data)
                else:
                    sel.unregister(key.fd)
    finally:
        sel.close()
        os.close(pidfd)
        if status is None:  # something raised: never leave a sandbox behind
            kill_group(proc.pid)
            status = os.waitpid(proc.pid, 0)[1]
        proc.returncode = os.waitstatus_to_exitcode(status)
        for stream in (proc.stdout, proc.stderr, proc.stdin):
            if stream is not None:
                stream.close()
    result.stdout, result.stdout_cut = out.text("stdout"), out.cut
    result.stderr, result.stderr_cut = err.text("stderr"), err.cut
    code = proc.returncode
    if code < 0 or 128 < code < 128 + signal.NSIG:  # 128+N also reads an explicit `exit 137` as SIGKILL
        number = -code if code < 0 else code - 128
        result.signal = signal.Signals(number).name if number in set(signal.Signals) else f"signal {number}"
    else:
        result.exit_code = code


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def reap_uid(uid: int, timeout_s: float = 5.0) -> None:
    """Wait until no live process of the sandbox uid is left (a pid namespace dies asynchronously once its
    first process is gone), killing any that linger."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = [pid for pid in _pids() if _uid_of(pid) == uid]
        if not left:
            return
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
    log.warning("processes of sandbox uid %s survived the kill", uid)


LAUNCHERS = ("bwrap", "unshare")  # the root-owned first layer of every live call


def kill_orphans(uid_base: int, uid_span: int) -> int:
    """Kill every live process of a sandbox uid (``uid_base`` .. ``uid_base + uid_span``) that no live sandbox
    launcher owns any more: what a daemon that died left running. Calls of other live daemons on this host
    keep their launcher as an ancestor and are left alone. Returns how many were killed."""
    killed = 0
    for pid in _pids():
        uid = _uid_of(pid)
        if uid is None or not uid_base <= uid < uid_base + uid_span:
            continue
        ancestor = _parent(pid)
        while ancestor > 1 and uid_base <= (_uid_of(ancestor) or 0) < uid_base + uid_span:
            ancestor = _parent(ancestor)
        if ancestor > 1 and _comm(ancestor) in LAUNCHERS:
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed += 1
    return killed


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return int(fh.read().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _uid_of(pid: int) -> int | None:
    """The real uid of a live process; None for a zombie (dead, waiting to be reaped) or a vanished one."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("State:") and line.split()[1] == "Z":
                    return None
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _feed(pipe: IO[bytes], data: bytes) -> None:
    with contextlib.suppress(OSError, ValueError):
        pipe.write(data)
        pipe.close()
