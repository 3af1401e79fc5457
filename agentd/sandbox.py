"""Run a command in a sandbox: the run's workspace is its only writable place, no network unless asked for,
a clean environment, an unprivileged uid, rlimits, and a wall-clock limit that kills the whole process tree.

One function is the whole API: ``run_sandboxed(argv, workspace, limits, network, env, stdin, cancel)``.
Backends are pluggable: ``BACKENDS`` maps a name to a factory of ``Backend`` objects, ``register_backend`` adds
one, and a ``module:attr`` path names one without registering. Built in:

- ``bwrap`` (strong): bubblewrap with fresh pid/net/ipc/uts namespaces and a root made only of read-only system
  paths, the interpreter, extra read-only paths and the workspace (at ``/workspace``).
- ``subprocess`` (weak fallback): ``unshare`` (new pid/net/ipc/uts/mount namespaces, a private /proc) and the
  same uid drop and rlimits, but the host's file system stays visible as far as file permissions allow.

When the daemon runs as root the code runs as a uid derived from the workspace path (``UID_BASE`` + hash), so
two runs never share a uid: they cannot read each other's workspaces or signal each other's processes, and the
process limit is per run. Under another user the code keeps the daemon's uid (bubblewrap then adds a user
namespace).
"""

from __future__ import annotations

import importlib
import logging
import os
import selectors
import shutil
import signal
import subprocess
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

INSIDE_WORKSPACE = "/workspace"
UID_BASE = 2_100_000_000  # far above login users and the usual /etc/subuid ranges, below 2**31
UID_SPAN = 40_000_000
# Files under /etc a program commonly needs; none of them holds a secret. /etc/passwd and /etc/group are
# synthesized so that the host's user names stay outside.
ETC_FILES = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "nsswitch.conf", "hosts",
    "protocols", "services", "mime.types", "magic",
)
ETC_NETWORK_FILES = ("resolv.conf", "gai.conf", "ssl", "ca-certificates", "pki")


class SandboxUnavailable(RuntimeError):
    """No sandbox backend that satisfies the configuration can run here; the message says what to install."""


@dataclass
class Limits:
    """Resource limits for one call. Memory is address space (RLIMIT_AS); processes count threads too."""

    cpu_s: float = 10.0
    wall_s: float = 30.0
    memory_mb: int = 1024
    file_size_mb: int = 64
    max_procs: int = 64
    max_open_files: int = 256
    tmp_mb: int = 64
    output_chars: int = 8000

    def prlimit_args(self) -> list[str]:
        cpu = max(1, int(self.cpu_s + 0.999))
        mb = 1024 * 1024
        # The soft CPU limit sends SIGXCPU; the hard one, a second later, SIGKILL for code that ignores it.
        return [
            f"--cpu={cpu}:{cpu + 1}", f"--as={self.memory_mb * mb}", f"--fsize={self.file_size_mb * mb}",
            f"--nproc={self.max_procs}", f"--nofile={self.max_open_files}", "--core=0",
        ]


@dataclass
class SandboxResult:
    """What came of one sandboxed command. ``exit_code`` is None when it died by a signal."""

    exit_code: int | None
    stdout: str
    stderr: str
    duration_s: float
    backend: str
    strong: bool
    signal: str | None = None
    timed_out: bool = False
    cancelled: bool = False
    stdout_cut: int = 0
    stderr_cut: int = 0
    uid: int | None = None
    workspace_inside: str = INSIDE_WORKSPACE

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass
class Job:
    """Everything a backend needs to build its command line."""

    argv: list[str]
    workspace: Path
    limits: Limits
    network: bool
    uid: int | None
    ro_paths: list[Path] = field(default_factory=list)


@dataclass
class Launch:
    """A backend's answer: the command to spawn, its cwd, fds to pass, and where the workspace appears."""

    argv: list[str]
    cwd: Path
    pass_fds: tuple[int, ...] = ()
    workspace_inside: str = INSIDE_WORKSPACE


class Backend:
    """A way to sandbox a command. Subclasses set ``name``/``strong`` and implement ``launch``."""

    name = "?"
    strong = False

    def probe(self) -> str | None:
        """None when the backend works here, else why not and what to do."""
        return None

    def launch(self, job: Job) -> Launch:
        raise NotImplementedError


def _drop_privileges(uid: int | None) -> list[str]:
    """The setpriv prefix that turns root into ``uid`` with no capabilities and no way to regain any."""
    if uid is None:
        return []
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs",
            "--inh-caps=-all", "--bounding-set=-all", "--"]


