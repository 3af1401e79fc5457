"""`agentd doctor` and `agentd tools list` reports for the web plugin: settings, backend, extraction, cache."""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Mapping
from typing import Any

from agentd import WithStoredKeys

from .registry import load_backends
from .settings import WebSettingsError, load_settings

Check = tuple[str, bool, str]


def doctor_checks(config: Any, environ: Mapping[str, str] | None = None) -> list[Check]:
    """(name, ok, message) for each check; a failing message says what to set or install."""
    environ = WithStoredKeys(home=config.home) if environ is None else environ
    try:
        settings = load_settings(config.plugin_settings("web"))
    except WebSettingsError as exc:
        return [("settings", False, str(exc))]
    checks: list[Check] = [("settings", True, "[plugins.web] is valid")]
    registry = load_backends(settings, config.home)
    checks += [("backend plugins", False, problem.splitlines()[0]) for problem in registry.problems]
    name = settings.search_backend.strip().lower()
    problem = registry.problem_of(name, settings, environ)
    checks.append((f"search backend {name}", problem is None, problem or f"{name} is configured"))
    if problem is None and not os.environ.get("AGENTD_DOCTOR_OFFLINE"):  # set by `agentd doctor --offline`
        checks.append(_reachable(config, settings, registry, name, environ))
    checks.append(_extraction())
    checks.append(_cache(settings.resolved_cache_dir(config.home)))
    hosts = settings.http_allow_hosts
    checks.append(
        (
            "http_request",
            True,
            f"allowed hosts: {', '.join(hosts)}"
            if hosts
            else "off: no host allowed (set plugins.web.http_allow_hosts to call web APIs)",
        )
    )
    if settings.allow_private:
        checks.append(
            ("address policy", True, "allow_private = true: tools may reach loopback and LAN addresses")
        )
    return checks


def _reachable(config: Any, settings: Any, registry: Any, name: str, environ: Mapping[str, str]) -> Check:
    """One real one-result search: configured is not the same as answering (no network, a dead instance)."""
    from pathlib import Path

    from agentd import ToolContext, ToolError

    from .tools import WebTools

    tools = WebTools(config.home, registry, environ=environ)
    ctx = ToolContext(run_id="doctor", workspace=Path(tempfile.gettempdir()), settings=config.plugin_settings("web"),
                      timeout_s=settings.timeout_s)
    try:
        found = tools.search_once(name, "agentd", settings, ctx)
    except ToolError as exc:
        return (f"search backend {name} reachable", False, str(exc))
    return (f"search backend {name} reachable", True, f"a test search answered ({found} results)")


def unavailable_tools(config: Any, environ: Mapping[str, str] | None = None) -> list[str]:
    """Tools that are missing or cannot work with this configuration, and why (cheap: no imports, no network)."""
    environ = WithStoredKeys(home=config.home) if environ is None else environ
    try:
        settings = load_settings(config.plugin_settings("web"))
    except WebSettingsError as exc:
        return [f"web_search, fetch_url, http_request: {exc}"]
    out = []
    problem = load_backends(settings, config.home).problem_of(
        settings.search_backend.strip().lower(), settings, environ
    )
    if problem:
        out.append(f"web_search: {problem}")
    if importlib.util.find_spec("trafilatura") is None:
        out.append("fetch_url: trafilatura is not installed (pip install trafilatura lxml_html_clean)")
    if not settings.http_allow_hosts:
        out.append("http_request: not offered, no host is allowed (set plugins.web.http_allow_hosts)")
    return out


def _extraction() -> Check:
    try:
        import trafilatura  # noqa: F401
    except ImportError as exc:
        return (
            "page extraction",
            False,
            f"trafilatura does not import ({exc}); pip install trafilatura lxml_html_clean",
        )
    return ("page extraction", True, "trafilatura imports")


def _cache(folder: Any) -> Check:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
            pass
    except OSError as exc:
        return (
            "cache",
            False,
            f"cannot write {folder} ({exc}); fix its permissions or set plugins.web.cache_dir",
        )
    return ("cache", True, f"writable: {folder}")
