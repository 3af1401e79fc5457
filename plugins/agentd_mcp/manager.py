"""The servers of one ``[plugins.mcp]`` table, shared process-wide, and the agentd tools built from them."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path
from typing import Any

from agentd import Tool, ToolContext, ToolError, ToolResult

from . import connection
from .connection import ServerConnection, ServerDied, ServerUnavailable
from .results import to_tool_result
from .settings import fingerprint, parse_settings

_managers: dict[str, McpManager] = {}
_lock = threading.Lock()


class McpManager:
    """Connections for one settings table; lists tools once and keeps sessions open for calls."""

    def __init__(self, settings: Any, log_dir: Path | None) -> None:
        self.settings = settings
        self.connections = {
            name: connection.track(ServerConnection(name, server, log_dir))
            for name, server in settings.servers.items()
            if server.enabled
        }
        self._listed = False

    def list_tools(self) -> None:
        """Start every server that has no tool list yet, in parallel, each within its own ``timeout_s``."""
        pending = [c for c in self.connections.values() if c.status.tools is None]
        if not pending:
            return

        async def start_all() -> None:
            await asyncio.gather(*(c.ensure() for c in pending), return_exceptions=True)

        longest = max(c.settings.timeout_s for c in pending)
        # Each server's own timeout ends its start and is recorded in its status; this is a backstop.
        with contextlib.suppress(TimeoutError):
            connection.loop_thread().run(start_all(), timeout=longest + 10)

    def tools(self) -> list[Tool]:
        """agentd Tools for every listed MCP tool, named ``server.tool``."""
        self.list_tools()
        built = []
        for name, conn in self.connections.items():
            for mcp_tool in conn.status.tools or []:
                if conn.settings.offers(mcp_tool.name):
                    built.append(self._tool(name, conn, mcp_tool))
        return built

    def problems(self) -> list[str]:
        """One line per server that is not usable now, saying why."""
        out = []
        for name, conn in self.connections.items():
            if conn.status.tools is None or (not conn.status.connected and conn.status.last_error):
                out.append(f"MCP server {name!r}: {conn.status.last_error or 'not started'}")
        return out

    def _tool(self, server: str, conn: ServerConnection, mcp_tool: Any) -> Tool:
        schema = _clean_schema(mcp_tool.input_schema or {"type": "object", "properties": {}})
        description = (mcp_tool.description or mcp_tool.name).strip().split("\n\n")[0].replace("\n", " ")

        def call(ctx: ToolContext, **args: Any) -> ToolResult:
            return self.call(conn, mcp_tool.name, schema, args, ctx)

        return Tool(
            name=f"{server}.{mcp_tool.name}",
            description=f"[MCP server {server}] {description}",
            parameters=schema,
            fn=call,
            side_effects=conn.settings.effects(),
            timeout_s=conn.settings.call_timeout_s,
            wants_ctx=True,
        )

    def call(
        self, conn: ServerConnection, tool: str, schema: dict, args: dict, ctx: ToolContext
    ) -> ToolResult:
        """Run one MCP tool call from a worker thread; every failure becomes a ToolError the model reads."""
        check_arguments(f"{conn.name}.{tool}", schema, args)
        timeout = conn.settings.call_timeout_s or ctx.timeout_s
        restarts = conn.status.restarts
        try:
            result = connection.loop_thread().run(
                conn.call(tool, args, timeout),
                timeout=timeout + conn.settings.timeout_s + 5,
                cancel=ctx.cancel,
            )
        except ServerUnavailable as exc:
            raise ToolError(f"{exc}; use another tool or try again later") from None
        except ServerDied:
            raise ToolError(
                f"MCP server {conn.name!r} stopped during the call to {tool}; it is restarted on the next call. "
                "The call may or may not have taken effect: check before repeating it"
            ) from None
        except TimeoutError as exc:
            raise ToolError(f"{conn.name}.{tool} {exc} after {timeout:g}s; try smaller input") from None
        except Exception as exc:  # protocol errors (unknown tool, bad params) come back as McpError
            raise ToolError(f"{conn.name}.{tool} failed: {exc}") from None
        out = to_tool_result(result, conn.name, tool, ctx)
        if conn.status.restarts > restarts:
            out.data["mcp_restarted"] = True
            note = f"(MCP server {conn.name!r} had stopped and was restarted before this call)"
            out.output = f"{out.output}\n{note}" if out.output else note
        return out


def check_arguments(label: str, schema: dict, args: dict) -> None:
    """A light check before the round trip: required keys present, no unknown keys when the schema forbids them."""
    props = schema.get("properties") or {}
    missing = [k for k in schema.get("required") or [] if k not in args]
    if missing:
        raise ToolError(
            f"invalid arguments for {label}: missing {', '.join(missing)}; it takes {sorted(props)}"
        )
    if schema.get("additionalProperties") is False:
        extra = sorted(set(args) - set(props))
        if extra:
            raise ToolError(
                f"invalid arguments for {label}: unknown {', '.join(extra)}; it takes {sorted(props)}"
            )


def _clean_schema(schema: dict) -> dict:
    """The server's schema without the pydantic ``title`` noise, which only lengthens the prompt."""
    clean = {k: v for k, v in schema.items() if k != "title"}
    props = clean.get("properties")
    if isinstance(props, dict):
        clean["properties"] = {
            k: {pk: pv for pk, pv in v.items() if pk != "title"} if isinstance(v, dict) else v
            for k, v in props.items()
        }
    clean.setdefault("type", "object")
    return clean


def manager_for(config: Any) -> McpManager | None:
    """The process-wide manager for this config's ``[plugins.mcp]`` table; None when no server is configured."""
    table = config.plugin_settings("mcp")
    if not table.get("servers"):
        return None
    key = fingerprint(table)
    with _lock:
        if key not in _managers:
            settings = parse_settings(table)
            home = getattr(config, "home", None)
            _managers[key] = McpManager(settings, Path(home) / "logs" if home else None)
        return _managers[key]


def shutdown() -> None:
    """Close every MCP server of this process and forget the cached tool lists."""
    with _lock:
        _managers.clear()
    connection.shutdown()
