"""The plugins' commands as `agentd --help` lists them, cached so the list needs neither the config (pydantic)
nor the plugins.

Listing the plugins' commands means loading the config and every plugin (about 3× the rest of ``--help``).
Each time the CLI mounts them for real it records their names and help texts in
``AGENTD_HOME/cache/cli-commands.json`` (owner-only), with what that answer depended on:

- a key computed before loading: the interpreter, ``sys.path``, agentd's version, every ``AGENTD_*``
  variable (``AGENTD_LOAD_PLUGINS``, ``AGENTD_PLUGINS__BLOCK``...), and the size and modification time of the
  config file and of every ``sys.path`` folder (installing, upgrading or removing a distribution adds or
  removes a ``.dist-info`` folder there, which changes the folder's time);
- the files learnt while loading: each plugin's module and the modules its commands come from, the drop-in
  folder and its files.

``--help`` lists from the cache only when all of those still match; a stale, unreadable or malformed file is
ignored (the plugins are then mounted for real, which writes it anew). Running a plugin's command always
mounts the real one.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click

from ..home import write_private

FORMAT = 1  # bump when the file's layout changes
FILE_NAME = "cli-commands.json"
ATTRIBUTES = ("help", "short_help", "hidden", "deprecated")  # all get_short_help_str and the listing read


def cache_file(home: Path) -> Path:
    """Where the listing is kept for this home."""
    return home / "cache" / FILE_NAME


def stamp(path: str | Path) -> list[Any]:
    """``[path, mtime_ns, size]``, or ``[path, None, None]`` for a path that is not there."""
    try:
        st = os.stat(path)
    except OSError:
        return [str(path), None, None]
    return [str(path), st.st_mtime_ns, st.st_size]


def key(home: Path) -> dict[str, Any]:
    """What the listing depends on that is known before the config or any plugin is loaded."""
    from .. import __version__

    return {
        "format": FORMAT,
        "agentd": __version__,
        "python": sys.executable,
        "path": list(sys.path),
        "env": sorted((k, v) for k, v in os.environ.items() if k.startswith("AGENTD_")),
        "stamps": [stamp(home / "configs" / "agentd.toml"), *(stamp(entry or ".") for entry in sys.path)],
    }


def cached(home: Path) -> dict[str, click.Command] | None:
    """The plugins' commands as stand-ins for the listing, or None when the cache is missing or stale."""
    try:
        data = json.loads(cache_file(home).read_text(encoding="utf-8"))
        if data["key"] != json.loads(json.dumps(key(home))):  # through JSON: tuples compare as its lists
            return None
        if any(stamp(path) != [path, mtime, size] for path, mtime, size in data["depends"]):
            return None
        return {entry["name"]: stand_in(entry) for entry in data["commands"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:  # missing, half-written or hand-edited
        _debug("command listing cache not used: %s", exc)
        return None


def stand_in(entry: dict[str, Any]) -> click.Command:
    """A command that lists like the real one (name, help, short help, hidden, deprecated) and does nothing."""
    command = click.Command(str(entry["name"]))
    for attr in ATTRIBUTES:
        setattr(command, attr, entry[attr])
    return command


def store(home: Path, before: dict[str, Any], commands: Iterable[click.Command], depends: Iterable[str]) -> None:
    """Record the plugins' commands; ``before`` is ``key(home)`` taken before they were loaded. Nothing is
    written when the key moved meanwhile (a file changed while loading) or the home does not exist yet."""
    if not home.is_dir() or key(home) != before:
        return
    files = {str(path) for path in depends} | ({module_file(command) for command in commands} - {""})
    data = {
        "key": before,
        "depends": [stamp(path) for path in sorted(files)],
        "commands": [{"name": c.name, **{attr: getattr(c, attr) for attr in ATTRIBUTES}} for c in commands],
    }
    path = cache_file(home)
    try:
        text = json.dumps(data)
        path.parent.mkdir(mode=0o700, exist_ok=True)
        write_private(path, [text.encode("utf-8")])
    except (OSError, TypeError, ValueError) as exc:  # read-only home, or help text that is not JSON
        _debug("command listing cache not written: %s", exc)


def module_file(command: click.Command) -> str:
    """The source file defining a command's callback ("" when unknown)."""
    module = sys.modules.get(getattr(command.callback, "__module__", "") or "")
    return str(getattr(module, "__file__", "") or "")


def _debug(message: str, *args: Any) -> None:
    import logging  # here: importing logging is a tenth of `agentd --help`

    logging.getLogger(__name__).debug(message, *args)
