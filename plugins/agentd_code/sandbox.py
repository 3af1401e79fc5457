"""Run a command in a sandbox: the workspace is its only writable place, no network unless granted, a clean
environment, an unprivileged uid, rlimits, and a wall-clock limit or cancel flag that kills the whole tree.

The one function callers use is ``run_sandboxed``. Backends are pluggable: ``BACKENDS`` maps a name to a
factory of ``Backend`` objects, ``register_backend`` adds one, and a ``"module:Class"`` name loads one. Built in:

- ``bwrap`` (strong): bubblewrap with new pid/net/ipc/uts namespaces and a root file system holding only
  read-only system folders, the given read-only paths and the workspace (at ``/workspace``).
- ``subprocess`` (weak fallback): ``unshare`` (new pid/net/ipc/uts/mount namespaces, a private /proc) with the
  same uid drop and rlimits, but the host's file system stays visible as far as file permissions allow.

When the daemon is root, code runs as a uid derived from the workspace path (``UID_BASE`` + hash): two runs
never share a uid, so they cannot read each other's workspaces or signal each other's processes, and the
process limit is per run. Under another user the code keeps the daemon's uid (bubblewrap adds a user namespace).
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import subprocess
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .process import INSIDE_WORKSPACE, Capture, SandboxResult, reap_uid, supervise

__all__ = [
    "BACKENDS", "Backend", "BwrapBackend", "Capture", "Job", "Launch", "Limits", "SandboxResult",
    "SandboxUnavailable", "SubprocessBackend", "clean_env", "prepare_workspace", "probe", "register_backend",
    "run_sandboxed", "sandbox_uid", "select_backend",
]

log = logging.getLogger(__name__)

UID_BASE = 2_100_000_000  # far above login users and the usual /etc/subuid ranges, below 2**31
UID_SPAN = 40_000_000
# /etc entries programs commonly need and that hold no secret; passwd and group are synthesized instead.
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "nsswitch.conf", "hosts",
             "protocols", "services", "mime.types", "magic")
ETC_NETWORK_FILES = ("resolv.conf", "gai.conf", "ssl", "ca-certificates", "pki")


class SandboxUnavailable(RuntimeError):
    """No backend that satisfies the configuration can run here; the message says what to install or set."""


@dataclass
class Limits:
    """Limits of one call. Memory is address space (RLIMIT_AS); max_procs counts the uid's threads too."""

    cpu_s: float = 10.0
    wall_s: float = 30.0
    memory_mb: int = 1024
    file_size_mb: int = 64
    max_procs: int = 64
    max_open_files: int = 256
    tmp_mb: int = 64  # size of the private /tmp and /dev/shm (bwrap)
    output_chars: int = 8000  # kept per stream (counted in bytes), the middle is cut

    def prlimit_args(self) -> list[str]:
        cpu, mb = max(1, int(self.cpu_s + 0.999)), 1024 * 1024
        # The soft CPU limit sends SIGXCPU; the hard one, a second later, SIGKILL for code that ignores it.
        return [f"--cpu={cpu}:{cpu + 1}", f"--as={self.memory_mb * mb}", f"--fsize={self.file_size_mb * mb}",
                f"--nproc={self.max_procs}", f"--nofile={self.max_open_files}", "--core=0"]


@dataclass
class Job:
    """What a backend needs to build its command line."""

    argv: list[str]
    workspace: Path
    limits: Limits
    network: bool
    uid: int | None  # None: keep the daemon's uid
    ro_paths: list[Path] = field(default_factory=list)


@dataclass
class Launch:
    """A backend's answer. A signal death must show as a negative code or as 128+N (as shells report it)."""

    argv: list[str]
    cwd: Path
    pass_fds: tuple[int, ...] = ()
    workspace_inside: str = INSIDE_WORKSPACE


class Backend:
    """A way to sandbox a command: set ``name`` and ``strong``, implement ``launch`` (and ``probe``)."""

    name = "?"
    strong = False

    def probe(self) -> str | None:
        """None when the backend works here, else why not and what to do."""
        return None

    def launch(self, job: Job) -> Launch:
        raise NotImplementedError


