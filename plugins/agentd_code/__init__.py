"""Code execution tools for agentd: ``run_python`` and ``run_shell``, each call in a fresh sandbox.

The sandbox is ``agentd_code.sandbox.run_sandboxed`` (bubblewrap, or a weaker unshare-based fallback): the run's
workspace is the current folder and the only writable place, there is no network unless the settings grant
it, the environment is clean, the code runs as an unprivileged uid under CPU, wall-time, memory, file-size,
process and open-file limits, and a timeout or a cancelled run kills the whole process tree. Settings: the
``[plugins.code]`` table (docs/sandbox.md).

Only agentd's public API and the standard library are imported here; the rest loads on first use.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from agentd import ToolContext, ToolError, ToolResult, hookimpl

AGENTD_API = "1.0"

__all__ = ["daemon_starting", "doctor_checks", "register_tools", "run_python", "run_shell", "unavailable_tools"]

# A goal with one of these asks for the tool in so many words (see loop.tool_requests).
# Only instructions: "in python" also reads "write hello world in Python to hello.py", which wants a file.
PYTHON_PHRASES = ("use python", "using python", "with python", "run python", "use python3", "using python3")
SHELL_PHRASES = ("use the shell", "using the shell", "shell command", "use bash", "using bash", "run the command")

# Code and commands may be long: no short cap in the output grammar (engine/gbnf.py).
LongText = Annotated[str, Field(max_length=1_000_000)]

# run id -> the schedule that started it, learnt in before_tool_call; lets network_schedules grant network.
_run_schedules: dict[str, str | None] = {}
_lock = threading.Lock()


def run_python(code: LongText, ctx: ToolContext, timeout_s: float | None = None) -> ToolResult:
    """Run Python code in a sandbox and get its exit code, stdout, stderr and the files it wrote.

    The workspace is the current folder (and the only writable place); there is no network. Print what you
    want to see; as in a notebook, a bare expression on the last line shows its value. timeout_s is the wall-clock limit in seconds (default from the settings).
    """
    from .execution import runner_source

    settings = _settings(ctx)
    env = {"AGENTD_SESSION": _session_dir()} if settings.session else {}
    return _run(ctx, settings, ["-c", runner_source()], code.encode("utf-8"), env, timeout_s, python=True)


def run_shell(command: LongText, ctx: ToolContext, timeout_s: float | None = None) -> ToolResult:
    """Run a shell command (bash) in a sandbox and get its exit code, stdout, stderr and the files it wrote.

    The workspace is the current folder (and the only writable place); there is no network; python3 is on
    PATH. timeout_s is the wall-clock limit in seconds (default from the settings).
    """
    import shutil

    shell = shutil.which("bash", path="/usr/bin:/bin") or "/bin/sh"
    settings = _settings(ctx)
    return _run(ctx, settings, [shell, "-c", command], None, {}, timeout_s, python=False)


def _settings(ctx: ToolContext) -> Any:
    from .settings import CodeSettingsError, load_settings

    try:
        return load_settings(ctx.settings)
    except CodeSettingsError as exc:
        raise ToolError(f"the code tools are misconfigured: {exc}") from None


def _session_dir() -> str:
    from .execution import SESSION_DIR

    return SESSION_DIR


def _run(ctx: ToolContext, settings: Any, args: list[str], stdin: bytes | None, env: dict[str, str],
         timeout_s: float | None, python: bool) -> ToolResult:
    from agentd_code.sandbox import SandboxUnavailable, run_sandboxed, select_backend

    from . import execution

    try:
        backend = select_backend(settings.backend, settings.require_strong)
    except SandboxUnavailable as exc:
        raise ToolError(f"code cannot run: {exc}") from None
    interpreter = execution.choose_interpreter(settings, backend)
    argv = [interpreter.executable, *args] if python else args
    if interpreter.pythonpath:
        env = {**env, "PYTHONPATH": ":".join(interpreter.pythonpath)}
    limits = execution.limits_for(settings, timeout_s, ctx.timeout_s)
    network = settings.network or _schedule_of(ctx.run_id) in settings.network_schedules
    before = execution.snapshot(ctx.workspace)
    access = ctx.folders  # attached folders: rw ones snapshotted (and their originals kept) around the call
    shots, too_big = access.code_started() if access is not None else ({}, [])
    folders = [(Path(f.path), f.name, f.writable and f.name not in too_big) for f in (access.folders if access else [])]
    try:
        result = run_sandboxed(
            argv, ctx.workspace, limits, network=network, env=env, stdin=stdin, cancel=ctx.cancel,
            backend=backend, require_strong=settings.require_strong, ro_paths=interpreter.ro_paths,
            path_prefix=[str(Path(interpreter.executable).parent)], landlock=settings.landlock,
            confine_by_command=python, folders=folders,
        )
    except SandboxUnavailable as exc:
        raise ToolError(f"code cannot run: {exc}") from None
    finally:
        if access is not None:
            access.code_finished(shots, "run_python" if python else "run_shell")
    after = execution.snapshot(ctx.workspace)
    changed, deleted = execution.changes(before.files, after.files)
    tool_result = execution.to_tool_result(result, limits, network, changed, deleted, settings.max_artifacts,
                                           execution.over_cap(after, settings.limits.workspace_mb))
    if too_big:  # said after the output, so the model knows why a write there failed
        tool_result.output += (f"\nnote: {', '.join(too_big)} bound read-only for this call: copies for "
                               "`agentd runs undo` would pass [workspace] undo_max_mb (start with --no-undo)")
    return tool_result


def _schedule_of(run_id: str) -> str | None:
    with _lock:
        return _run_schedules.get(run_id)


@hookimpl
def register_settings(register):
    """``[plugins.code]`` is validated when the config loads."""
    from .settings import CodeSettings

    register(CodeSettings)


@hookimpl
def register_tools(register, config):
    """Register run_python and run_shell; both run code."""
    register(run_python, side_effects=["runs_code"], goal_phrases=PYTHON_PHRASES)
    register(run_shell, side_effects=["runs_code"], goal_phrases=SHELL_PHRASES)


@hookimpl
def before_tool_call(call, tool, run_id, goal):
    """Remember which schedule started the run (for ``network_schedules``); never vetoes."""
    with _lock:
        _run_schedules[run_id] = getattr(goal, "schedule", None)
    return None


@hookimpl
def run_finished(run_id, goal, outcome, state):
    """Forget the run's schedule."""
    with _lock:
        _run_schedules.pop(run_id, None)


