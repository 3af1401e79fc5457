"""`agentd doctor` checks for the code plugin: the active isolation and a sandboxed python that starts."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from agentd_code import cgroup
from agentd_code.sandbox import SandboxUnavailable, landlock_abi, run_sandboxed, select_backend

from .execution import choose_interpreter
from .settings import CodeSettingsError, load_settings

INSTALL = "install bubblewrap (apt-get install bubblewrap)"


def doctor_checks(config: Any) -> list[tuple[str, bool, str]]:
    """(name, ok, detail or what to do) for the sandbox backend and the python inside it."""
    try:
        settings = load_settings(config.plugin_settings("code"))
    except CodeSettingsError as exc:
        return [("code sandbox settings", False, str(exc))]
    try:
        backend = select_backend(settings.backend, settings.require_strong)
    except SandboxUnavailable as exc:
        return [("code sandbox", False, f"{exc}; {INSTALL} or check plugins.code.backend")]
    if backend.strong:
        checks = [("code sandbox", True, f"{backend.name}: strong isolation (private file system view)")]
    else:
        checks = [("code sandbox", True, f"{backend.name}: WEAK isolation (the same private file system view, "
                   f"built by agentd's own confinement step instead of bubblewrap); {INSTALL}, or set "
                   "plugins.code.require_strong = true to refuse")]
    checks += [memory_check(), landlock_check(settings.landlock)]
    interpreter = choose_interpreter(settings, backend)
    imports = "; ".join(f"import {name}" for name in settings.python_packages) or "pass"
    env = {"PYTHONPATH": ":".join(interpreter.pythonpath)} if interpreter.pythonpath else {}
    with tempfile.TemporaryDirectory(prefix="agentd-doctor-") as folder:
        result = run_sandboxed([interpreter.executable, "-c", imports], Path(folder), backend=backend,
                               ro_paths=interpreter.ro_paths, env=env)
    detail = f"{interpreter.executable}" + (f" with {', '.join(settings.python_packages)}"
                                            if settings.python_packages else "")
    if result.ok:
        checks.append(("code sandbox python", True, detail))
    else:
        checks.append(("code sandbox python", False, f"{detail} failed: {result.stderr.strip()[-300:]}; check "
                       "plugins.code.python and plugins.code.python_packages"))
    return checks


def memory_check() -> tuple[str, bool, str]:
    """Whether memory_mb bounds a whole call (a cgroup per call) or each process only."""
    folder, version = cgroup.parent()
    if folder is not None:
        return ("code sandbox memory", True, f"cgroup v{version}: memory_mb bounds each call as a whole ({folder})")
    return ("code sandbox memory", True, f"no usable cgroup ({version}): memory_mb bounds each process only "
            "(address space), so several processes of one call can use more together")


def landlock_check(enabled: bool) -> tuple[str, bool, str]:
    """Whether Landlock adds its second file system layer."""
    abi = landlock_abi()
    if not enabled:
        return ("code sandbox landlock", True, "switched off (plugins.code.landlock = false)")
    if abi:
        return ("code sandbox landlock", True, f"Landlock ABI {abi}: a second layer allows only the workspace "
                "(read-write) and the system and interpreter paths (read-only)")
    return ("code sandbox landlock", True, "this kernel has no Landlock (or it is disabled): the mount namespace "
            "is the only file system layer")
