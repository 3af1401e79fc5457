"""The composition root: config, plugins, journal, tools, models and engine, wired once per process."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Config, load_config
from .home import prepare_home
from .journal import Journal
from .plugins import PluginHost, get_plugin_manager
from .tools import ToolRegistry


@dataclass
class App:
    config: Config
    host: PluginHost
    journal: Journal
    tools: ToolRegistry
    models: Any  # ModelRegistry; imported lazily because it is only needed when a model is used

    @property
    def engine(self) -> Any:
        from .engine.loop import Engine

        return Engine(self.config, self.host, self.journal, self.models, self.tools)

    def close(self) -> None:
        """Plugins release what they opened for this home (``app_closing``), then the journal closes."""
        try:
            self.host.call_each("app_closing", config=self.config)
        finally:
            self.journal.close()


def build_tools(config: Config, host: PluginHost) -> ToolRegistry:
    """Fill a registry from every plugin's ``register_tools``; stamps plugin names, keeps clashes apart."""
    registry = ToolRegistry()
    host.call_registration("register_tools", registry.register_for, config=config)
    for tool in registry.tools.values():
        info = host.infos.get(tool.plugin)
        if info is not None:
            info.tools.append(tool.name)
    return registry


def make_app(
    config: Config | None = None,
    home: Path | None = None,
    extra_plugins: tuple[Any, ...] = (),
    journal: Journal | None = None,
) -> App:
    """Wire an App; ``journal``: an open one to share (the daemon's, when it reloads its config)."""
    from .models.registry import ModelRegistry

    config = config or load_config(home=home)
    prepare_home(config.home)
    host = get_plugin_manager(config, extra_plugins=extra_plugins)
    journal = journal or Journal(config.journal_target)
    tools = build_tools(config, host)
    return App(config=config, host=host, journal=journal, tools=tools, models=ModelRegistry(config, host))
