"""API keys stored by ``agentd keys set NAME`` in ``$AGENTD_HOME/keys.json`` (owner-only, mode 0600).

A key is stored under the name of the environment variable that would otherwise hold it (``OPENAI_API_KEY``,
``BRAVE_API_KEY``, a model's ``api_key_env``); ``secret(NAME)`` returns the variable when it is set, else the
stored key, so an exported variable always wins.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

from .errors import ConfigError
from .home import write_private

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def keys_path(home: Path | None = None) -> Path:
    from .config import resolve_home

    return (home or resolve_home()) / "keys.json"


def stored_keys(home: Path | None = None) -> dict[str, str]:
    """Every stored key; an unreadable or malformed file is a ConfigError naming it."""
    path = keys_path(home)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read stored keys ({exc}); fix or delete it, then `agentd keys set`") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a JSON object of NAME: key; fix or delete it, then `agentd keys set`")
    return {str(k): str(v) for k, v in data.items()}


def secret(name: str, environ: Mapping[str, str] | None = None, home: Path | None = None) -> str:
    """The environment variable ``name`` when set, else the key stored under that name, else ``""``."""
    environ = os.environ if environ is None else environ
    return environ.get(name, "") or stored_keys(home).get(name, "")


class WithStoredKeys(Mapping[str, str]):
    """An environment where a variable that is absent falls back to the stored key of that name (read per look-up,
    so a key stored while the daemon runs is used without a restart)."""

    def __init__(self, environ: Mapping[str, str] | None = None, home: Path | None = None) -> None:
        self.environ = os.environ if environ is None else environ
        self.home = home

    def __getitem__(self, name: str) -> str:
        value = secret(name, self.environ, self.home)
        if not value and name not in self.environ:
            raise KeyError(name)
        return value

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(set(self.environ) | set(stored_keys(self.home)))

    def __len__(self) -> int:
        return len(set(self.environ) | set(stored_keys(self.home)))


def store_key(name: str, value: str, home: Path | None = None) -> Path:
    """Store (or replace) a key; the file is created owner-only and kept so."""
    if not NAME_RE.match(name):
        raise ConfigError(f"key name {name!r}: use the variable's name, e.g. OPENAI_API_KEY")
    if not value.strip():
        raise ConfigError(f"the key for {name} is empty; nothing was stored")
    keys = stored_keys(home) | {name: value.strip()}
    return _write(keys, home)


def remove_key(name: str, home: Path | None = None) -> bool:
    keys = stored_keys(home)
    if keys.pop(name, None) is None:
        return False
    _write(keys, home)
    return True


def _write(keys: dict[str, str], home: Path | None) -> Path:
    path = keys_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, [json.dumps(keys, indent=1, sort_keys=True).encode("utf-8")])
    return path
