"""A memory cgroup per sandboxed call, so ``memory_mb`` bounds the whole call and not each process alone.

cgroup v2 is used where agentd's own cgroup delegates the memory controller to its children (a systemd service
with ``Delegate=yes`` and the daemon in a leaf of its own); else the v1 memory controller (hybrid hosts); else
none, and the limit stays per process (RLIMIT_AS), as ``agentd doctor`` says. Each call's cgroup is named
``agentd-sandbox-<pid>-<n>`` under agentd's own; it is emptied (every process in it killed) and removed when
the call ends, and leftovers of a daemon that died are swept when the next one starts.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PREFIX = "agentd-sandbox-"
_counter = itertools.count()


@dataclass
class CallCgroup:
    """One call's cgroup: ``procs`` is the file a process writes ``0`` to, to join it."""

    path: Path
    version: int

    @property
    def procs(self) -> Path:
        return self.path / "cgroup.procs"

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of this call for going over the memory limit."""
        try:
            if self.version == 2:
                events = dict(line.split() for line in (self.path / "memory.events").read_text().splitlines())
                return int(events.get("oom_kill", 0)) > 0
            return _v1_oom_kill(self.path)
        except (OSError, ValueError):
            return False


def _v1_oom_kill(path: Path) -> bool:
    for line in (path / "memory.oom_control").read_text().splitlines():
        if line.startswith("oom_kill "):
            return int(line.split()[1]) > 0
    return False


def _mounts() -> list[tuple[str, str, str]]:
    """(mount point, file system type, super options) of each mount."""
    found = []
    with contextlib.suppress(OSError), open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            fields = right.split()
            if len(fields) >= 3:
                found.append((left.split()[4], fields[0], fields[2]))
    return found


def _own_paths() -> dict[str, str]:
    """This process's cgroup path per controller list ("" is the v2 hierarchy)."""
    paths = {}
    with contextlib.suppress(OSError), open("/proc/self/cgroup", encoding="utf-8") as fh:
        for line in fh:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                paths[name] = path
    return paths


@lru_cache(maxsize=1)
def parent() -> tuple[Path, int] | tuple[None, str]:
    """(agentd's cgroup folder under which call cgroups go, version), or (None, why none can be used); found
    once per process (the daemon does not move between cgroups)."""
    own = _own_paths()
    mounts = _mounts()
    why = "no cgroup file system is mounted"
    if "" in own:
        for point, fstype, _ in mounts:
            if fstype == "cgroup2":
                folder = Path(point + own[""])
                try:
                    delegated = "memory" in (folder / "cgroup.subtree_control").read_text().split()
                except OSError:
                    delegated = False
                if delegated and os.access(folder, os.W_OK):
                    return folder, 2
                why = (f"cgroup v2 is mounted but agentd's cgroup {own['']} does not delegate the memory "
                       "controller to its children (run the daemon as a systemd service with Delegate=yes)")
    if "memory" in own:
        for point, fstype, options in mounts:
            if fstype == "cgroup" and "memory" in options.split(","):
                folder = Path(point + own["memory"])
                if os.access(folder, os.W_OK):
                    return folder, 1
                why = f"the cgroup v1 memory controller at {folder} is not writable by this user"
    return None, why


def create(memory_bytes: int) -> CallCgroup | None:
    """A fresh cgroup for one call limited to ``memory_bytes`` (no swap), or None where none can be made."""
    folder, version = parent()
    if folder is None:
        return None
    path = folder / f"{PREFIX}{os.getpid()}-{next(_counter)}"
    try:
        path.mkdir()
    except OSError:
        return None
    group = CallCgroup(path, int(version))
    try:
        if group.version == 2:
            (path / "memory.max").write_text(str(memory_bytes))
            with contextlib.suppress(OSError):
                (path / "memory.swap.max").write_text("0")
        else:
            (path / "memory.limit_in_bytes").write_text(str(memory_bytes))
            with contextlib.suppress(OSError):  # only where swap accounting is on
                (path / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
    except OSError:
        destroy(group)
        return None
    return group


def destroy(group: CallCgroup, timeout_s: float = 5.0) -> None:
    """Kill every process left in the cgroup, then remove it."""
    deadline, pause = time.monotonic() + timeout_s, 0.0005
    while time.monotonic() < deadline:
        try:
            pids = [int(p) for p in group.procs.read_text().split()]
        except (OSError, ValueError):
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        try:
            group.path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:  # busy: its last processes are still exiting
            time.sleep(pause)
            pause = min(pause * 2, 0.05)


def sweep() -> int:
    """Remove the call cgroups dead daemons left behind (killing what runs in them); returns how many."""
    folder, version = parent()
    if folder is None:
        return 0
    removed = 0
    for path in folder.glob(PREFIX + "*"):
        owner = path.name[len(PREFIX):].split("-")[0]
        if owner.isdigit() and Path(f"/proc/{owner}").exists():
            continue  # a live daemon's call (several daemons may share one cgroup)
        destroy(CallCgroup(path, int(version)))
        removed += not path.exists()
    return removed
