"""Issue 15 (7–9, 11) in-process: every bad input is a 4xx with a reason, literal run-id prefixes, idempotent
submission, and the exit code for a daemon that went away."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from agentd import Goal
from agentd.daemon.api import MAX_BODY_BYTES, create_api
from agentd.daemon.server import Daemon, DaemonSettings
from agentd.daemon.worker import RunQueue
from agentd.errors import AgentdError
from agentd.testing import make_test_app


@pytest.fixture
def app(tmp_path):
    app, _ = make_test_app(tmp_path, [], settings={"plugins.load": ["workspace"]})
    yield app
    app.close()


def call_api(app, *requests: tuple[str, str, dict]) -> list[httpx.Response]:
    """Send requests to the API over ASGI; a server error comes back as a 500, not an exception."""

    async def scenario() -> list[httpx.Response]:
        daemon = Daemon(app.config, DaemonSettings(workers=1))
        daemon.app = app
        daemon.queue = RunQueue(app.engine, workers=1)
        transport = httpx.ASGITransport(create_api(daemon), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return [await c.request(method, path, **kw) for method, path, kw in requests]

    return asyncio.run(scenario())


def raw(body: str | bytes) -> tuple[str, str, dict]:
    data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    return ("POST", "/runs", {"content": data, "headers": {"content-type": "application/json"}})


BAD_BODIES = {
    "NaN budget": '{"text": "x", "budgets": {"max_seconds": NaN}}',
    "Infinity budget": '{"text": "x", "budgets": {"max_seconds": Infinity}}',
    "-Infinity timeout": '{"text": "x", "budgets": {"tool_timeout_s": -Infinity}}',
    "escaped lone surrogate": '{"text": "a\\ud800b"}',
    "raw lone surrogate": '{"text": "a\ud800b"}',
    "surrogate in model": '{"text": "x", "model": "\\udfff"}',
    "NUL in text": '{"text": "a\\u0000b"}',
    "NUL in tool name": '{"text": "x", "allowed_tools": ["read_file\\u0000"]}',
    "memory yes": '{"text": "x", "memory": "yes"}',
    "memory 1": '{"text": "x", "memory": 1}',
    "unknown tool": '{"text": "x", "allowed_tools": ["read_file", "rm_rf"]}',
    "not UTF-8": b'{"text": "\xff\xfe"}',
}


@pytest.mark.parametrize("name", BAD_BODIES)
def test_bad_goal_bodies_are_refused_with_a_4xx_and_a_reason(app, name):
    (response,) = call_api(app, raw(BAD_BODIES[name]))
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    detail = response.json()["detail"]
    assert detail, response.text
    assert app.journal.list_runs() == []  # nothing was stored


def test_the_refusals_say_what_is_wrong(app):
    nan, tool, memory = call_api(
        app, raw(BAD_BODIES["NaN budget"]), raw(BAD_BODIES["unknown tool"]), raw(BAD_BODIES["memory yes"])
    )
    assert "max_seconds" in json.dumps(nan.json())
    assert "rm_rf" in tool.json()["detail"] and "read_file" in tool.json()["detail"]  # names the known tools
    assert "memory" in json.dumps(memory.json())


def test_an_oversized_body_is_refused_before_it_is_read_whole(app):
    big = json.dumps({"text": "x" * (MAX_BODY_BYTES + 10)}).encode()

    async def chunks():  # no Content-Length: the limit must count what arrives
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    headers = {"content-type": "application/json"}
    declared, chunked = call_api(app, raw(big), ("POST", "/runs", {"content": chunks(), "headers": headers}))
    assert declared.status_code == chunked.status_code == 413
    assert "bytes" in declared.json()["detail"]


def test_good_bodies_still_go_through(app):
    ok, tools = call_api(
        app,
        ("POST", "/runs", {"json": {"text": "Create a.txt", "memory": False, "budgets": {"max_seconds": 30.5}}}),
        ("POST", "/runs", {"json": {"text": "Read a.txt", "allowed_tools": ["read_file"]}}),
    )
    assert ok.status_code == tools.status_code == 201, (ok.text, tools.text)
    by_plugin, by_effect, bad_effect = call_api(
        app,
        ("POST", "/runs", {"json": {"text": "x", "allowed_tools": ["plugin:workspace"]}}),
        ("POST", "/runs", {"json": {"text": "x", "allowed_tools": ["effect:reads_files"]}}),
        ("POST", "/runs", {"json": {"text": "x", "allowed_tools": ["effect:teleports"]}}),
    )
    assert by_plugin.status_code == by_effect.status_code == 201, (by_plugin.text, by_effect.text)
    assert bad_effect.status_code == 422 and "unknown side effect" in bad_effect.json()["detail"]


# -- run-id prefixes are literal ----------------------------------------------------------------------------
def test_run_id_prefixes_are_literal_and_an_ambiguous_one_lists_the_candidates(app):
    a = app.engine.submit(Goal(text="one"), run_id="20260101-000000-aaaaaa")
    b = app.engine.submit(Goal(text="two"), run_id="20260101-000000-aabbbb")
    journal = app.journal
    for pattern in ("%", "_", "2026%", "20260101_000000-aaaaaa", "%aaaaaa"):
        assert journal.get_run(pattern) is None, pattern
    assert journal.get_run(a)["id"] == a and journal.get_run("20260101-000000-aaa")["id"] == a
    with pytest.raises(AgentdError, match="ambiguous") as err:
        journal.get_run("20260101-000000-aa")
    assert a in str(err.value) and b in str(err.value)
    pct, ambiguous, exact = call_api(app, ("GET", "/runs/%25", {}), ("GET", "/runs/2026", {}), ("GET", f"/runs/{b}", {}))
    assert pct.status_code == 404 and ambiguous.status_code == 409 and exact.json()["id"] == b
    assert a in ambiguous.json()["detail"]


# -- Idempotency-Key -----------------------------------------------------------------------------------------
def test_a_repeated_idempotency_key_returns_the_original_run(app):
    body = {"text": "Create a.txt"}
    first, again, other, reused = call_api(
        app,
        ("POST", "/runs", {"json": body, "headers": {"Idempotency-Key": "k-1"}}),
        ("POST", "/runs", {"json": body, "headers": {"Idempotency-Key": "k-1"}}),
        ("POST", "/runs", {"json": body, "headers": {"Idempotency-Key": "k-2"}}),
        ("POST", "/runs", {"json": {"text": "something else"}, "headers": {"Idempotency-Key": "k-1"}}),
    )
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["run_id"] == first.json()["run_id"] != other.json()["run_id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert reused.status_code == 422 and "Idempotency-Key" in reused.json()["detail"]
    assert len(app.journal.list_runs()) == 2


def test_idempotency_key_is_bounded(app):
    (long_key,) = call_api(app, ("POST", "/runs", {"json": {"text": "x"}, "headers": {"Idempotency-Key": "k" * 300}}))
    assert long_key.status_code == 400 and "Idempotency-Key" in long_key.json()["detail"]


# -- the client: one retry with the same key; a distinct exit code when the daemon goes away -----------------
def test_goal_submission_retries_once_with_the_same_key_after_a_connection_error(app, monkeypatch):
    from agentd.daemon import client, wire

    seen: list[str] = []

    def answer(path, method, target, json=None, headers=None, timeout=None):
        seen.append(headers["Idempotency-Key"])
        if len(seen) == 1:  # the daemon journaled the goal, then the connection broke before the answer
            raise wire.WireError("connection reset")
        return wire.Response(200, content=b'{"run_id": "r-1", "status": "queued"}')

    monkeypatch.setattr(wire, "request", answer)
    monkeypatch.setattr(client.time, "sleep", lambda s: None)
    assert client.submit(app.config, Goal(text="x")) == "r-1"
    assert len(seen) == 2 and seen[0] == seen[1] and len(seen[0]) == 32
    seen.clear()
    monkeypatch.setattr(wire, "request", lambda *a, **k: (seen.append("x"), wire.Response(400, content=b'{"detail": "bad"}'))[1])
    with pytest.raises(client.DaemonError, match="bad"):
        client.submit(app.config, Goal(text="x"))
    assert len(seen) == 1  # an answer (even an error) is never retried


def test_losing_the_daemon_while_following_exits_5_not_failed(app, monkeypatch):
    from click.testing import CliRunner

    from agentd.cli import cli
    from agentd.daemon import client

    monkeypatch.setenv("AGENTD_HOME", str(app.config.home))
    monkeypatch.setenv("AGENTD_PLUGINS__DAEMON__RECONNECT_S", "0.2")
    app.config.plugins.daemon = {"reconnect_s": 0.2}
    with pytest.raises(client.DaemonLost, match="may still be going"):
        list(client.events(app.config, "r-1"))  # no daemon answers on the socket any more
    monkeypatch.setattr(client, "health", lambda config: {"ok": True, "config_mtime_ns": 2**62})
    monkeypatch.setattr(client, "submit", lambda config, goal: "r-1")
    result = CliRunner().invoke(cli, ["goal", "Create a.txt"])
    assert result.exit_code == client.LOST_EXIT_CODE == 5, result.output
    assert "runs show r-1" in result.output


def test_a_key_recorded_by_a_daemon_that_died_before_creating_the_run_gives_the_retry_that_run_id(app):
    from agentd.daemon.idempotency import IdempotencyKeys

    keys = IdempotencyKeys(app.journal)
    with pytest.raises(RuntimeError), keys.claim("k", '{"text": "x"}') as (first_id, known):
        assert known is None
        raise RuntimeError("killed between recording the key and creating the run")
    with keys.claim("k", '{"text": "x"}') as (retry_id, known):
        assert retry_id == first_id and known is None  # the retry creates the run the key promised
        app.engine.submit(Goal(text="x"), run_id=retry_id)
    with keys.claim("k", '{"text": "x"}') as (again_id, known):
        assert again_id == first_id and known["id"] == first_id