def drop_privileges(uid: int | None) -> list[str]:
    """The setpriv prefix turning root into ``uid`` with no groups, no capabilities and no way to gain any."""
    if uid is None:
        return []
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs",
            "--inh-caps=-all", "--bounding-set=-all", "--"]


class BwrapBackend(Backend):
    """bubblewrap. Started as root it needs no user namespace and can mount paths an unprivileged uid could not
    reach (an interpreter under /root, a workspace under a 0700 home); setpriv inside then moves the code to
    the sandbox uid. (bwrap run as root with only ``--uid`` would keep uid 0 outside its user namespace.)"""

    name = "bwrap"
    strong = True

    def probe(self) -> str | None:
        if not shutil.which("bwrap"):
            return "bubblewrap is not installed (apt-get install bubblewrap)"
        args = self.bwrap_args(Job([], Path("/"), Limits(), network=False, uid=None))
        done = subprocess.run([*args, "--", "/bin/true"], capture_output=True, text=True, timeout=10)
        return f"bwrap cannot create a sandbox here: {done.stderr.strip()[:300]}" if done.returncode else None

    def launch(self, job: Job) -> Launch:
        uid = os.getuid() if job.uid is None else job.uid
        fds = (_data_fd(f"root:x:0:0:root:/root:/bin/sh\nsandbox:x:{uid}:{uid}:sandbox:/tmp:/bin/sh\n"),
               _data_fd(f"root:x:0:\nsandbox:x:{uid}:\n"))
        argv = ["prlimit", *job.limits.prlimit_args(), "--", *self.bwrap_args(job, fds), "--"]
        return Launch(argv=argv + drop_privileges(job.uid) + job.argv, cwd=Path("/"), pass_fds=fds)

    def bwrap_args(self, job: Job, etc_fds: tuple[int, int] | None = None) -> list[str]:
        """bwrap's options for ``job``: namespaces, then the file system, piece by piece."""
        args = ["bwrap", "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                "--unshare-cgroup-try", "--hostname", "sandbox"]
        args += [] if job.network else ["--unshare-net"]
        if os.geteuid() != 0:
            args += ["--unshare-user"]
        elif job.uid is not None:
            args += ["--cap-add", "CAP_SETUID,CAP_SETGID,CAP_SETPCAP"]  # for setpriv only; it drops them all
        args += ["--ro-bind", "/usr", "/usr"]
        for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            path = Path("/") / name
            if path.is_symlink():
                args += ["--symlink", os.readlink(path), str(path)]
            elif path.is_dir():
                args += ["--ro-bind", str(path), str(path)]
        # Folders bwrap makes itself copy the host's mode (0700 for /root) or get 0700: make them traversable.
        args += ["--perms", "0755", "--dir", "/etc"]
        for name in ETC_FILES + (ETC_NETWORK_FILES if job.network else ()):
            source = Path("/etc") / name
            if source.exists():
                args += ["--ro-bind", str(source.resolve()), str(source)]
        if etc_fds is not None:
            args += ["--perms", "0644", "--ro-bind-data", str(etc_fds[0]), "/etc/passwd"]
            args += ["--perms", "0644", "--ro-bind-data", str(etc_fds[1]), "/etc/group"]
        tmp = str(job.limits.tmp_mb * 1024 * 1024)
        args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", tmp, "--tmpfs", "/tmp",
                 "--perms", "1777", "--size", tmp, "--tmpfs", "/dev/shm"]
        made = {"/", "/usr", "/etc", "/tmp", "/proc", "/dev"}
        for path in job.ro_paths:
            for parent in reversed(path.parents):
                if str(parent) not in made:
                    made.add(str(parent))
                    args += ["--perms", "0755", "--dir", str(parent)]
            args += ["--ro-bind-try", str(path), str(path)]
        return args + ["--bind", str(job.workspace), INSIDE_WORKSPACE, "--chdir", INSIDE_WORKSPACE]


