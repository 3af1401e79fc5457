"""Run a command in a sandbox: the workspace is its only writable place, no network unless granted, a clean
environment, an unprivileged uid, rlimits, and a wall-clock limit or cancel flag that kills the whole tree.

The one function callers use is ``run_sandboxed``. Backends are pluggable: ``BACKENDS`` maps a name to a
factory of ``Backend`` objects, ``register_backend`` adds one, and a ``"module:Class"`` name loads one. Built in:

- ``bwrap`` (strong): bubblewrap with new pid/net/ipc/uts namespaces and a root file system holding only
  read-only system folders, the given read-only paths and the workspace (at ``/workspace``).
- ``subprocess`` (weak fallback): ``unshare`` (new pid/net/ipc/uts/mount namespaces) and agentd's own
  confinement step (confine.py), which builds the same file system (``fs_plan``) and pivots into it; the same
  uid drop and rlimits. Weak only in being agentd's own code rather than bubblewrap.

Both add Landlock where the kernel has it, a memory cgroup per call where the host allows one (cgroup.py), and
a parent-death signal on every layer, so a daemon that dies takes its sandboxes with it.

When the daemon is root, code runs as a uid derived from the workspace path (``UID_BASE`` + hash): two runs
never share a uid, so they cannot read each other's workspaces or signal each other's processes, and the
process limit is per run. Under another user the code keeps the daemon's uid (in a user namespace).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import marshal
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from agentd.tools import WorkspaceWalk

from . import cgroup
from .process import INSIDE_WORKSPACE, Capture, SandboxResult, reap_uid, supervise

__all__ = [
    "BACKENDS", "Backend", "BwrapBackend", "Capture", "Job", "Launch", "Limits", "SandboxResult",
    "SandboxUnavailable", "SubprocessBackend", "clean_env", "prepare_mount_points", "prepare_workspace", "probe", "register_backend",
    "run_sandboxed", "sandbox_uid", "select_backend",
]

log = logging.getLogger(__name__)

UID_BASE = 2_100_000_000  # far above login users and the usual /etc/subuid ranges, below 2**31
UID_SPAN = 40_000_000
WALK_LIMIT = 50_000  # workspace entries the daemon walks at most per call (chown, artifacts, size)
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
    tmp_mb: int = 64  # size of each private /tmp, /var/tmp and /dev/shm
    cgroup: bool = True  # bound the call's total memory with a cgroup where the host allows one
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
    landlock: bool = True  # add the Landlock layer where the kernel has it
    cgroup_procs: Path | None = None  # the call's cgroup.procs, which the first process joins
    confine_by_command: bool = False  # the command applies the Landlock step itself (see Launch.env)
    folders: list[tuple[Path, str, bool]] = field(default_factory=list)  # attached: (host path, name, writable)


@dataclass
class Launch:
    """A backend's answer. A signal death must show as a negative code or as 128+N (as shells report it)."""

    argv: list[str]
    cwd: Path
    pass_fds: tuple[int, ...] = ()
    workspace_inside: str = INSIDE_WORKSPACE
    env: dict[str, str] = field(default_factory=dict)  # added to the command's environment


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
    """The setpriv prefix turning root into ``uid`` with no groups, no capabilities and no way to gain any; the
    parent-death signal is set again after the uid change (which clears it)."""
    if uid is None:
        return []
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs",
            "--inh-caps=-all", "--bounding-set=-all", "--pdeathsig=KILL", "--"]


DIE_WITH_PARENT = ["setpriv", "--pdeathsig=KILL", "--"]  # the first layer dies with the daemon's thread


