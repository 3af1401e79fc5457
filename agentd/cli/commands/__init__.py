"""CLI sub-command groups: each module imports only click (and rich inside commands), never heavy libraries."""

from __future__ import annotations

import importlib
import os
import sys

import click

# Module name -> attribute holding a click command or group. Missing modules are skipped, so a partial
# install still has a working CLI.
GROUPS = {
    "runs": "runs",
    "catalog": ("tools", "plugins"),
    "models": "models",
    "system": ("doctor", "config"),
    "daemon": ("daemon", "logs"),
    "schedule": ("schedule", "report"),
    "ui": "ui",
    "journal": "journal",
    "setup": ("completion", "keys"),
    "evaluate": "evaluate",
    "chat": "chat",
}


def mount(cli: click.Group) -> None:
    for module_name, attrs in GROUPS.items():
        try:
            module = importlib.import_module(f"{__name__}.{module_name}")
        except ImportError:
            continue
        for attr in (attrs,) if isinstance(attrs, str) else attrs:
            command = getattr(module, attr, None)
            if command is not None:
                cli.add_command(command)
    if hasattr(cli, "plugin_commands"):  # agentd's own group mounts them on first need
        cli.plugin_commands = _plugin_commands
    else:
        _plugin_commands(cli)


def _plugin_commands(cli: click.Group) -> list[str] | None:
    """Commands plugins add through ``register_commands``; a broken config or plugin never breaks the CLI.

    Returns the files the plugins came from (each plugin's module, the drop-in folder and its files), which
    `agentd --help`'s cached listing depends on; None when nothing could be mounted."""
    try:
        from ...config import load_config
        from ...plugins import get_plugin_manager

        config = load_config()
        host = get_plugin_manager(config)
        host.call_each("register_commands", cli=cli)
    except Exception as exc:  # noqa: BLE001 - reported by `agentd doctor`; the core commands must still work
        import logging

        logging.getLogger(__name__).debug("plugin commands not mounted: %s", exc)
        return None
    files = [str(config.home / config.plugins.dropin_dir)]
    for _, plugin in host.pm.list_name_plugin():  # a module, or an object a built-in's plugin_for made
        module = plugin if hasattr(plugin, "__file__") else sys.modules.get(type(plugin).__module__)
        files.append(str(getattr(module, "__file__", "") or ""))
    return [name for name in files if os.path.isabs(name)]