@hookimpl
def daemon_starting(config: Any) -> None:
    """Kill sandbox processes a daemon that died left running, and remove its leftover call cgroups."""
    import logging
    import os

    from . import cgroup
    from .process import kill_orphans
    from .sandbox import UID_BASE, UID_SPAN

    killed = kill_orphans(UID_BASE, UID_SPAN) if os.geteuid() == 0 else 0
    swept = cgroup.sweep()
    if killed or swept:
        logging.getLogger(__name__).warning(
            "killed %d sandbox processes and removed %d call cgroups left by a previous daemon", killed, swept)


@hookimpl
def doctor_checks(config: Any) -> list[tuple[str, bool, str]]:
    """Checks for `agentd doctor`: which isolation is active, and whether the sandboxed python starts."""
    from .doctor import doctor_checks as run

    return run(config)


@hookimpl
def unavailable_tools(config: Any) -> list[str]:
    """Say why run_python and run_shell cannot run code here (they stay registered and answer with the reason)."""
    from agentd_code.sandbox import SandboxUnavailable, select_backend

    from .settings import CodeSettingsError, load_settings

    try:
        settings = load_settings(config.plugin_settings("code"))
        select_backend(settings.backend, settings.require_strong)
    except (CodeSettingsError, SandboxUnavailable) as exc:
        return [f"run_python, run_shell cannot run code: {exc}"]
    return []
