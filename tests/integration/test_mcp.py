"""MCP servers as agentd tools, against real servers: the reference `mcp-server-time` over stdio and a small
MCPServer over streamable HTTP on loopback. No internet."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "plugins"))

import agentd_mcp  # noqa: E402

from agentd import Goal, ToolContext  # noqa: E402
from agentd.config import load_config  # noqa: E402
from agentd.testing import call, feedback, make_test_app, plan  # noqa: E402
from agentd.tools import execute  # noqa: E402

pytest.importorskip("mcp")
pytest.importorskip("mcp_server_time")

pytestmark = pytest.mark.integration


def time_server(marker: str, **extra) -> dict:
    """A stdio `mcp-server-time`; ``marker`` (in its environment) lets a test find its process."""
    return {
        "command": sys.executable,
        "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"],
        "env": {"AGENTD_MCP_TEST": marker},
        "side_effects": [],
        **extra,
    }


def pids_with_marker(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if f"AGENTD_MCP_TEST={marker}".encode() in environ.split(b"\0"):
            found.append(int(entry))
    return found


def ctx_for(tmp_path: Path) -> ToolContext:
    ws = tmp_path / "ws"
    ws.mkdir(exist_ok=True)
    return ToolContext(run_id="manual", workspace=ws, timeout_s=20)


@pytest.fixture(scope="module", autouse=True)
def _close_servers():
    yield
    agentd_mcp.shutdown()


# --- stdio: the reference time server ------------------------------------------------------------------------


def test_time_server_tools_are_listed_with_their_server(tmp_path):
    settings = {"plugins.mcp": {"servers": {"time": time_server("list")}}}
    app, _ = make_test_app(tmp_path, settings=settings, extra_plugins=(agentd_mcp,))
    tool = app.tools["time.convert_time"]
    assert "time.get_current_time" in app.tools
    assert tool.plugin == "mcp" and tool.description.startswith("[MCP server time]")  # the entry-point name
    assert set(tool.parameters["required"]) == {"source_timezone", "time", "target_timezone"}
    assert tool.side_effects == ()
    again, _ = make_test_app(tmp_path / "other", settings=settings, extra_plugins=(agentd_mcp,))
    assert "time.convert_time" in again.tools
    assert len(pids_with_marker("list")) == 1  # the cached listing did not start a second server


def test_time_server_call_returns_correct_data_and_bad_zone_is_a_tool_error(tmp_path):
    app, _ = make_test_app(
        tmp_path,
        settings={"plugins.mcp": {"servers": {"time": time_server("call")}}},
        extra_plugins=(agentd_mcp,),
    )
    args = {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Kolkata"}
    result = execute(app.tools["time.convert_time"], args, ctx_for(tmp_path))
    assert result.ok, result.error
    assert result.data["structured"]["target"]["timezone"] == "Asia/Kolkata"
    assert result.data["structured"]["target"]["datetime"].endswith("T17:30:00+05:30")  # UTC+5:30, no DST
    bad = execute(app.tools["time.get_current_time"], {"timezone": "Mars/Olympus"}, ctx_for(tmp_path))
    assert not bad.ok and "Mars/Olympus" in bad.error


def test_allow_and_deny_lists_pick_a_servers_tools(tmp_path):
    only = {"plugins.mcp": {"servers": {"time": time_server("allow", tools=["convert_time"])}}}
    app, _ = make_test_app(tmp_path / "a", settings=only, extra_plugins=(agentd_mcp,))
    assert "time.convert_time" in app.tools and "time.get_current_time" not in app.tools
    deny = {"plugins.mcp": {"servers": {"time": time_server("deny", disabled_tools=["convert_time"])}}}
    app, _ = make_test_app(tmp_path / "d", settings=deny, extra_plugins=(agentd_mcp,))
    assert "time.get_current_time" in app.tools and "time.convert_time" not in app.tools


def test_killed_server_is_restarted_and_reported(tmp_path):
    settings = {"plugins.mcp": {"servers": {"clock": time_server("kill")}}}
    app, _ = make_test_app(tmp_path, settings=settings, extra_plugins=(agentd_mcp,))
    tool = app.tools["clock.get_current_time"]
    assert execute(tool, {"timezone": "UTC"}, ctx_for(tmp_path)).ok
    [first] = pids_with_marker("kill")
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while first in pids_with_marker("kill") and time.monotonic() < deadline:
        time.sleep(0.05)
    result = execute(tool, {"timezone": "Europe/Berlin"}, ctx_for(tmp_path))
    assert result.ok, result.error
    assert result.data.get("mcp_restarted") is True and "restarted" in result.output
    assert '"timezone": "Europe/Berlin"' in result.output
    [second] = pids_with_marker("kill")
    assert second != first
    config = load_config(home=tmp_path, env={}, overrides=settings)
    [(name, ok, detail)] = agentd_mcp.doctor_checks(config)
    assert name == "mcp server clock" and ok and "restarted 1 time" in detail


def test_failing_servers_are_reported_and_the_rest_works(tmp_path):
    settings = {
        "plugins.mcp": {
            "servers": {
                "time": time_server("mixed"),
                "missing": {"command": str(tmp_path / "no-such-binary")},
                "silent": {
                    "command": sys.executable,
                    "args": ["-c", "import time; time.sleep(60)"],
                    "env": {"AGENTD_MCP_TEST": "silent"},
                    "timeout_s": 1,
                },
            }
        }
    }
    app, _ = make_test_app(tmp_path, settings=settings, extra_plugins=(agentd_mcp,))
    assert sorted(n for n in app.tools.names() if "." in n) == ["time.convert_time", "time.get_current_time"]
    config = load_config(home=tmp_path, env={}, overrides=settings)
    checks = {name: (ok, detail) for name, ok, detail in agentd_mcp.doctor_checks(config)}
    assert checks["mcp server time"][0] is True
    assert checks["mcp server missing"][0] is False and "no-such-binary" in checks["mcp server missing"][1]
    assert checks["mcp server silent"][0] is False and "timeout_s" in checks["mcp server silent"][1]
    unavailable = agentd_mcp.unavailable_tools(config)
    assert len(unavailable) == 2 and any("'silent'" in line for line in unavailable)
    assert execute(app.tools["time.get_current_time"], {"timezone": "UTC"}, ctx_for(tmp_path)).ok
    assert pids_with_marker("silent") == []  # a server that timed out is not left running


def test_server_subprocess_does_not_outlive_the_process(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parents[2] / "plugins")!r})
        import agentd_mcp
        from agentd.testing import make_test_app
        servers = {{"time": {time_server("exit")!r}}}
        app, _ = make_test_app({str(tmp_path)!r}, settings={{"plugins.mcp": {{"servers": servers}}}},
                               extra_plugins=(agentd_mcp,))
        assert "time.get_current_time" in app.tools
        print("ready", flush=True)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "ready" in done.stdout, done.stderr
    deadline = time.monotonic() + 5
    while pids_with_marker("exit") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pids_with_marker("exit") == []


# --- streamable HTTP: a small server written here -------------------------------------------------------------

HTTP_SERVER = '''
import base64, sys
import mcp_types as t
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
server = MCPServer("fixture")

@server.tool()
def reverse(text: str) -> str:
    """Reverse a piece of text."""
    return text[::-1]

@server.tool()
def chart(title: str) -> list:
    """Draw a chart and attach its data."""
    return [
        t.TextContent(type="text", text=f"chart {title}"),
        t.ImageContent(type="image", data=base64.b64encode(PNG).decode(), mime_type="image/png"),
        t.EmbeddedResource(type="resource", resource=t.TextResourceContents(
            uri="file:///srv/data.csv", text="x,y\\n1,2\\n", mime_type="text/csv")),
    ]

@server.tool()
def explode(reason: str) -> str:
    """Always fails, saying why (a ToolError's message reaches the client)."""
    raise ToolError(f"exploded because {reason}")

server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
'''


@pytest.fixture(scope="module")
def http_server(tmp_path_factory):
    path = tmp_path_factory.mktemp("mcp_http") / "server.py"
    path.write_text(HTTP_SERVER)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, str(path), str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"MCP HTTP server exited: {proc.stderr.read()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}/mcp"
    proc.terminate()
    proc.wait(timeout=10)


def test_http_server_tools_results_artifacts_and_errors(tmp_path, http_server):
    settings = {"plugins.mcp": {"servers": {"fx": {"url": http_server}}}}
    app, _ = make_test_app(tmp_path, settings=settings, extra_plugins=(agentd_mcp,))
    assert {"fx.reverse", "fx.chart", "fx.explode"} <= set(app.tools.names())
    assert app.tools["fx.reverse"].side_effects == ("network",)
    ctx = ctx_for(tmp_path)
    assert execute(app.tools["fx.reverse"], {"text": "agentd"}, ctx).output == "dtnega"
    chart = execute(app.tools["fx.chart"], {"title": "sales"}, ctx)
    assert chart.ok and "chart sales" in chart.output and len(chart.artifacts) == 2
    image, table = (ctx.workspace / a for a in chart.artifacts)
    assert image.read_bytes().startswith(b"\x89PNG") and table.read_text() == "x,y\n1,2\n"
    boom = execute(app.tools["fx.explode"], {"reason": "testing"}, ctx)
    assert not boom.ok and "exploded because testing" in boom.error


def test_goal_calls_an_mcp_tool_end_to_end(tmp_path, http_server):
    settings = {"plugins.mcp": {"servers": {"fx": {"url": http_server}}}}
    app, model = make_test_app(
        tmp_path,
        [
            plan(("reverse the word", "fx.reverse")),
            call("fx.reverse", text="stressed"),
            feedback("done", final_answer="desserts"),
        ],
        settings=settings,
        extra_plugins=(agentd_mcp,),
    )
    run_id = app.engine.submit(Goal(text="reverse the word stressed"))
    outcome = app.engine.run(run_id)
    assert outcome["status"] == "succeeded", outcome
    [record] = app.journal.tool_calls(run_id)
    assert "desserts" in str(record)
    assert "fx.reverse" in model.calls[0]["prompt"]  # the planner was offered the MCP tool
