"""Unit tests for the MCP plugin: settings validation, result mapping, argument checks (no servers)."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "plugins"))

import agentd_mcp  # noqa: E402
from agentd_mcp.manager import _clean_schema, check_arguments, manager_for  # noqa: E402
from agentd_mcp.results import to_tool_result  # noqa: E402
from agentd_mcp.settings import McpConfigError, parse_settings  # noqa: E402

from agentd import ToolContext, ToolError  # noqa: E402
from agentd.config import load_config  # noqa: E402

mcp_types = pytest.importorskip("mcp_types")

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def test_settings_accept_stdio_and_http_servers():
    s = parse_settings(
        {
            "servers": {
                "time": {"command": "python", "args": ["-m", "x"], "env": {"A": "1"}, "side_effects": []},
                "web": {"url": "http://127.0.0.1:9/mcp", "timeout_s": 2},
            }
        }
    )
    assert s.servers["time"].effects() == ()
    assert s.servers["web"].effects() == (
        "network",
    )  # undeclared: a URL server is assumed to use the network
    assert s.servers["web"].timeout_s == 2


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"servers": {"a": {}}}, "plugins.mcp.servers.a"),
        ({"servers": {"a": {"command": "x", "url": "http://h"}}}, "plugins.mcp.servers.a"),
        ({"servers": {"a": {"command": "x", "args": "notalist"}}}, "plugins.mcp.servers.a.args"),
        (
            {"servers": {"a": {"command": "x", "side_effects": ["explodes"]}}},
            "plugins.mcp.servers.a.side_effects",
        ),
        ({"servers": {"a": {"command": "x", "timeout_s": 0}}}, "plugins.mcp.servers.a.timeout_s"),
        ({"servers": {"a": {"command": "x", "colour": "red"}}}, "plugins.mcp.servers.a.colour"),
        ({"servers": {"a": {"url": "ftp://h"}}}, "plugins.mcp.servers.a"),
        ({"servers": {"bad.name": {"command": "x"}}}, "plugins.mcp.servers"),
        ({"sever": {}}, "plugins.mcp.sever"),
    ],
)
def test_settings_errors_name_the_key(table, key):
    with pytest.raises(McpConfigError) as info:
        parse_settings(table)
    assert key in str(info.value)


def test_no_servers_means_no_tools_and_no_reports(tmp_path):
    config = load_config(home=tmp_path, env={}, overrides={})
    assert manager_for(config) is None
    assert agentd_mcp.unavailable_tools(config) == []
    assert agentd_mcp.doctor_checks(config) == []


def test_bad_config_is_reported_not_raised_by_doctor(tmp_path):
    config = load_config(
        home=tmp_path, env={}, overrides={"plugins.mcp": {"servers": {"x": {"args": []}}}}, validate_plugins=False
    )
    checks = agentd_mcp.doctor_checks(config)
    assert len(checks) == 1 and checks[0][1] is False and "plugins.mcp.servers.x" in checks[0][2]
    assert "plugins.mcp.servers.x" in agentd_mcp.unavailable_tools(config)[0]


def _ctx(tmp_path: Path) -> ToolContext:
    ws = tmp_path / "ws"
    ws.mkdir(exist_ok=True)
    return ToolContext(run_id="r1", workspace=ws)


def test_text_and_structured_content_map_to_output_and_data(tmp_path):
    result = mcp_types.CallToolResult(
        content=[
            mcp_types.TextContent(type="text", text="first"),
            mcp_types.TextContent(type="text", text="second"),
        ],
        structured_content={"n": 2},
    )
    out = to_tool_result(result, "srv", "tool", _ctx(tmp_path))
    assert out.ok and out.output == "first\nsecond"
    assert out.data["structured"] == {"n": 2} and out.data["mcp_server"] == "srv"


def test_images_and_resources_become_workspace_artifacts(tmp_path):
    ctx = _ctx(tmp_path)
    image = mcp_types.ImageContent(type="image", data=base64.b64encode(PNG).decode(), mime_type="image/png")
    text_res = mcp_types.EmbeddedResource(
        type="resource",
        resource=mcp_types.TextResourceContents(
            uri="file:///data/notes.md", text="# hello", mime_type="text/markdown"
        ),
    )
    blob_res = mcp_types.EmbeddedResource(
        type="resource",
        resource=mcp_types.BlobResourceContents(
            uri="mem://blob",
            blob=base64.b64encode(b"\x00\x01").decode(),
            mime_type="application/octet-stream",
        ),
    )
    result = mcp_types.CallToolResult(content=[image, text_res, blob_res, image])
    out = to_tool_result(result, "srv", "draw", ctx)
    assert out.ok
    assert len(out.artifacts) == 4 and len(set(out.artifacts)) == 4  # the repeated image gets a fresh name
    assert (ctx.workspace / out.artifacts[0]).read_bytes() == PNG and out.artifacts[0].endswith(".png")
    assert (ctx.workspace / out.artifacts[1]).read_text() == "# hello" and out.artifacts[1].endswith(
        "notes.md"
    )
    assert (ctx.workspace / out.artifacts[2]).read_bytes() == b"\x00\x01"
    assert "# hello" in out.output and out.artifacts[0] in out.output


def test_is_error_becomes_a_tool_error_with_the_servers_words(tmp_path):
    result = mcp_types.CallToolResult(
        content=[mcp_types.TextContent(type="text", text="bad zone")], is_error=True
    )
    out = to_tool_result(result, "time", "get_current_time", _ctx(tmp_path))
    assert not out.ok and "bad zone" in out.error and "time.get_current_time" in out.error


def test_argument_check_names_missing_and_unknown_keys():
    schema = {
        "type": "object",
        "properties": {"a": {}, "b": {}},
        "required": ["a"],
        "additionalProperties": False,
    }
    check_arguments("s.t", schema, {"a": 1})
    with pytest.raises(ToolError, match="missing a"):
        check_arguments("s.t", schema, {"b": 1})
    with pytest.raises(ToolError, match="unknown c"):
        check_arguments("s.t", schema, {"a": 1, "c": 2})


def test_schema_titles_are_dropped():
    schema = {"title": "X", "type": "object", "properties": {"a": {"title": "A", "type": "string"}}}
    assert _clean_schema(schema) == {"type": "object", "properties": {"a": {"type": "string"}}}
