"""The sandbox's own confinement step, run as ``python -I -S -c <this file's text> SPEC -- COMMAND...``.

Standard library only (it runs before and inside the sandbox, with no site-packages), and only modules that
load fast: every millisecond here is paid by every call. ``SPEC`` is a dict in ``marshal`` form, hex-encoded
(marshal is built in; json would cost more than the rest together), made by the same interpreter:

- ``cgroup``: a ``cgroup.procs`` file (or ``cgroup_fd``, an inherited fd on one): this process joins that
  cgroup first, so all it starts is counted there.
- ``mounts``: the file system to build (the fallback backend; bwrap builds the same plan itself). Needs a
  private mount namespace and CAP_SYS_ADMIN in it; ends with ``pivot_root`` into the new root, so nothing of
  the host's file system is left but what the plan mounts.
- ``landlock``: ``{"rw": [...], "ro": [...]}``: a Landlock ruleset (where the kernel has Landlock) allowing only
  those paths; everything else is denied to this process and all it starts. ``scope`` also cuts abstract Unix
  sockets and signals outside the sandbox (Landlock ABI 6).
- ``chdir``: the folder to start the command in.

Then it execs ``COMMAND``. Each step that is asked for and fails is fatal: the command never runs unconfined.
"""

import ctypes
import marshal
import os
import sys
import warnings  # noqa: F401 - os.execvp imports it; after pivot_root no module can be loaded

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_PRIVATE, MS_RELATIME = 1024, 2048, 4096, 16384, 1 << 18, 1 << 21
MNT_DETACH = 2
# statvfs f_flag bit -> mount flag; a remount in a user namespace must keep the flags it cannot clear
LOCKED_FLAGS = ((2, MS_NOSUID), (4, MS_NODEV), (8, MS_NOEXEC), (1024, MS_NOATIME), (2048, MS_NODIRATIME),
                (4096, MS_RELATIME))
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
SYS_LANDLOCK_CREATE, SYS_LANDLOCK_ADD, SYS_LANDLOCK_RESTRICT = 444, 445, 446
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
# Landlock file system rights: EXECUTE, WRITE_FILE, READ_FILE, READ_DIR, ... (bit n = right n); those a rule on a
# plain file may carry; and the read-only set.
LL_FILE_RIGHTS = 1 | 2 | 4 | (1 << 14) | (1 << 15)
LL_READ = 1 | 4 | 8
LL_DEV = 2 | 4 | 8 | (1 << 15)

libc = ctypes.CDLL(None, use_errno=True)


def fail(what):
    err = ctypes.get_errno()
    sys.stderr.write(f"sandbox setup failed: {what}: {os.strerror(err) if err else 'error'}\n")
    os._exit(125)


def mount(source, target, fstype, flags, data=None):
    enc = [None if v is None else v.encode() for v in (source, target, fstype, data)]
    if libc.mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3]) != 0:
        fail(f"mount {source or ''} on {target}")


def remount_ro(target):
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY
    kept = os.statvfs(target).f_flag
    for bit, flag in LOCKED_FLAGS:
        if kept & bit:
            flags |= flag
    mount(None, target, None, flags)


def submounts(target):
    """Mount points strictly below ``target`` (from mountinfo), to make read-only too."""
    found = []
    with open("/old/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:  # the host proc
        for line in fh:
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(target.rstrip("/") + "/"):
                found.append(point)
    return found


def make_parents(path):
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)


def place(source, target):
    """Create the empty mount point for ``source`` (a folder or a file) at ``target``."""
    make_parents(target)
    if os.path.isdir(source):
        os.makedirs(target, mode=0o755, exist_ok=True)
    elif not os.path.exists(target):
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT, 0o644))


def build_root(plan, base):
    """Build the plan's file system and make it the root of this (private) mount namespace.

    As bubblewrap does: a tmpfs at ``base`` becomes the root first, with the host's root under ``/old``, so the
    plan's sources are found there whatever ``base`` hides; the plan is built on a second tmpfs at ``/new``,
    which becomes the root in turn, and the host's root is detached.
    """
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", base, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
    for name in ("old", "new"):
        os.mkdir(f"{base}/{name}", 0o755)
    mount("tmpfs", base + "/new", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=16m")
    pivot(base, "old")
    os.chdir("/")
    for op in plan:
        kind, target = op[0], "/new" + op[-1]
        if kind in ("ro-bind", "bind"):
            source = "/old" + op[1]
            if not os.path.exists(source):
                continue
            place(source, target)
            mount(source, target, None, MS_BIND | MS_REC)
            if kind == "ro-bind":
                for point in [target, *submounts(target)]:
                    remount_ro(point)
        elif kind == "dir":
            os.makedirs(target, mode=int(op[1], 8), exist_ok=True)
            os.chmod(target, int(op[1], 8))
        elif kind == "symlink":
            make_parents(target)
            os.symlink(op[1], target)
        elif kind == "data":
            make_parents(target)
            with open(target, "w", encoding="utf-8") as fh:
                fh.write(op[1])
        elif kind == "tmpfs":
            os.makedirs(target, mode=0o755, exist_ok=True)
            mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"mode={op[2]},size={op[1]}")
        elif kind == "proc":
            os.makedirs(target, mode=0o755, exist_ok=True)
            mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        elif kind == "dev":
            make_dev(target)
    pivot("/new", ".")  # the old root ends up stacked under the new one, and is detached right away
    if libc.umount2(b".", MNT_DETACH) != 0:
        fail("detaching the host's root")
    os.chdir("/")
    mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def pivot(new_root, put_old):
    os.chdir(new_root)
    arch = os.uname().machine
    if arch not in SYS_PIVOT_ROOT or libc.syscall(SYS_PIVOT_ROOT[arch], b".", put_old.encode()) != 0:
        fail(f"pivot_root into {new_root}")


