"""Helpers shared by the sandbox containment tests."""

from __future__ import annotations

from agentd_code.sandbox import SandboxUnavailable, select_backend


def _usable(name: str) -> str | None:
    """None when the backend can run here, else why not."""
    try:
        select_backend(name)
    except SandboxUnavailable as exc:
        return str(exc)
    return None
