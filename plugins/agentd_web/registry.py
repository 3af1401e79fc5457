"""Collect search backends from the built-ins, the ``agentd_web`` entry points and ``backend_plugins``.

A backend module that fails to import or register is reported (doctor, tool errors) and left out; the rest
keep working.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from . import backends as builtin
from .hookspecs import ENTRY_POINT_GROUP, PROJECT, WebHookSpecs
from .settings import WebSettings


@dataclass
class BackendRegistry:
    """Search backends by name, which plugin gave each, and what went wrong while loading."""

    backends: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def names(self) -> list[str]:
        return sorted(self.backends)

    def problem_of(self, name: str, settings: WebSettings, environ: Mapping[str, str]) -> str | None:
        """What the named backend lacks (unknown name, missing key, ...), or None when it is ready."""
        backend = self.backends.get(name)
        if backend is None:
            return (
                f"plugins.web.search_backend = {name!r} is not a known search backend; "
                f"choose one of: {', '.join(self.names()) or 'none'}"
            )
        check = getattr(backend, "problem", None)
        return check(settings, environ) if callable(check) else None


def load_backends(settings: WebSettings, home: Path, extra_plugins: tuple[Any, ...] = ()) -> BackendRegistry:
    """A fresh registry (no module-level state, so tests and apps stay isolated)."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(WebHookSpecs)
    registry = BackendRegistry()
    pm.register(builtin, name="builtin")
    for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        _register(pm, registry, f"entry point {ep.name}", ep.load)
    for spec in settings.backend_plugins:
        _register(pm, registry, f"backend_plugins entry {spec!r}", lambda spec=spec: _import(spec, home))
    for plugin in extra_plugins:
        _register(pm, registry, getattr(plugin, "__name__", repr(plugin)), lambda plugin=plugin: plugin)
    # Registration order: built-ins first, so a later plugin may replace a built-in name on purpose.
    for impl in pm.hook.register_search_backends.get_hookimpls():
        try:
            impl.function(register=_register_for(registry, impl.plugin_name))
        except Exception:
            registry.problems.append(
                f"{impl.plugin_name}: register_search_backends raised:\n{traceback.format_exc()}"
            )
    return registry


def _register_for(registry: BackendRegistry, plugin: str) -> Any:
    def register(name: str, backend: Any) -> None:
        if not callable(getattr(backend, "search", None)):
            registry.problems.append(
                f"{plugin}: backend {name!r} has no search(query, max_results, context) method"
            )
            return
        key = name.strip().lower()
        registry.backends[key] = (
            backend  # a later plugin replacing a name is deliberate; sources shows who won
        )
        registry.sources[key] = plugin

    return register


def _register(pm: pluggy.PluginManager, registry: BackendRegistry, label: str, loader: Any) -> None:
    try:
        module = loader()
        if pm.is_registered(module):
            return
        pm.register(module, name=label)
    except Exception:
        registry.problems.append(f"{label} could not be loaded:\n{traceback.format_exc()}")


def _import(spec: str, home: Path) -> Any:
    """A dotted module name, or a ``.py`` file path (relative paths are under AGENTD_HOME)."""
    if not spec.endswith(".py"):
        return importlib.import_module(spec)
    path = Path(spec).expanduser()
    path = path if path.is_absolute() else Path(home) / path
    name = f"agentd_web_backend_{path.stem}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None or not path.is_file():
        raise ImportError(f"no backend plugin file at {path}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    module_spec.loader.exec_module(module)
    return module
