"""The ``[plugins.mcp]`` table, validated: one ``[plugins.mcp.servers.NAME]`` table per MCP server."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from agentd import SIDE_EFFECTS

NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")


class McpConfigError(ValueError):
    """The ``[plugins.mcp]`` table is wrong; the message names the key and says what to write instead."""


def _models() -> tuple[Any, Any]:
    # pydantic is an agentd dependency, but it stays out of the plugin's import path (`agentd --help` speed).
    from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

    class ServerSettings(BaseModel):
        """One MCP server: a stdio command (with args, env, cwd) or a streamable-HTTP URL."""

        model_config = ConfigDict(extra="forbid")

        command: str | None = None
        args: list[str] = Field(default_factory=list)
        env: dict[str, str] = Field(default_factory=dict)
        cwd: str | None = None
        url: str | None = None
        # None: a URL server is assumed to use the network, a command to run code (declare what is true).
        side_effects: list[str] | None = None
        timeout_s: float = Field(default=10.0, gt=0)  # start + tool listing
        call_timeout_s: float | None = Field(default=None, gt=0)  # None: the run's tool timeout
        enabled: bool = True
        # Which of the server's tools agentd registers: None = all of them, else only these names (as the
        # server lists them, without the "server." prefix); disabled_tools are left out either way.
        tools: list[str] | None = None
        disabled_tools: list[str] = Field(default_factory=list)

        def offers(self, tool_name: str) -> bool:
            """Whether the allow list and the deny list let this server tool through."""
            allowed = self.tools is None or tool_name in self.tools
            return allowed and tool_name not in self.disabled_tools

        @field_validator("side_effects")
        @classmethod
        def _known_effects(cls, value: list[str] | None) -> list[str] | None:
            unknown = sorted(set(value or ()) - set(SIDE_EFFECTS))
            if unknown:
                raise ValueError(f"unknown side effects {unknown}; choose from {', '.join(SIDE_EFFECTS)}")
            return value

        @model_validator(mode="after")
        def _one_transport(self) -> ServerSettings:
            if bool(self.command) == bool(self.url):
                raise ValueError('give exactly one of "command" (stdio) or "url" (streamable HTTP)')
            if self.url and not self.url.startswith(("http://", "https://")):
                raise ValueError(f"url must start with http:// or https://, got {self.url!r}")
            return self

        def effects(self) -> tuple[str, ...]:
            if self.side_effects is not None:
                return tuple(self.side_effects)
            return ("network",) if self.url else ("runs_code",)

    class McpSettings(BaseModel):
        """The whole ``[plugins.mcp]`` table."""

        model_config = ConfigDict(extra="forbid")

        servers: dict[str, ServerSettings] = Field(default_factory=dict)

        @field_validator("servers")
        @classmethod
        def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
            for name in value:
                if not NAME_RE.match(name):
                    raise ValueError(f"server name {name!r} may only use letters, digits, '_' and '-'")
            return value

    return ServerSettings, McpSettings


def settings_model() -> Any:
    """The pydantic model of the whole ``[plugins.mcp]`` table (declared through ``register_settings``)."""
    return _models()[1]


def parse_settings(table: dict[str, Any]) -> Any:
    """Validate a ``[plugins.mcp]`` table; raise McpConfigError naming the offending key."""
    from pydantic import ValidationError

    _, McpSettings = _models()
    try:
        return McpSettings.model_validate(table or {})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in ("plugins", "mcp", *err["loc"]))
            problems.append(f"{key}: {err['msg']}")
        raise McpConfigError("invalid MCP configuration: " + "; ".join(problems)) from None


def fingerprint(table: dict[str, Any]) -> str:
    """A stable key for a settings table, so equal configs share one set of connections per process."""
    return hashlib.sha256(json.dumps(table or {}, sort_keys=True, default=str).encode()).hexdigest()[:16]