def make_dev(target):
    """A minimal /dev: the harmless devices bound from the host's, the std links, an empty shm folder."""
    os.makedirs(target, mode=0o755, exist_ok=True)
    mount("tmpfs", target, "tmpfs", MS_NOSUID, "mode=0755,size=64k")
    for name in DEVICES:
        if os.path.exists("/old/dev/" + name):
            place("/old/dev/" + name, f"{target}/{name}")
            mount("/old/dev/" + name, f"{target}/{name}", None, MS_BIND)
    for name, link in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                       ("stderr", "/proc/self/fd/2")):
        os.symlink(link, f"{target}/{name}")
    os.makedirs(target + "/shm", mode=0o755, exist_ok=True)


class RulesetAttr(ctypes.Structure):
    _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]


class PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def landlock_abi():
    """The kernel's Landlock ABI version, or 0 when it has none (or it is disabled)."""
    version = libc.syscall(SYS_LANDLOCK_CREATE, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(0, version)


def landlock(rw, ro, scope):
    abi = landlock_abi()
    if abi == 0:
        return
    handled = (1 << (13 if abi == 1 else 14 if abi == 2 else 15 if abi < 5 else 16)) - 1
    attr = RulesetAttr(handled, 0, 3 if scope and abi >= 6 else 0)  # abstract Unix sockets | signals
    size = ctypes.sizeof(attr) if abi >= 6 else 8
    ruleset = libc.syscall(SYS_LANDLOCK_CREATE, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        fail("creating the Landlock ruleset")
    for paths, rights in ((rw, handled), (ro, LL_READ)):
        for path in paths:
            rule_path(ruleset, path, rights & handled)
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS, which Landlock requires
        fail("setting no_new_privs")
    if libc.syscall(SYS_LANDLOCK_RESTRICT, ruleset, ctypes.c_uint32(0)) != 0:
        fail("enforcing the Landlock ruleset")
    os.close(ruleset)


def rule_path(ruleset, path, rights):
    if isinstance(path, list):  # [path, "dev"]: device files are read and written, nothing made
        path, rights = path[0], rights & LL_DEV
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # not in this sandbox: nothing to allow
    try:
        if not os.path.isdir(f"/proc/self/fd/{fd}"):
            rights &= LL_FILE_RIGHTS
        rule = PathBeneath(rights, fd)
        if libc.syscall(SYS_LANDLOCK_ADD, ruleset, ctypes.c_int(1), ctypes.byref(rule), ctypes.c_uint32(0)):
            fail(f"adding the Landlock rule for {path}")
    finally:
        os.close(fd)


def join_cgroup(spec):
    """Join the call's cgroup: through an inherited fd on its cgroup.procs, or by its path."""
    try:
        if spec.get("cgroup_fd") is not None:
            os.write(spec["cgroup_fd"], b"0")
            os.close(spec["cgroup_fd"])
        elif spec.get("cgroup"):
            with open(spec["cgroup"], "w", encoding="ascii") as fh:
                fh.write("0")
    except OSError as exc:
        sys.stderr.write(f"sandbox setup failed: joining the call's cgroup: {exc}\n")
        os._exit(125)


def apply(spec):
    """Every step the spec asks for, in order; what is left is to exec the command (or, for run_python's
    runner, which calls this itself before anything of the cell runs, to run the cell)."""
    join_cgroup(spec)
    if spec.get("mounts"):
        build_root(spec["mounts"], spec.get("base", "/tmp"))
    if spec.get("landlock"):
        rules = spec["landlock"]
        landlock(rules.get("rw", []), rules.get("ro", []), rules.get("scope", False))
    if spec.get("chdir"):
        os.chdir(spec["chdir"])


def main():
    os.umask(0o022)
    apply(marshal.loads(bytes.fromhex(sys.argv[1])))
    command = sys.argv[3:]
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        sys.stderr.write(f"cannot run {command[0]}: {exc.strerror}\n")
        os._exit(127)


if __name__ == "__main__":
    main()