class BwrapBackend(Backend):
    """bubblewrap: the sandbox sees only what is mounted. Started as root it needs no user namespace and can
    mount paths an unprivileged user could not reach (the interpreter under /root, the workspace); the code
    itself is then moved to the sandbox uid by setpriv inside."""

    name = "bwrap"
    strong = True

    def probe(self) -> str | None:
        if not shutil.which("bwrap"):
            return "bubblewrap is not installed (apt-get install bubblewrap)"
        job = Job(["/bin/true"], Path("/"), Limits(), network=False, uid=None)
        argv = self._bwrap_args(job, etc_fds=None) + ["--", "/bin/true"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        if done.returncode != 0:
            return f"bwrap cannot create a sandbox here: {done.stderr.strip()[:300]}"
        return None

    def launch(self, job: Job) -> Launch:
        uid = job.uid if job.uid is not None else os.getuid()
        fds = (_data_fd(f"root:x:0:0:root:/root:/bin/sh\nsandbox:x:{uid}:{uid}:sandbox:/tmp:/bin/sh\n"),
               _data_fd(f"root:x:0:\nsandbox:x:{uid}:\n"))
        argv = ["prlimit", *job.limits.prlimit_args(), "--", *self._bwrap_args(job, fds), "--"]
        argv += _drop_privileges(job.uid) + job.argv
        return Launch(argv=argv, cwd=Path("/"), pass_fds=fds)

    def _bwrap_args(self, job: Job, etc_fds: tuple[int, int] | None) -> list[str]:
        root = os.geteuid() == 0
        args = ["bwrap", "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc",
                "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox"]
        if not job.network:
            args.append("--unshare-net")
        if root:
            args += ["--cap-add", "CAP_SETUID,CAP_SETGID,CAP_SETPCAP"] if job.uid is not None else []
        else:
            args += ["--unshare-user"]
        args += ["--ro-bind", "/usr", "/usr"]
        for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            path = Path("/") / name
            if path.is_symlink():
                args += ["--symlink", os.readlink(path), str(path)]
            elif path.is_dir():
                args += ["--ro-bind", str(path), str(path)]
        args += ["--perms", "0755", "--dir", "/etc"]  # made by bwrap itself it would be 0700 when we are root
        etc = ETC_FILES + (ETC_NETWORK_FILES if job.network else ())
        for name in etc:
            source = Path("/etc") / name
            if source.exists():
                args += ["--ro-bind", str(source.resolve()), str(source)]
        if etc_fds is not None:
            args += ["--perms", "0644", "--ro-bind-data", str(etc_fds[0]), "/etc/passwd"]
            args += ["--perms", "0644", "--ro-bind-data", str(etc_fds[1]), "/etc/group"]
        args += ["--proc", "/proc", "--dev", "/dev"]
        tmp_bytes = str(job.limits.tmp_mb * 1024 * 1024)
        args += ["--perms", "1777", "--size", tmp_bytes, "--tmpfs", "/tmp"]
        args += ["--perms", "1777", "--size", tmp_bytes, "--tmpfs", "/dev/shm"]
        made: set[str] = {"/", "/usr", "/etc", "/tmp", "/proc", "/dev"}
        for path in job.ro_paths:
            # Parents are made world-traversable: bwrap would copy e.g. /root's 0700 and lock the uid out.
            for parent in reversed(path.parents):
                if str(parent) not in made:
                    made.add(str(parent))
                    args += ["--perms", "0755", "--dir", str(parent)]
            args += ["--ro-bind-try", str(path), str(path)]
        args += ["--bind", str(job.workspace), INSIDE_WORKSPACE, "--chdir", INSIDE_WORKSPACE]
        return args


class SubprocessBackend(Backend):
    """The fallback: unshare's namespaces, the uid drop and rlimits, but no private file system view."""

    name = "subprocess"
    strong = False

    def probe(self) -> str | None:
        for tool in ("unshare", "prlimit") + (("setpriv",) if os.geteuid() == 0 else ()):
            if not shutil.which(tool):
                return f"{tool} is missing (it comes with util-linux)"
        done = subprocess.run(self._unshare() + ["/bin/true"], capture_output=True, text=True, timeout=10)
        if done.returncode != 0:
            return f"unshare cannot create namespaces here: {done.stderr.strip()[:300]}"
        return None

    def launch(self, job: Job) -> Launch:
        argv = self._unshare(job.network) + _drop_privileges(job.uid)
        # A shell as the namespace's pid 1 keeps the code from being pid 1 (which ignores kill -9 from inside and
        # SIGXCPU); it reports a signal death as 128+N, like bwrap.
        argv += ["prlimit", *job.limits.prlimit_args(), "--", "/bin/sh", "-c", '"$@"; exit $?', "sandbox-init"]
        argv += job.argv
        # cwd is entered (as root) before the uid drop, so the code can use it even when a parent is 0700.
        return Launch(argv=argv, cwd=job.workspace, workspace_inside=str(job.workspace))

    @staticmethod
    def _unshare(network: bool = False) -> list[str]:
        args = ["unshare", "--ipc", "--uts", "--pid", "--kill-child", "--mount-proc"]
        if not network:
            args.append("--net")
        if os.geteuid() != 0:
            args.append("--map-current-user")
        return args + ["--"]


BACKENDS: dict[str, Callable[[], Backend]] = {"bwrap": BwrapBackend, "subprocess": SubprocessBackend}
_probe_cache: dict[tuple[str, int], str | None] = {}
_probe_lock = threading.Lock()
_warned: set[str] = set()


def register_backend(name: str, factory: Callable[[], Backend]) -> None:
    """Make a backend selectable by name (``backend = "name"`` in ``[plugins.code]``)."""
    BACKENDS[name] = factory


def _make_backend(name: str) -> Backend:
    if name in BACKENDS:
        return BACKENDS[name]()
    if ":" in name:
        module, _, attr = name.partition(":")
        return getattr(importlib.import_module(module), attr)()
    known = ", ".join(["auto", *BACKENDS])
    raise SandboxUnavailable(f"unknown sandbox backend {name!r}; choose one of {known} or a 'module:Class' path")


def probe(backend: Backend) -> str | None:
    """The backend's probe, run once per process and uid."""
    key = (backend.name, os.geteuid())
    with _probe_lock:
        if key not in _probe_cache:
            try:
                _probe_cache[key] = backend.probe()
            except (OSError, subprocess.SubprocessError) as exc:
                _probe_cache[key] = f"probe failed: {exc}"
        return _probe_cache[key]


def select_backend(name: str = "auto", require_strong: bool = False) -> Backend:
    """The backend to use; "auto" prefers bwrap, then the weak fallback (with a one-time warning)."""
    if name == "auto":
        strong = BwrapBackend()
        problem = probe(strong)
        if problem is None:
            return strong
        if require_strong:
            raise SandboxUnavailable(f"strong sandbox required but unavailable: {problem}")
        backend: Backend = SubprocessBackend()
        fallback_problem = probe(backend)
        if fallback_problem:
            raise SandboxUnavailable(f"no sandbox can run here: {problem}; fallback: {fallback_problem}")
        _warn_once(backend, f"bubblewrap unavailable ({problem})")
        return backend
    backend = _make_backend(name)
    if require_strong and not backend.strong:
        raise SandboxUnavailable(
            f"sandbox backend {backend.name!r} is weak isolation and require_strong is set; install bubblewrap "
            "and use backend = \"auto\" or \"bwrap\""
        )
    problem = probe(backend)
    if problem:
        raise SandboxUnavailable(f"sandbox backend {backend.name!r} cannot run: {problem}")
    if not backend.strong:
        _warn_once(backend, "configured explicitly")
    return backend


def _warn_once(backend: Backend, why: str) -> None:
    if backend.name not in _warned:
        _warned.add(backend.name)
        log.warning(
            "code runs with WEAK isolation (%s backend, %s): the host file system is visible as far as file "
            "permissions allow; install bubblewrap for the strong sandbox", backend.name, why,
        )


def sandbox_uid(workspace: Path) -> int | None:
    """The uid code for this workspace runs as: one per workspace when we are root, else our own (None)."""
    if os.geteuid() != 0:
        return None
    return UID_BASE + zlib.crc32(str(workspace.resolve()).encode()) % UID_SPAN


def prepare_workspace(workspace: Path, uid: int | None) -> None:
    """Hand the workspace to the sandbox uid (files the daemon wrote there stay root's otherwise).

    Only entries with a single link are chowned: a hard link the code made to a file outside must never make
    the sandbox uid the owner of that file.
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
    env = {
        "PATH": ":".join([*path_prefix, "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TERM": "dumb",
        "USER": "sandbox",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONIOENCODING": "utf-8",
    }
    env.update(extra or {})
    return env


class Capture:
    """Keeps the head and the tail of a stream within ``limit`` bytes and counts what was cut between."""

    def __init__(self, limit: int) -> None:
        self.head_limit = max(0, limit * 3 // 4)
        self.tail_limit = max(0, limit - self.head_limit)
        self.head = bytearray()
        self.tail = bytearray()
        self.cut = 0

    def feed(self, data: bytes) -> None:
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if not data:
            return
        self.tail += data
        if len(self.tail) > self.tail_limit:
            drop = len(self.tail) - self.tail_limit
            self.cut += drop
            del self.tail[:drop]

    def text(self, stream: str) -> str:
        head = self.head.decode("utf-8", errors="replace")
        tail = self.tail.decode("utf-8", errors="replace")
        if not self.cut:
            return head + tail
        return f"{head}\n[... {self.cut} bytes of {stream} cut here ...]\n{tail}"


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
    """Run ``argv`` sandboxed with ``workspace`` as its working (and only writable) folder.

    ``env`` adds to a clean environment; ``ro_paths`` are host paths made readable at the same place (the
    interpreter's prefix, package folders); ``path_prefix`` goes in front of PATH. On timeout or ``cancel``
    the whole process tree is killed. Raises SandboxUnavailable when no suitable backend can run.
    """
    limits = limits or Limits()
    chosen = backend if isinstance(backend, Backend) else select_backend(backend, require_strong)
    if require_strong and not chosen.strong:
        raise SandboxUnavailable(f"backend {chosen.name!r} is weak isolation and require_strong is set")
    workspace = Path(workspace).resolve()
    uid = sandbox_uid(workspace)
    prepare_workspace(workspace, uid)
    job = Job(list(argv), workspace, limits, network, uid, [Path(p) for p in ro_paths])
    launch = chosen.launch(job)
    result = SandboxResult(None, "", "", 0.0, chosen.name, chosen.strong, uid=uid,
                           workspace_inside=launch.workspace_inside)
    if cancel is not None and cancel.is_set():
        _close_fds(launch.pass_fds)
        result.cancelled = True
        return result
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            launch.argv, cwd=launch.cwd, env=clean_env(env, path_prefix), pass_fds=launch.pass_fds,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )
    finally:
        _close_fds(launch.pass_fds)
    _supervise(proc, stdin, started + limits.wall_s, cancel, result, limits.output_chars)
    result.duration_s = round(time.monotonic() - started, 4)
    return result


def _close_fds(fds: Sequence[int]) -> None:
    for fd in fds:
        os.close(fd)


def _supervise(proc: subprocess.Popen, stdin: bytes | None, deadline: float,
               cancel: threading.Event | None, result: SandboxResult, out_limit: int) -> None:
    """Pump output, enforce the deadline and the cancel flag, reap, and fill ``result``."""
    assert proc.stdout is not None and proc.stderr is not None
    if stdin is not None and proc.stdin is not None:
        threading.Thread(target=_feed_stdin, args=(proc.stdin, stdin), daemon=True).start()
    out, err = Capture(out_limit), Capture(out_limit)
    captures = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    sel = selectors.DefaultSelector()
    for fd in captures:
        sel.register(fd, selectors.EVENT_READ)
    pidfd = os.pidfd_open(proc.pid)
    sel.register(pidfd, selectors.EVENT_READ)
    status: int | None = None
    exited_at = 0.0
    try:
        while True:
            now = time.monotonic()
            if status is None and not (result.timed_out or result.cancelled):
                if now >= deadline:
                    result.timed_out = True
                    _kill_group(proc.pid)
                elif cancel is not None and cancel.is_set():
                    result.cancelled = True
                    _kill_group(proc.pid)
            if status is not None and (len(sel.get_map()) == 0 or now - exited_at > 1.0):
                break  # output is complete, or something outside the tree holds the pipes: stop waiting
            for key, _ in sel.select(timeout=0.05):
                fd = int(key.fd)
                if fd == pidfd:
                    _kill_group(proc.pid)  # leftovers die before the leader is reaped and its pid reused
                    _, status = os.waitpid(proc.pid, 0)
                    exited_at = time.monotonic()
                    sel.unregister(pidfd)
                    continue
                data = os.read(fd, 65536)
                if data:
                    captures[fd].feed(data)
                else:
                    sel.unregister(fd)
    finally:
        sel.close()
        os.close(pidfd)
        if status is None:  # an exception escaped: never leave a sandbox behind
            _kill_group(proc.pid)
            _, status = os.waitpid(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        for stream in (proc.stdout, proc.stderr, proc.stdin):
            if stream is not None:
                stream.close()
    result.stdout, result.stdout_cut = out.text("stdout"), out.cut
    result.stderr, result.stderr_cut = err.text("stderr"), err.cut
    _set_exit(result, proc.returncode)


def _set_exit(result: SandboxResult, code: int) -> None:
    # bwrap and the fallback's init shell report a child killed by signal N as 128+N (so does `exit 137`).
    if code < 0 or 128 < code < 128 + signal.NSIG:
        number = -code if code < 0 else code - 128
        result.exit_code = None
        result.signal = signal.Signals(number).name if number in signal.Signals._value2member_map_ else str(number)
    else:
        result.exit_code = code


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _feed_stdin(pipe, data: bytes) -> None:  # type: ignore[no-untyped-def]
    try:
        pipe.write(data)
        pipe.close()
    except (BrokenPipeError, OSError, ValueError):
        pass


def _data_fd(text: str) -> int:
    """A pipe's read end holding ``text`` (small enough for the pipe buffer) for bwrap's --ro-bind-data."""
    read_fd, write_fd = os.pipe()
    os.write(write_fd, text.encode())
    os.close(write_fd)
    return read_fd
