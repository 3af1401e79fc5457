"""Tool policy by name, by plugin and by side-effect category.

Two layers use it:

- ``allowed(tool, allowlist)`` decides whether a goal's ``allowed_tools`` list lets a tool run unattended
  (the loop parks the run for approval otherwise). Entries are tool names, ``plugin:NAME`` (every tool of one
  plugin) or ``effect:EFFECT`` (``category:EFFECT`` is the same): a tool passes the effect entries when every
  side effect it declares is listed, so ``["effect:reads_files"]`` admits ``read_file`` and effect-free tools
  such as ``final_answer``, but not ``write_file``. ``effect:none`` alone admits only effect-free tools.
- ``[plugins.policy] deny_effects = ["network", ...]`` in the config vetoes, through a built-in
  ``before_tool_call`` hookimpl, every call to a tool that declares one of those effects (also tools named in
  ``deny_tools``). The model is told why and can pick another way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .errors import ConfigError
from .hookspecs import hookimpl
from .tools import SIDE_EFFECTS, Tool

PLUGIN_NAME = "policy"
EFFECT_PREFIXES = ("effect:", "category:")
NO_EFFECTS = "none"


def allowed(tool: Tool, allowlist: list[str] | None) -> bool:
    """True when ``allowlist`` (None: everything) admits ``tool`` by name, plugin or side-effect category."""
    if allowlist is None or tool.name in allowlist:
        return True
    effects: set[str] = set()
    for entry in allowlist:
        prefix = next((p for p in EFFECT_PREFIXES if entry.startswith(p)), None)
        if prefix is not None:
            effects.add(entry[len(prefix) :].strip())
        elif entry.startswith("plugin:") and tool.plugin and entry[len("plugin:") :].strip() == tool.plugin:
            return True
    return bool(effects) and set(tool.side_effects) <= effects


def is_name_entry(entry: str) -> bool:
    """True for a plain tool name (checked against the registry); False for ``effect:``/``plugin:`` entries."""
    return not entry.startswith((*EFFECT_PREFIXES, "plugin:"))


def allowlist_problems(allowlist: Iterable[str]) -> list[str]:
    """Entries that can never match (an unknown side effect, an empty name): check an allowlist up front."""
    problems = []
    for entry in allowlist:
        prefix = next((p for p in EFFECT_PREFIXES if entry.startswith(p)), None)
        if prefix is not None:
            effect = entry[len(prefix) :].strip()
            if effect != NO_EFFECTS and effect not in SIDE_EFFECTS:
                problems.append(f"{entry!r}: unknown side effect; choose from {', '.join(SIDE_EFFECTS)} or none")
        elif not entry.strip() or entry.strip() in ("plugin:",):
            problems.append(f"{entry!r}: empty entry")
    return problems


class EffectPolicy:
    """The config's ``[plugins.policy]`` table as a ``before_tool_call`` veto; one instance per plugin host."""

    def __init__(self, deny_effects: Iterable[str] = (), deny_tools: Iterable[str] = ()) -> None:
        self.deny_effects = frozenset(deny_effects)
        self.deny_tools = frozenset(deny_tools)
        unknown = sorted(self.deny_effects - set(SIDE_EFFECTS))
        if unknown:
            raise ConfigError(
                f"plugins.policy.deny_effects: unknown side effects {unknown}; choose from {', '.join(SIDE_EFFECTS)}"
            )

    @hookimpl
    def register_settings(self, register: Any) -> None:
        """``[plugins.policy]``: shown with its defaults by ``config show``; plugin_for() checks the values."""
        from pydantic import BaseModel, ConfigDict, Field

        class PolicySettings(BaseModel):
            model_config = ConfigDict(extra="forbid")

            deny_effects: list[str] = Field(default_factory=list)
            deny_tools: list[str] = Field(default_factory=list)

        register(PolicySettings)

    @hookimpl
    def before_tool_call(self, call: Any, tool: Tool) -> str | None:
        """Veto calls to denied tools and to tools with a denied side effect."""
        if tool.name in self.deny_tools:
            return f"the tool {tool.name} is denied by the configuration (plugins.policy.deny_tools)"
        hit = sorted(self.deny_effects & set(tool.side_effects))
        if hit:
            return (
                f"{tool.name} has side effects {', '.join(hit)}, which the configuration denies "
                "(plugins.policy.deny_effects); use a tool without them"
            )
        return None


def plugin_for(config: Any) -> EffectPolicy:
    """The policy plugin for one host, from the config's ``[plugins.policy]`` table (none: allow all)."""
    settings = config.plugin_settings(PLUGIN_NAME) if config is not None else {}
    unknown = sorted(set(settings) - {"deny_effects", "deny_tools"})
    if unknown:
        raise ConfigError(f"plugins.policy: unknown keys {unknown}; known: deny_effects, deny_tools")
    for key in ("deny_effects", "deny_tools"):
        value = settings.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"plugins.policy.{key} must be a list of strings, got {value!r}")
    return EffectPolicy(settings.get("deny_effects", []), settings.get("deny_tools", []))
