"""Plugin discovery: built-in defaults, the `agentd` entry-point group, and drop-in files.

A plugin that fails to import or raises in a registration hook is recorded with its traceback and left out;
everything else keeps working.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import logging
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from . import hookspecs

log = logging.getLogger(__name__)

API_VERSION = "1.1"  # 1.1: register_settings
ENTRY_POINT_GROUP = "agentd"
# Built-in behaviour loads through the same hooks as third-party plugins, always (allow/block lists apply to
# the others): model providers, the rule critic, the side-effect policy, LangChain tools from the config.
DEFAULT_PLUGINS = (
    "agentd.models.providers",
    "agentd.engine.critics",
    "agentd.engine.verify",
    "agentd.policy",
    "agentd.langchain.plugin",
    "agentd.core_settings",
)


@dataclass
class PluginInfo:
    """What `agentd plugins list` shows about one plugin; ``error`` holds the traceback when it failed."""

    name: str
    source: str  # built-in | entry point | drop-in
    version: str = ""
    module: str = ""
    hooks: list[str] = field(default_factory=list)
    tools: list[str] = field(default_factory=list)
    error: str | None = None


class PluginHost:
    """A plugin manager plus what was learnt while loading it."""

    def __init__(self, pm: pluggy.PluginManager, infos: dict[str, PluginInfo]) -> None:
        self.pm = pm
        self.infos = infos

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def call_each(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every implementation of a hook separately, isolating failures; returns (plugin, result)."""
        results = []
        for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls()):
            args = {a: kwargs[a] for a in impl.argnames if a in kwargs}
            ok, result = self._call(hook_name, impl, args)
            if ok:
                results.append((impl.plugin_name, result))
        return results

    def call_registration(self, hook_name: str, make_register: Callable[[str], Any], **kwargs: Any) -> None:
        """Call a ``register_*`` hook once per plugin with a ``register`` stamped with that plugin's name."""
        for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls()):
            args = {a: kwargs[a] for a in impl.argnames if a in kwargs}
            if "register" in impl.argnames:
                args["register"] = make_register(impl.plugin_name)
            self._call(hook_name, impl, args)

    def _call(self, hook_name: str, impl: Any, args: dict[str, Any]) -> tuple[bool, Any]:
        """One plugin's hook; a failure is logged and recorded on the plugin, never raised."""
        try:
            return True, impl.function(**args)
        except Exception:
            tb = traceback.format_exc()
            log.error("plugin %s failed in %s:\n%s", impl.plugin_name, hook_name, tb)
            info = self.infos.get(impl.plugin_name)
            if info is not None:
                info.error = f"{hook_name} raised:\n{tb}"
            return False, None


def get_plugin_manager(config: Any = None, extra_plugins: tuple[Any, ...] = (), quiet: bool = False) -> PluginHost:
    """A fresh plugin host (no module-level global, so tests stay isolated). ``quiet``: a plugin that fails to
    load is recorded but not logged (the config loader's host: the app's own host logs it once)."""
    pm = pluggy.PluginManager("agentd")
    pm.add_hookspecs(hookspecs)
    infos: dict[str, PluginInfo] = {}
    allow = getattr(getattr(config, "plugins", None), "load", None)
    block = set(getattr(getattr(config, "plugins", None), "block", []) or [])

    def wanted(name: str) -> bool:
        return name not in block and (allow is None or name in allow)

    for dotted in DEFAULT_PLUGINS:
        module = importlib.import_module(dotted)
        name = getattr(module, "PLUGIN_NAME", dotted.rsplit(".", 1)[-1])
        # A built-in that needs the config in hooks whose spec lacks it (before_tool_call) offers
        # ``plugin_for(config)``: one plugin object per host, so two apps in one process never share state.
        factory = getattr(module, "plugin_for", None)
        pm.register(factory(config) if factory else module, name=name)
        infos[name] = PluginInfo(name=name, source="built-in", module=dotted, version=_version())

    for ep in _entry_points():
        if not wanted(ep.name):
            continue
        info = PluginInfo(name=ep.name, source="entry point", module=ep.value, version=_dist_version(ep))
        infos[ep.name] = info
        _load_into(pm, info, functools.partial(ep.load), quiet)

    if config is not None:
        folder = Path(config.home) / config.plugins.dropin_dir
        for path in sorted(folder.glob("*.py")) if folder.is_dir() else []:
            name = path.stem
            if not wanted(name) or name in infos:
                continue
            info = PluginInfo(name=name, source="drop-in", module=str(path))
            infos[name] = info
            _load_into(pm, info, functools.partial(_import_file, path), quiet)
            plugin = pm.get_plugin(name)
            info.version = str(getattr(plugin, "__version__", "") or "")

    for plugin in extra_plugins:
        if pm.is_registered(plugin):
            continue  # already discovered (a test passing an installed plugin module explicitly)
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        pm.register(plugin, name=name)
        infos[name] = PluginInfo(name=name, source="extra", module=str(name))

    for name, info in infos.items():
        plugin = pm.get_plugin(name)
        if plugin is not None:
            info.hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
    pm.check_pending()
    return PluginHost(pm, infos)


def settings_models(host: PluginHost) -> dict[str, Any]:
    """``[plugins.NAME]`` -> the pydantic model declared for it through ``register_settings``.

    ``register(model, name=None)``: the name defaults to the registering plugin's own; a table two plugins claim
    keeps the first and logs the clash.
    """
    models: dict[str, Any] = {}

    def make_register(plugin_name: str) -> Callable[..., None]:
        def register(model: Any, name: str | None = None) -> None:
            table = name or plugin_name
            if table in models:
                log.warning("plugin %s declares settings for plugins.%s, already declared; ignored", plugin_name, table)
                return
            models[table] = model

        return register

    host.call_registration("register_settings", make_register)
    return models


def _load_into(pm: pluggy.PluginManager, info: PluginInfo, loader: Callable[[], Any], quiet: bool = False) -> None:
    try:
        module = loader()
        _check_api(module)
        pm.register(module, name=info.name)
        _check_hooks(pm, module)
    except Exception:
        info.error = traceback.format_exc()
        log.log(logging.DEBUG if quiet else logging.ERROR, "plugin %s could not be loaded:\n%s", info.name, info.error)


def _check_hooks(pm: pluggy.PluginManager, module: Any) -> None:
    """A hookimpl no hookspec knows (a typo, or a hook from a newer agentd) refuses that plugin alone, instead
    of failing ``check_pending`` for the whole host."""
    unknown = sorted(c.name for c in pm.get_hookcallers(module) or [] if c.spec is None)
    if unknown:
        pm.unregister(module)
        known = ", ".join(sorted(n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), "agentd_spec")))
        raise ImportError(f"plugin implements unknown hooks {unknown}; agentd {API_VERSION} knows: {known}")


def _check_api(module: Any) -> None:
    """A plugin may declare ``AGENTD_API = "1.x"``; another major version is refused with a clear message."""
    wanted = getattr(module, "AGENTD_API", None)
    if wanted is not None and str(wanted).split(".")[0] != API_VERSION.split(".")[0]:
        raise ImportError(
            f"plugin declares agentd plugin API {wanted}, but this agentd provides {API_VERSION}; "
            "install a version of the plugin made for this agentd"
        )


def _import_file(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"agentd_dropin_{path.stem}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    return sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _dist_version(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return getattr(dist, "version", "") or ""


def _version() -> str:
    from . import __version__

    return __version__