class SubprocessBackend(Backend):
    """The weak fallback: unshare's namespaces, the uid drop and rlimits, but no private file system view."""

    name = "subprocess"
    strong = False

    def probe(self) -> str | None:
        for tool in ("unshare", "prlimit", "setpriv"):
            if not shutil.which(tool):
                return f"{tool} is missing (it comes with util-linux)"
        done = subprocess.run([*self.unshare_args(False), "/bin/true"], capture_output=True, text=True, timeout=10)
        return f"unshare cannot create namespaces here: {done.stderr.strip()[:300]}" if done.returncode else None

    def launch(self, job: Job) -> Launch:
        # A shell as the namespace's pid 1 keeps the code from being pid 1, which would ignore SIGXCPU and a
        # `kill -9` from inside; like bwrap, it reports a signal death as 128+N.
        argv = [*self.unshare_args(job.network), *drop_privileges(job.uid), "prlimit", *job.limits.prlimit_args(),
                "--", "/bin/sh", "-c", '"$@"; exit $?', "sandbox-init", *job.argv]
        # Popen enters cwd as root before the uid drop, so the code can use it even below a 0700 folder.
        return Launch(argv=argv, cwd=job.workspace, workspace_inside=str(job.workspace))

    @staticmethod
    def unshare_args(network: bool) -> list[str]:
        args = ["unshare", "--ipc", "--uts", "--pid", "--kill-child", "--mount-proc"]
        args += [] if network else ["--net"]
        args += [] if os.geteuid() == 0 else ["--map-current-user"]
        return args + ["--"]


BACKENDS: dict[str, Callable[[], Backend]] = {"bwrap": BwrapBackend, "subprocess": SubprocessBackend}
_probes: dict[tuple[str, int], str | None] = {}
_probe_lock = threading.Lock()
_warned: set[str] = set()


def register_backend(name: str, factory: Callable[[], Backend]) -> None:
    """Make a backend selectable by name (``backend = "name"`` in ``[plugins.code]``)."""
    BACKENDS[name] = factory


def probe(backend: Backend) -> str | None:
    """The backend's probe, run once per process and effective uid."""
    key = (backend.name, os.geteuid())
    with _probe_lock:
        if key not in _probes:
            try:
                _probes[key] = backend.probe()
            except (OSError, subprocess.SubprocessError) as exc:
                _probes[key] = f"probe failed: {exc}"
        return _probes[key]


def select_backend(name: str = "auto", require_strong: bool = False) -> Backend:
    """The backend to use; "auto" takes bwrap, else the weak fallback with a one-time warning."""
    if name == "auto":
        strong = BwrapBackend()
        problem = probe(strong)
        if problem is None:
            return strong
        if require_strong:
            raise SandboxUnavailable(f"require_strong is set but the strong sandbox cannot run: {problem}")
        weak = SubprocessBackend()
        weak_problem = probe(weak)
        if weak_problem:
            raise SandboxUnavailable(f"no sandbox can run here: {problem}; fallback: {weak_problem}")
        _warn_once(weak, f"bubblewrap unavailable: {problem}")
        return weak
    backend = _make_backend(name)
    if require_strong and not backend.strong:
        raise SandboxUnavailable(f"backend {backend.name!r} is weak isolation and require_strong is set; "
                                 "install bubblewrap and use backend = \"auto\" or \"bwrap\"")
    problem = probe(backend)
    if problem:
        raise SandboxUnavailable(f"sandbox backend {backend.name!r} cannot run: {problem}")
    if not backend.strong:
        _warn_once(backend, "chosen in the settings")
    return backend


def _make_backend(name: str) -> Backend:
    if name in BACKENDS:
        return BACKENDS[name]()
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)()
        except (ImportError, AttributeError) as exc:
            raise SandboxUnavailable(f"cannot load sandbox backend {name!r}: {exc}") from None
    raise SandboxUnavailable(f"unknown sandbox backend {name!r}; choose one of auto, {', '.join(BACKENDS)} "
                             "or a 'module:Class' path")


