"""MCP servers as agentd tools: every tool of every ``[plugins.mcp.servers.NAME]`` becomes ``NAME.tool``.

A server is a stdio command (``command``, ``args``, ``env``, ``cwd``) or a streamable-HTTP ``url``. Servers
are connected when tools are first registered (each within ``timeout_s``), their tool lists cached for the
process, their sessions kept open for calls, restarted when they die, and closed at exit. A server that cannot
start leaves the rest working and is reported by ``agentd doctor`` and ``tools list``. See docs/mcp.md.
"""

from __future__ import annotations

from typing import Any

from agentd import hookimpl

PLUGIN_NAME = "mcp"
AGENTD_API = "1.0"


@hookimpl
def register_settings(register: Any) -> None:
    """``[plugins.mcp]`` is validated when the config loads."""
    from .settings import settings_model

    register(settings_model())


@hookimpl
def register_tools(register: Any, config: Any) -> None:
    """Register each listed tool of each enabled server (servers that fail are skipped and reported)."""
    from .manager import manager_for

    manager = manager_for(config)
    for tool in manager.tools() if manager else []:
        register(tool)


@hookimpl
def unavailable_tools(config: Any) -> list[str]:
    """Servers whose tools cannot be offered now, and why."""
    from .manager import manager_for
    from .settings import McpConfigError

    try:
        manager = manager_for(config)
    except McpConfigError as exc:
        return [str(exc)]
    if manager is None:
        return []
    manager.list_tools()
    return [f"{line}; its tools are missing" for line in manager.problems()]


@hookimpl
def doctor_checks(config: Any) -> list[tuple[str, bool, str]]:
    """One check per configured server: connected with N tools (and restarts), or why it failed."""
    from .manager import manager_for
    from .settings import McpConfigError

    try:
        manager = manager_for(config)
    except McpConfigError as exc:
        return [("mcp config", False, f"{exc}; fix [plugins.mcp] in configs/agentd.toml")]
    if manager is None:
        return []
    manager.list_tools()
    checks = []
    for name, conn in manager.connections.items():
        st = conn.status
        if st.tools is not None and st.connected:
            detail = f"{len(st.tools)} tools"
            if st.restarts:
                detail += f"; restarted {st.restarts} time(s)"
            checks.append((f"mcp server {name}", True, detail))
        else:
            where = conn.settings.url or " ".join([conn.settings.command or "", *conn.settings.args])
            checks.append(
                (
                    f"mcp server {name}",
                    False,
                    f"{st.last_error or 'not started'} ({where}); check the command/url, or set "
                    f"enabled = false in [plugins.mcp.servers.{name}]; server log: logs/mcp-{name}.log",
                )
            )
    return checks


def shutdown() -> None:
    """Close every MCP server this process started (also done automatically at exit)."""
    from .manager import shutdown as _shutdown

    _shutdown()
