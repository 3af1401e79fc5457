"""`agentd doctor` checks for the code plugin: the active isolation and a sandboxed python that starts."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from agentd_code.sandbox import SandboxUnavailable, run_sandboxed, select_backend

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
        checks = [("code sandbox", True, f"{backend.name}: WEAK isolation, the host file system is visible as "
                   f"far as permissions allow; {INSTALL}, or set plugins.code.require_strong = true to refuse")]
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
