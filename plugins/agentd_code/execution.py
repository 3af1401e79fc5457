"""How a tool call becomes a sandboxed command and its result a ToolResult: the interpreter and what to mount,
the limits, the workspace snapshot that finds the artifacts, and the hints the model gets on a limit."""

from __future__ import annotations

import importlib.util
import stat
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from agentd import ToolResult
from agentd.tools import WorkspaceWalk
from agentd_code.sandbox import WALK_LIMIT, Backend, Limits, SandboxResult

from .settings import CodeSettings

SESSION_DIR = ".agentd_session"
MAX_SNAPSHOT = 20_000  # entries; a bigger workspace is compared only this far


@dataclass
class Interpreter:
    """The python to run and the host paths it needs readable inside the sandbox."""

    executable: str
    ro_paths: list[Path]
    pythonpath: list[str]


@lru_cache(maxsize=1)
def runner_source() -> str:
    """runner.py, with confine.py's text in ``CONFINE_SOURCE`` (the runner applies Landlock itself)."""
    from agentd_code.sandbox import confine_source

    runner = Path(__file__).with_name("runner.py").read_text(encoding="utf-8")
    return f"CONFINE_SOURCE = {confine_source()!r}\n" + runner


def choose_interpreter(settings: CodeSettings, backend: Backend) -> Interpreter:
    """The configured python (default: the daemon's), its prefix, and the folders of ``python_packages``."""
    exe = settings.python or sys.executable
    # Both backends mount the interpreter's prefix read-only where it is, so it need not be reachable
    # by the sandbox uid on the host (one under /root works).
    own = not settings.python or Path(settings.python).resolve() == Path(sys.executable).resolve()
    if own:
        prefixes = {Path(sys.base_prefix), Path(sys.prefix)}
    else:
        real = Path(exe).resolve()
        prefixes = {real.parent.parent, Path(exe).parent.parent}
    ro_paths = sorted(prefixes) + [Path(p).expanduser() for p in settings.extra_ro_paths]
    pythonpath: list[str] = []
    if own:
        for folder in package_folders(tuple(settings.python_packages)):
            if not any(folder == p or p in folder.parents for p in ro_paths):
                ro_paths.append(folder)
                pythonpath.append(str(folder))
    return Interpreter(exe, ro_paths, pythonpath)


@lru_cache(maxsize=32)
def package_folders(names: tuple[str, ...]) -> list[Path]:
    """The sys.path entries holding the named top-level packages in the daemon's interpreter."""
    folders: list[Path] = []
    for name in names:
        spec = importlib.util.find_spec(name.split(".")[0])
        if spec is None or not spec.origin:
            continue
        origin = Path(spec.origin)
        depth = 2 if origin.name == "__init__.py" else 1
        folder = origin.parents[depth - 1]
        if folder not in folders:
            folders.append(folder)
    return folders


def limits_for(settings: CodeSettings, timeout_s: float | None, tool_timeout_s: float) -> Limits:
    """Limits for one call: the requested wall time, capped by max_wall_s and by the executor's own timeout."""
    conf = settings.limits
    wall = min(timeout_s or conf.wall_s, conf.max_wall_s)
    wall = max(0.5, min(wall, tool_timeout_s - 1.0))  # finish (and report) before the executor abandons us
    return Limits(
        cpu_s=min(conf.cpu_s, wall), wall_s=wall, memory_mb=conf.memory_mb, file_size_mb=conf.file_size_mb,
        max_procs=conf.max_procs, max_open_files=conf.max_open_files, tmp_mb=conf.tmp_mb,
        output_chars=settings.output_chars,
    )


@dataclass
class Snapshot:
    """The workspace's files as one bounded walk saw them, and what they weigh."""

    files: dict[str, tuple[int, int, int]]  # relative path -> (size, mtime_ns, inode)
    disk_bytes: int = 0  # blocks in use, session folder included
    entries: int = 0
    truncated: bool = False  # the walk stopped at its bound: the workspace holds more than it can look at


def snapshot(workspace: Path, max_entries: int | None = None) -> Snapshot:
    """Every file of the workspace (by a bounded, iterative walk that follows no symlink); files in the session
    folder count towards the size but are not listed."""
    shot = Snapshot({})
    walk = WorkspaceWalk(workspace, max_entries=max_entries or WALK_LIMIT)
    for entry in walk:
        shot.disk_bytes += entry.stat.st_blocks * 512
        if entry.is_dir or not stat.S_ISREG(entry.stat.st_mode) and not stat.S_ISLNK(entry.stat.st_mode):
            continue
        if entry.path.startswith(SESSION_DIR + "/") or len(shot.files) >= MAX_SNAPSHOT:
            continue
        st = entry.stat
        shot.files[entry.path] = (st.st_size, st.st_mtime_ns, st.st_ino)
    shot.entries, shot.truncated = walk.count, walk.truncated
    if walk.too_deep:  # folders nested deeper than the walk goes still count towards the cap
        shot.disk_bytes, shot.entries, shot.truncated = _du(workspace, shot)
    return shot


