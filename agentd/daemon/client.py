"""The CLI's side of the daemon: httpx over the Unix socket ``AGENTD_HOME/agentd.sock``. Imports only httpx.

``agentd goal`` submits through ``run_goal_remote`` and renders the daemon's server-sent events with the same
LiveTrace/JsonLines as an in-process run, so output and exit codes are identical.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from ..errors import AgentdError

END_EVENTS = ("run_finished", "run_parked")


class DaemonError(AgentdError):
    """The daemon answered with an error, or could not be reached."""

    def __init__(self, message: str, status_code: int = 0) -> None:
        super().__init__(message)
        self.status_code = status_code


def socket_path(config: Any) -> Path:
    return Path(config.home) / "agentd.sock"


def connect(config: Any, timeout: float = 10.0) -> httpx.Client:
    """A client bound to this home's daemon socket."""
    transport = httpx.HTTPTransport(uds=str(socket_path(config)))
    return httpx.Client(transport=transport, base_url="http://agentd", timeout=timeout)


def daemon_running(config: Any) -> bool:
    """True when a daemon answers on this home's socket (a stale socket from a crash answers nothing)."""
    if not socket_path(config).exists():
        return False
    try:
        with connect(config, timeout=2.0) as client:
            return client.get("/health").status_code == 200
    except httpx.HTTPError:
        return False


def request(config: Any, method: str, path: str, **kwargs: Any) -> Any:
    """One API call; returns the decoded JSON, raises DaemonError with the daemon's explanation."""
    try:
        with connect(config) as client:
            response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise DaemonError(
            f"cannot reach the daemon at {socket_path(config)}: {exc}; is it running?"
        ) from None
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        if isinstance(detail, list):  # FastAPI's validation errors
            detail = "; ".join(
                f"{'.'.join(str(x) for x in e.get('loc', []))}: {e.get('msg')}" for e in detail
            )
        raise DaemonError(f"daemon: {detail}", response.status_code)
    return response.json()


def submit(config: Any, goal: Any) -> str:
    """Queue a goal on the daemon; returns its run id."""
    return str(request(config, "POST", "/runs", json=goal.to_dict())["run_id"])


def events(config: Any, run_id: str, after: int = 0, retry_s: float = 30.0) -> Iterator[dict[str, Any]]:
    """A run's events until it finishes or parks; reconnects with Last-Event-ID if the daemon restarts."""
    deadline = None
    while True:
        try:
            with connect(config, timeout=None) as client:  # type: ignore[arg-type]
                headers = {"Last-Event-ID": str(after)}
                with client.stream("GET", f"/runs/{run_id}/events", headers=headers) as response:
                    if response.status_code >= 400:
                        raise DaemonError(f"daemon: cannot stream run {run_id} ({response.status_code})")
                    deadline = None
                    for event in parse_sse(response.iter_lines()):
                        after = max(after, int(event.get("seq", after)))
                        ended = event.get("type") in (*END_EVENTS, "run_error")
                        yield event
                        if ended:
                            return
            row = request(config, "GET", f"/runs/{run_id}")
            if row["status"] not in ("queued", "running"):
                yield {"type": "run_finished", "run_id": run_id} | _outcome_of(row)
                return
        except httpx.HTTPError:
            deadline = deadline or time.monotonic() + retry_s
            if time.monotonic() > deadline:
                raise DaemonError(
                    f"lost the daemon while following run {run_id}; `agentd runs show {run_id}`"
                ) from None
            time.sleep(0.5)


def parse_sse(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Decode a text/event-stream into the JSON ``data`` of each event (comments and ids skipped)."""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield json.loads("\n".join(data))
                data = []
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
    if data:
        yield json.loads("\n".join(data))


def _outcome_of(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": row["status"],
        "stop_reason": row.get("stop_reason"),
        "final_answer": row.get("final_answer") or "",
        "workspace": row.get("workspace", ""),
        "usage": row.get("usage") or {},
        "steps": 0,
        "detail": "",
    }


def follow(config: Any, run_id: str, on_event: Callable[[str, dict[str, Any]], None]) -> dict[str, Any]:
    """Feed a run's events to ``on_event``; returns the outcome (the end event's data)."""
    outcome: dict[str, Any] = {"status": "failed"}
    for event in events(config, run_id):
        type_ = str(event.pop("type", ""))
        on_event(type_, event)
        if type_ == "run_error":  # the daemon could not journal the run (disk full); it resumes when it can
            raise DaemonError(f"run {run_id} stopped: {event.get('error')}; `agentd runs show {run_id}` later")
        if type_ in END_EVENTS:
            outcome = event
    return outcome


def run_goal_remote(config: Any, goal: Any, as_json: bool = False, detach: bool = False) -> int:
    """``agentd goal`` with a daemon up: submit, then stream (or print the id: --detach); the exit code."""
    from ..cli.render import JsonLines, LiveTrace, exit_code

    run_id = submit(config, goal)
    if detach:
        print(json.dumps({"run_id": run_id, "status": "queued"}) if as_json else run_id)
        return 0
    on_event = JsonLines() if as_json else LiveTrace()
    try:
        outcome = follow(config, run_id, on_event)
    except KeyboardInterrupt:
        # Ctrl-C means what it means in-process: cancel the run (the daemon records it as cancelled).
        with contextlib.suppress(DaemonError):
            request(config, "POST", f"/runs/{run_id}/cancel")
        print(f"cancelled run {run_id}", file=sys.stderr)
        return 130
    return exit_code(outcome)
