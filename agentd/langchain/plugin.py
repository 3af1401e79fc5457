"""Built-in plugin: LangChain tools named in the config become agentd tools.

```toml
[plugins.langchain]
tools = [
  "langchain_community.tools.file_management.ReadFileTool",
  { class = "langchain_community.tools.file_management.WriteFileTool", name = "lc_write_file",
    side_effects = ["writes_files"], kwargs = {} },
]
```

Each entry is a dotted class path (or a table with ``class`` and optional ``name``, ``side_effects``,
``kwargs``, ``timeout_s``). File-management tools work inside the run's workspace. Side effects default to
what is known for LangChain's file-management tools and to ``["network"]`` for anything else (most LangChain
tools call a service), so policies err on the safe side; declare ``side_effects = []`` for pure tools. An
entry that cannot be loaded leaves the others working and is reported by ``agentd tools list``.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from ..hookspecs import hookimpl

log = logging.getLogger(__name__)

PLUGIN_NAME = "langchain"
ENTRY_KEYS = {"class", "name", "side_effects", "kwargs", "timeout_s"}
_FILE_TOOLS = "langchain_community.tools.file_management."
KNOWN_EFFECTS = {
    "ReadFileTool": ("reads_files",),
    "ListDirectoryTool": ("reads_files",),
    "FileSearchTool": ("reads_files",),
    "WriteFileTool": ("writes_files",),
    "DeleteFileTool": ("writes_files",),
    "CopyFileTool": ("reads_files", "writes_files"),
    "MoveFileTool": ("reads_files", "writes_files"),
}


@hookimpl
def register_tools(register, config):
    """Register every loadable entry of ``[plugins.langchain] tools``."""
    tools, _ = load_entries(config)
    for tool in tools:
        register(tool)


@hookimpl
def unavailable_tools(config):
    """Entries of ``[plugins.langchain] tools`` that could not be loaded, and why."""
    return load_entries(config)[1]


@hookimpl
def register_settings(register):
    """``[plugins.langchain]``: only ``tools``; each entry is checked when it is loaded (see load_entries)."""
    from pydantic import BaseModel, ConfigDict, Field

    class LangchainSettings(BaseModel):
        model_config = ConfigDict(extra="forbid")

        tools: list[str | dict[str, Any]] = Field(default_factory=list)

    register(LangchainSettings)


@hookimpl
def doctor_checks(config):
    """One failed check per configured entry that cannot be loaded (nothing when none are configured)."""
    return [("langchain tool", False, f"{problem}; fix or remove the entry") for problem in load_entries(config)[1]]


def load_entries(config: Any) -> tuple[list[Any], list[str]]:
    """(agentd Tools, problems) for the configured entries; LangChain is imported only when there are any."""
    entries = config.plugin_settings(PLUGIN_NAME).get("tools", [])
    if not entries:
        return [], []
    if not isinstance(entries, list):
        return [], [f"plugins.langchain.tools must be a list, got {entries!r}"]
    tools, problems = [], []
    for number, entry in enumerate(entries, 1):
        try:
            tools.append(_build(entry))
        except Exception as exc:  # one bad entry must not hide the others; the reason is shown to the user
            problems.append(f"plugins.langchain.tools[{number}] ({_label(entry)}): {type(exc).__name__}: {exc}")
    return tools, problems


def _build(entry: Any) -> Any:
    from .tools import from_langchain

    spec = {"class": entry} if isinstance(entry, str) else entry
    if not isinstance(spec, dict) or not isinstance(spec.get("class"), str):
        raise ValueError('each entry is a dotted class path or a table with a "class" key')
    unknown = set(spec) - ENTRY_KEYS
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}; known: {', '.join(sorted(ENTRY_KEYS))}")
    module_name, _, class_name = spec["class"].rpartition(".")
    if not module_name:
        raise ValueError(f"{spec['class']!r} is not a dotted path like package.module.ClassName")
    cls = getattr(importlib.import_module(module_name), class_name)
    instance = cls(**spec.get("kwargs", {}))
    effects = spec.get("side_effects")
    if effects is None:
        effects = KNOWN_EFFECTS.get(class_name, ()) if spec["class"].startswith(_FILE_TOOLS) else ("network",)
    return from_langchain(instance, effects, name=spec.get("name"), timeout_s=spec.get("timeout_s"))


def _label(entry: Any) -> str:
    return entry if isinstance(entry, str) else str(entry.get("class", entry)) if isinstance(entry, dict) else "?"