def _du(workspace: Path, shot: Snapshot) -> tuple[int, int, bool]:
    """(bytes in use, entries, over the entry bound) of a tree too deep for the walk, by du (which follows no
    symlink and walks any depth); the walk's own figures when du fails."""
    import subprocess

    try:
        used = subprocess.run(["du", "-s", "-x", "-B1", str(workspace)], capture_output=True, text=True,
                              timeout=60)
        inodes = subprocess.run(["du", "-s", "-x", "--inodes", str(workspace)], capture_output=True, text=True,
                                timeout=60)
        entries = int(inodes.stdout.split()[0]) - 1
        return int(used.stdout.split()[0]), entries, entries > WALK_LIMIT
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return shot.disk_bytes, shot.entries, shot.truncated


def over_cap(shot: Snapshot, workspace_mb: int) -> str:
    """The one-line error when the workspace is over its size cap (or too big to walk), else ""."""
    if shot.truncated:
        return (f"the workspace holds more than {WALK_LIMIT} files and folders; delete what you no longer need "
                "(e.g. with run_shell)")
    if shot.disk_bytes > workspace_mb * 1024 * 1024:
        return (f"the workspace uses {shot.disk_bytes / 1048576:.0f} MB, over its cap of {workspace_mb} MB; "
                "delete files you no longer need (the files are kept)")
    return ""


def changes(before: dict[str, tuple[int, int, int]], after: dict[str, tuple[int, int, int]]) -> tuple[list, list]:
    """(created or changed, deleted) relative paths, sorted."""
    changed = sorted(p for p, sig in after.items() if before.get(p) != sig)
    deleted = sorted(p for p in before if p not in after)
    return changed, deleted


def hint(result: SandboxResult, limits: Limits, network: bool) -> str:
    """One line telling the model which limit stopped the code and what to do, or ""."""
    err = result.stderr
    if result.cancelled:
        return "stopped: the run was cancelled"
    if result.timed_out:
        return (f"stopped: the wall-clock limit of {limits.wall_s:g}s was reached and every process was killed; "
                "make the code faster or pass a larger timeout_s")
    if result.memory_exceeded:
        return (f"the memory limit of {limits.memory_mb} MB for the whole call (all its processes together) "
                "was reached and the kernel killed a process; use less memory")
    if result.signal in ("SIGXCPU", "SIGKILL"):
        return (f"stopped by {result.signal}: most likely the CPU-time limit of {limits.cpu_s:g}s "
                "(or the memory limit); do less work per call")
    if result.signal == "SIGXFSZ" or "File too large" in err:
        return f"a file grew past the size limit of {limits.file_size_mb} MB; write less data"
    if result.memory_exceeded or "MemoryError" in err or "Cannot allocate memory" in err:
        return f"the memory limit of {limits.memory_mb} MB was reached; use less memory"
    if "Resource temporarily unavailable" in err:
        return f"the process limit ({limits.max_procs} processes and threads) was reached; start fewer"
    if not network and any(s in err for s in ("Network is unreachable", "name resolution", "Name or service")):
        return "the sandbox has no network access; work with files in the workspace instead"
    return ""


def to_tool_result(result: SandboxResult, limits: Limits, network: bool, changed: list[str],
                   deleted: list[str], max_artifacts: int, cap_error: str = "") -> ToolResult:
    """Exit status, output and files as a ToolResult; a non-zero exit or a kill sets ``error``."""
    status = f"exit code {result.exit_code}" if result.exit_code is not None else f"killed by {result.signal}"
    if result.cancelled and result.exit_code is None and result.signal is None:
        status = "not started"
    lines = [f"{status} after {result.duration_s:.2f}s"]
    note = cap_error or hint(result, limits, network)
    if note:
        lines.append(note)
    lines.append("stdout:\n" + result.stdout if result.stdout else "stdout: (empty)")
    if result.stderr:
        lines.append("stderr:\n" + result.stderr)
    artifacts = changed[:max_artifacts]
    if len(changed) > len(artifacts):
        lines.append(f"({len(changed) - len(artifacts)} more changed files not listed)")
    if deleted:
        lines.append("deleted: " + ", ".join(deleted[:20]) + (" ..." if len(deleted) > 20 else ""))
    text = "\n".join(lines)
    data = {
        "exit_code": result.exit_code, "signal": result.signal, "timed_out": result.timed_out,
        "cancelled": result.cancelled, "duration_s": result.duration_s, "backend": result.backend,
        "strong_isolation": result.strong, "stdout_cut": result.stdout_cut, "stderr_cut": result.stderr_cut,
        "changed": changed, "deleted": deleted,
    }
    # What the code printed is the call's content for the outcome checks; the status line's numbers are not.
    data["evidence"] = "\n".join(part for part in (result.stdout, result.stderr) if part)
    value = result.stdout.strip()
    # One short line of output from a call that changed no file is the call's value (agentd's
    # loop.ground_answers); a call that wrote files did something, and what it printed (f.write's 5) is not it.
    if result.ok and not cap_error and value and "\n" not in value and len(value) <= 100 and not result.stdout_cut and not (
            changed or deleted):
        data["value"] = value
    failed = not result.ok or bool(cap_error)
    if cap_error:
        data["workspace_over_cap"] = True
    return ToolResult(output=text, error=text if failed else None, artifacts=artifacts, data=data)