def fs_plan(job: Job, uid: int) -> list[tuple[str, ...]]:
    """The sandbox's file system, as (kind, ..., target) steps both backends build: read-only system folders,
    a few harmless /etc files and synthesized passwd/group, /proc, a minimal /dev, private /tmp, /var/tmp and
    /dev/shm, the read-only paths, the workspace at /workspace and the attached folders at /workspace/<name>
    (read-only unless attached rw). Nothing else of the host is visible."""
    plan: list[tuple[str, ...]] = [("ro-bind", "/usr", "/usr")]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            plan.append(("symlink", os.readlink(path), str(path)))
        elif path.is_dir():
            plan.append(("ro-bind", str(path), str(path)))
    # Folders made along the way copy the host's mode (0700 for /root) or get 0700: make them traversable.
    plan.append(("dir", "0755", "/etc"))
    for name in ETC_FILES + (ETC_NETWORK_FILES if job.network else ()):
        source = Path("/etc") / name
        if source.exists():
            plan.append(("ro-bind", str(source.resolve()), str(source)))
    plan.append(("data", f"root:x:0:0:root:/root:/bin/sh\nsandbox:x:{uid}:{uid}:sandbox:/tmp:/bin/sh\n",
                 "/etc/passwd"))
    plan.append(("data", f"root:x:0:\nsandbox:x:{uid}:\n", "/etc/group"))
    tmp = str(job.limits.tmp_mb * 1024 * 1024)
    plan += [("proc", "/proc"), ("dev", "/dev"), ("tmpfs", tmp, "1777", "/tmp"), ("dir", "0755", "/var"),
             ("tmpfs", tmp, "1777", "/var/tmp"), ("tmpfs", tmp, "1777", "/dev/shm")]
    made = {"/", "/usr", "/etc", "/tmp", "/proc", "/dev", "/var"}
    for path in job.ro_paths:
        for parent in reversed(path.parents):
            if str(parent) not in made:
                made.add(str(parent))
                plan.append(("dir", "0755", str(parent)))
        plan.append(("ro-bind", str(path), str(path)))
    plan.append(("bind", str(job.workspace), INSIDE_WORKSPACE))
    # Attached folders over their mount points in the workspace (prepare_mount_points made them real folders).
    return plan + [("bind" if writable else "ro-bind", str(path), f"{INSIDE_WORKSPACE}/{name}")
                   for path, name, writable in job.folders]


def landlock_rules(job: Job) -> dict:
    """The Landlock layer's rules, as paths inside the sandbox: the workspace and the private temporary folders
    read-write, devices read and written, the system and the read-only paths readable, nothing else."""
    ro = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/proc", *map(str, job.ro_paths)]
    return {"rw": [INSIDE_WORKSPACE, "/tmp", "/var/tmp", "/dev/shm", ["/dev", "dev"]], "ro": ro, "scope": True}


@lru_cache(maxsize=1)
def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 where Landlock is missing or disabled."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    return max(0, int(libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1))))


@lru_cache(maxsize=1)
def confine_source() -> str:
    return Path(__file__).with_name("confine.py").read_text(encoding="utf-8")


def confine_python() -> str:
    """The interpreter that runs the confinement step: the daemon's own (its prefix is mounted read-only)."""
    return sys.executable


CONFINE_ENV = "AGENTD_CONFINE"  # where a command that confines itself (run_python's runner) finds its spec


def confine_step(spec: dict) -> list[str]:
    """The argv prefix running confine.py with ``spec`` (marshal, hex: the same interpreter reads it)."""
    return [confine_python(), "-I", "-S", "-c", confine_source(), marshal.dumps(spec).hex(), "--"]


def _with_own_python(paths: list[Path]) -> list[Path]:
    own = {Path(sys.base_prefix), Path(sys.prefix), Path(sys.executable).resolve().parents[1]}
    extra = [p for p in sorted(own) if not any(p == q or q in p.parents for q in [Path("/usr"), *paths])]
    return [*paths, *extra]


def join_cgroup(job: Job) -> list[str]:
    """A shell prefix that moves itself into the call's cgroup and execs the rest (bwrap's first layer)."""
    if job.cgroup_procs is None:
        return []
    script = 'echo 0 > "$0" || { echo "sandbox setup failed: cannot join the call\'s cgroup" >&2; exit 125; }; exec "$@"'
    return ["/bin/sh", "-c", script, str(job.cgroup_procs)]