def _warn_once(backend: Backend, why: str) -> None:
    if backend.name not in _warned:
        _warned.add(backend.name)
        log.warning("code runs with WEAK isolation (backend %s; %s): the host file system is visible as far as "
                    "permissions allow; install bubblewrap for the strong sandbox", backend.name, why)


def sandbox_uid(workspace: Path) -> int | None:
    """The uid code in this workspace runs as: one per workspace when we are root, else ours (None)."""
    if os.geteuid() != 0:
        return None
    return UID_BASE + zlib.crc32(str(Path(workspace).resolve()).encode()) % UID_SPAN


def prepare_workspace(workspace: Path, uid: int | None) -> None:
    """Hand the workspace to the sandbox uid; files the daemon wrote there would stay read-only otherwise.

    Only entries with a single link are chowned: a hard link the code made to a file elsewhere must never make
    the sandbox uid that file's owner. No sandbox process is alive meanwhile: every call kills its tree.
    """
    workspace.mkdir(parents=True, exist_ok=True)
    if uid is None:
        return
    os.chown(workspace, uid, uid)
    os.chmod(workspace, 0o700)  # other runs' uids must not look in
    for folder, dirs, files in os.walk(workspace):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            if st.st_uid != uid and (name in dirs or st.st_nlink == 1):
                os.lchown(path, uid, uid)


def clean_env(extra: dict[str, str] | None = None, path_prefix: Sequence[str] = ()) -> dict[str, str]:
    """A fresh environment: nothing of the daemon's own (API keys and the like) is passed on."""
    env = {"PATH": ":".join([*path_prefix, "/usr/local/bin", "/usr/bin", "/bin"]), "HOME": "/tmp",
           "TMPDIR": "/tmp", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TERM": "dumb", "USER": "sandbox",
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
    return env | dict(extra or {})


def run_sandboxed(
    argv: Sequence[str],
    workspace: Path,
    limits: Limits | None = None,
    network: bool = False,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
    cancel: threading.Event | None = None,
    *,
    backend: str | Backend = "auto",
    require_strong: bool = False,
    ro_paths: Sequence[Path] = (),
    path_prefix: Sequence[str] = (),
) -> SandboxResult:
    """Run ``argv`` sandboxed, with ``workspace`` as its current and only writable folder.

    ``env`` adds to a clean environment; ``ro_paths`` are host paths readable at the same place inside (an
    interpreter's prefix, package folders); ``path_prefix`` goes in front of PATH. A timeout or ``cancel``
    kills every process of the call. Raises SandboxUnavailable when no suitable backend can run.
    """
    limits = limits or Limits()
    chosen = backend if isinstance(backend, Backend) else select_backend(backend, require_strong)
    if require_strong and not chosen.strong:
        raise SandboxUnavailable(f"backend {chosen.name!r} is weak isolation and require_strong is set")
    workspace = Path(workspace).resolve()
    uid = sandbox_uid(workspace)
    prepare_workspace(workspace, uid)
    result = SandboxResult(None, backend=chosen.name, strong=chosen.strong, uid=uid)
    if cancel is not None and cancel.is_set():
        result.cancelled = True
        return result
    launch = chosen.launch(Job(list(argv), workspace, limits, network, uid, [Path(p) for p in ro_paths]))
    result.workspace_inside = launch.workspace_inside
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            launch.argv, cwd=launch.cwd, env=clean_env(env, path_prefix), pass_fds=launch.pass_fds,
            stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise SandboxUnavailable(f"cannot start the sandbox: {exc.filename} is missing") from None
    finally:
        for fd in launch.pass_fds:
            os.close(fd)
    supervise(proc, stdin, started + limits.wall_s, cancel, result, limits.output_chars)
    if (result.timed_out or result.cancelled) and uid is not None:
        reap_uid(uid)
    result.duration_s = round(time.monotonic() - started, 4)
    return result


def _data_fd(text: str) -> int:
    """A pipe's read end holding ``text`` (small enough for the pipe buffer), for bwrap's --ro-bind-data."""
    read_fd, write_fd = os.pipe()
    os.write(write_fd, text.encode())
    os.close(write_fd)
    return read_fd
