"""From an MCP ``CallToolResult`` to an agentd ``ToolResult``: text inline, images and resources as files."""

from __future__ import annotations

import base64
import json
import mimetypes
from pathlib import Path
from typing import Any

from agentd import ToolContext, ToolResult

PREVIEW_CHARS = 2000
EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "audio/wav": ".wav",
    "audio/mpeg": ".mp3",
    "text/plain": ".txt",
    "application/json": ".json",
}


def to_tool_result(result: Any, server: str, tool: str, ctx: ToolContext) -> ToolResult:
    """Map the content blocks; ``isError`` becomes ``ToolResult.error`` with the server's own words."""
    parts: list[str] = []
    artifacts: list[str] = []
    for number, block in enumerate(result.content or [], 1):
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)
        elif kind in ("image", "audio"):
            rel = _save(ctx, f"{tool}-{number}", block.mime_type, base64.b64decode(block.data))
            artifacts.append(rel)
            parts.append(f"[{kind} ({block.mime_type}) saved to {rel}]")
        elif kind == "resource":
            parts.append(_embedded(ctx, block.resource, f"{tool}-{number}", artifacts))
        elif kind == "resource_link":
            parts.append(f"[resource link {getattr(block, 'name', '')}: {block.uri}]")
        else:
            parts.append(f"[unsupported content of type {kind!r}]")
    structured = getattr(result, "structured_content", None)
    data: dict[str, Any] = {"mcp_server": server, "mcp_tool": tool}
    if structured is not None:
        data["structured"] = structured
    output = "\n".join(parts)
    if not output and structured is not None:
        output = json.dumps(structured, ensure_ascii=False, default=str)
    if getattr(result, "is_error", False):
        return ToolResult(error=f"{server}.{tool} reported an error: {output or '(no details)'}", data=data)
    return ToolResult(output=output, artifacts=artifacts, data=data)


def _embedded(ctx: ToolContext, resource: Any, stem: str, artifacts: list[str]) -> str:
    uri = str(resource.uri)
    mime = getattr(resource, "mime_type", None) or "application/octet-stream"
    name = Path(uri.split("?", 1)[0].rstrip("/")).name or stem
    text = getattr(resource, "text", None)
    payload = text.encode("utf-8") if text is not None else base64.b64decode(resource.blob)
    rel = _save(ctx, name if "." in name else stem, mime if "." not in name else None, payload)
    artifacts.append(rel)
    note = f"[resource {uri} saved to {rel}]"
    if text is not None:
        preview = text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + " [...]"
        note += "\n" + preview
    return note


def _save(ctx: ToolContext, stem: str, mime: str | None, payload: bytes) -> str:
    """Write into ``mcp/`` in the workspace under a fresh name; returns the workspace-relative path."""
    suffix = ""
    if mime is not None:
        suffix = EXTENSIONS.get(mime) or mimetypes.guess_extension(mime) or ".bin"
    base, ext = (stem, suffix) if suffix else (Path(stem).stem, Path(stem).suffix)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in base) or "result"
    for n in range(1000):
        rel = f"mcp/{safe}{'' if n == 0 else f'-{n}'}{ext}"
        target = ctx.resolve(rel)
        if not target.exists():
            break
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(payload)
    return rel
