"""CLI sub-command groups: each module imports only click (and rich inside commands), never heavy libraries."""

from __future__ import annotations

import importlib
import logging

import click

log = logging.getLogger(__name__)

# Module name -> attribute holding a click command or group. Missing modules are skipped, so a partial
# install still has a working CLI.
GROUPS = {
    "runs": "runs",
    "catalog": ("tools", "plugins", "models"),
    "system": ("doctor", "config"),
    "memory": "memory",
    "daemon": "daemon",
    "schedule": ("schedule", "report"),
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