class BwrapBackend(Backend):
    """bubblewrap. Started as root it needs no user namespace and can mount paths an unprivileged uid could not
    reach (an interpreter under /root, a workspace under a 0700 home); setpriv inside then moves the code to
    the sandbox uid. (bwrap run as root with only ``--uid`` would keep uid 0 outside its user namespace.)
    The Landlock layer is a last step inside, after the uid drop."""

    name = "bwrap"
    strong = True

    def probe(self) -> str | None:
        if not shutil.which("bwrap"):
            return "bubblewrap is not installed (apt-get install bubblewrap)"
        args = self.bwrap_args(Job([], Path("/"), Limits(), network=False, uid=None))
        done = subprocess.run([*args, "--", "/bin/true"], capture_output=True, text=True, timeout=10)
        return f"bwrap cannot create a sandbox here: {done.stderr.strip()[:300]}" if done.returncode else None

    def launch(self, job: Job) -> Launch:
        fds: list[int] = []
        landlock = job.landlock and landlock_abi() > 0
        if landlock:  # the confinement step runs the daemon's python inside
            job = replace(job, ro_paths=_with_own_python(job.ro_paths))
        spec: dict = {"landlock": landlock_rules(job), "chdir": INSIDE_WORKSPACE}
        if landlock and job.cgroup_procs is not None:
            # The Landlock step joins the cgroup too, through an fd opened here (no shell layer in front).
            fds.append(os.open(job.cgroup_procs, os.O_WRONLY | os.O_CLOEXEC))
            spec["cgroup_fd"], job = fds[-1], replace(job, cgroup_procs=None)
        argv = [*DIE_WITH_PARENT, *join_cgroup(job), "prlimit", *job.limits.prlimit_args(), "--",
                *self.bwrap_args(job, fds), "--", *drop_privileges(job.uid)]
        env = {}
        if landlock and job.confine_by_command:  # run_python's runner applies it: no Python started for it
            env[CONFINE_ENV] = marshal.dumps(spec).hex()
        elif landlock:
            argv += confine_step(spec)
        return Launch(argv=argv + job.argv, cwd=Path("/"), pass_fds=tuple(fds), env=env)

    def bwrap_args(self, job: Job, data_fds: list[int] | None = None) -> list[str]:
        """bwrap's options for ``job``: namespaces, then the file system plan, step by step. Data files become
        pipes whose read ends are appended to ``data_fds`` (None: left out, for the probe)."""
        args = ["bwrap", "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                "--unshare-cgroup-try", "--hostname", "sandbox"]
        args += [] if job.network else ["--unshare-net"]
        if os.geteuid() != 0:
            args += ["--unshare-user"]
        elif job.uid is not None:
            args += ["--cap-add", "CAP_SETUID,CAP_SETGID,CAP_SETPCAP"]  # for setpriv only; it drops them all
        for step in fs_plan(job, os.getuid() if job.uid is None else job.uid):
            kind, target = step[0], step[-1]
            if kind == "ro-bind":
                args += ["--ro-bind-try", step[1], target]
            elif kind == "bind":
                args += ["--bind", step[1], target]
            elif kind == "symlink":
                args += ["--symlink", step[1], target]
            elif kind == "dir":
                args += ["--perms", step[1], "--dir", target]
            elif kind == "data" and data_fds is not None:
                data_fds.append(_data_fd(step[1]))
                args += ["--perms", "0644", "--ro-bind-data", str(data_fds[-1]), target]
            elif kind == "tmpfs":
                args += ["--perms", step[2], "--size", step[1], "--tmpfs", target]
            elif kind in ("proc", "dev"):
                args += [f"--{kind}", target]
        return args + ["--chdir", INSIDE_WORKSPACE]


class SubprocessBackend(Backend):
    """The fallback without bubblewrap: util-linux's ``unshare`` makes the namespaces (pid, net, ipc, uts, mount,
    and a user namespace for a non-root daemon), then agentd's own confinement step (confine.py) builds the
    same file system view as bwrap in the private mount namespace, pivots into it and adds Landlock; setpriv
    drops the uid and prlimit sets the limits. It is not bubblewrap (not as widely reviewed), hence "weak"."""

    name = "subprocess"
    strong = False

    def probe(self) -> str | None:
        for tool in ("unshare", "prlimit", "setpriv"):
            if not shutil.which(tool):
                return f"{tool} is missing (it comes with util-linux)"
        with tempfile.TemporaryDirectory(prefix="agentd-probe-") as folder:
            job = Job([], Path(folder), Limits(), network=False, uid=None, landlock=False)
            done = subprocess.run([*self.launch(job).argv, "/bin/true"], capture_output=True, text=True,
                                  timeout=10)
        return f"cannot create the sandbox here: {done.stderr.strip()[:300]}" if done.returncode else None

    def launch(self, job: Job) -> Launch:
        spec = {"mounts": fs_plan(job, 0 if job.uid is None else job.uid),
                "chdir": INSIDE_WORKSPACE, "cgroup": str(job.cgroup_procs) if job.cgroup_procs else None}
        if job.landlock and landlock_abi():
            spec["landlock"] = landlock_rules(job)
        # Under a non-root daemon the confinement step is root of its user namespace (to mount); the code then
        # stays that (unprivileged outside) uid, without any capability.
        drop = drop_privileges(job.uid) if job.uid is not None else [
            "setpriv", "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--pdeathsig=KILL", "--"]
        # A shell as the namespace's pid 1 keeps the code from being pid 1, which would ignore SIGXCPU and a
        # `kill -9` from inside; like bwrap, it reports a signal death as 128+N.
        argv = [*DIE_WITH_PARENT, *self.unshare_args(job.network), *confine_step(spec), *drop, "prlimit",
                *job.limits.prlimit_args(), "--", "/bin/sh", "-c", '"$@"; exit $?', "sandbox-init", *job.argv]
        return Launch(argv=argv, cwd=Path("/"))

    @staticmethod
    def unshare_args(network: bool) -> list[str]:
        args = ["unshare", "--ipc", "--uts", "--pid", "--kill-child", "--mount", "--propagation=private"]
        args += [] if network else ["--net"]
        args += [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
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
        log.warning("code runs with WEAK isolation (backend %s; %s): agentd's own confinement step builds the "
                    "sandbox instead of bubblewrap; install bubblewrap for the strong sandbox", backend.name, why)


def sandbox_uid(workspace: Path) -> int | None:
    """The uid code in this workspace runs as: one per workspace when we are root, else ours (None)."""
    if os.geteuid() != 0:
        return None
    return UID_BASE + zlib.crc32(str(Path(workspace).resolve()).encode()) % UID_SPAN


def prepare_workspace(workspace: Path, uid: int | None) -> None:
    """Hand the workspace to the sandbox uid; files the daemon wrote there would stay read-only otherwise.

    The walk goes by folder fds and chowns each entry relative to its folder without following symlinks (never
    through a path the code could have swapped), and is bounded (WorkspaceWalk). Only entries with a single
    link are chowned: a hard link the code made to a file elsewhere must never make the sandbox uid that
    file's owner.
    """
    workspace.mkdir(parents=True, exist_ok=True)
    if uid is None:
        return
    fd = os.open(workspace, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        os.fchown(fd, uid, uid)
        os.fchmod(fd, 0o700)  # other runs' uids must not look in
        for entry in WorkspaceWalk(fd, max_entries=WALK_LIMIT):
            st = entry.stat
            if st.st_uid != uid and (entry.is_dir or st.st_nlink == 1):
                with contextlib.suppress(FileNotFoundError):
                    os.chown(entry.name, uid, uid, dir_fd=entry.dir_fd, follow_symlinks=False)
    finally:
        os.close(fd)


def prepare_mount_points(workspace: Path, names: Sequence[str]) -> None:
    """Make ``workspace/<name>`` an empty real folder for each attached folder to be bound over: whatever the
    code left under that name before (a file, a symlink pointing anywhere) is removed, never followed."""
    if not names:
        return
    fd = os.open(workspace, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for name in names:
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    continue
                os.unlink(name, dir_fd=fd)
            except FileNotFoundError:
                pass
            os.mkdir(name, 0o755, dir_fd=fd)
    finally:
        os.close(fd)


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
    landlock: bool = True,
    confine_by_command: bool = False,
    folders: Sequence[tuple[Path, str, bool]] = (),
) -> SandboxResult:
    """Run ``argv`` sandboxed, with ``workspace`` as its current and only writable folder.

    ``env`` adds to a clean environment; ``ro_paths`` are host paths readable at the same place inside (an
    interpreter's prefix, package folders); ``path_prefix`` goes in front of PATH. A timeout or ``cancel``
    kills every process of the call. The call runs in a memory cgroup of its own where the host allows one
    (``limits.cgroup``), and under Landlock where the kernel has it (``landlock``). ``confine_by_command``: the
    command applies the Landlock step itself from ``$AGENTD_CONFINE`` before running anything else (run_python's
    runner does), which saves starting a Python for it; backends may still do it themselves. ``folders``: attached
    folders (host path, name, writable), bound at ``/workspace/<name>``, read-only unless writable. Raises
    SandboxUnavailable when no suitable backend can run.
    """
    limits = limits or Limits()
    chosen = backend if isinstance(backend, Backend) else select_backend(backend, require_strong)
    if require_strong and not chosen.strong:
        raise SandboxUnavailable(f"backend {chosen.name!r} is weak isolation and require_strong is set")
    workspace = Path(workspace).resolve()
    uid = sandbox_uid(workspace)
    workspace.mkdir(parents=True, exist_ok=True)
    prepare_mount_points(workspace, [name for _, name, _ in folders])
    prepare_workspace(workspace, uid)
    result = SandboxResult(None, backend=chosen.name, strong=chosen.strong, uid=uid)
    if cancel is not None and cancel.is_set():
        result.cancelled = True
        return result
    group = cgroup.create(limits.memory_mb * 1024 * 1024) if limits.cgroup else None
    try:
        job = Job(list(argv), workspace, limits, network, uid, [Path(p) for p in ro_paths], landlock=landlock,
                  cgroup_procs=group.procs if group else None, confine_by_command=confine_by_command,
                  folders=[(Path(p), n, w) for p, n, w in folders])
        _launch_and_supervise(chosen.launch(job), env, path_prefix, stdin, cancel, limits, result)
    finally:
        if group is not None:
            result.memory_exceeded = group.oom_killed()
            cgroup.destroy(group)
    if (result.timed_out or result.cancelled) and uid is not None:
        reap_uid(uid)
    return result


def _launch_and_supervise(launch: Launch, env: dict[str, str] | None, path_prefix: Sequence[str],
                          stdin: bytes | None, cancel: threading.Event | None, limits: Limits,
                          result: SandboxResult) -> None:
    result.workspace_inside = launch.workspace_inside
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            launch.argv, cwd=launch.cwd, env=clean_env({**(env or {}), **launch.env}, path_prefix),
            pass_fds=launch.pass_fds,
            stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise SandboxUnavailable(f"cannot start the sandbox: {exc.filename} is missing") from None
    finally:
        for fd in launch.pass_fds:
            os.close(fd)
    supervise(proc, stdin, started + limits.wall_s, cancel, result, limits.output_chars)
    result.duration_s = round(time.monotonic() - started, 4)


def _data_fd(text: str) -> int:
    """A pipe's read end holding ``text`` (small enough for the pipe buffer), for bwrap's --ro-bind-data."""
    read_fd, write_fd = os.pipe()
    os.write(write_fd, text.encode())
    os.close(write_fd)
    return read_fd
