"""The CLI's side of the daemon: HTTP over the Unix socket ``AGENTD_HOME/agentd.sock`` (agentd.daemon.wire, the
standard library only: httpx alone took longer to import than the rest of ``agentd goal``).

``agentd goal`` submits through ``run_goal_remote`` and renders the daemon's server-sent events with the same
LiveTrace/JsonLines as an in-process run, so output and exit codes are identical.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AgentdError
from . import wire

END_EVENTS = ("run_finished", "run_parked")
RECONNECT_S = 30.0  # default of [plugins.daemon] reconnect_s: how long a follower waits for a restarting daemon
LOST_EXIT_CODE = 5


class DaemonError(AgentdError):
    """The daemon answered with an error, or could not be reached."""

    def __init__(self, message: str, status_code: int = 0) -> None:
        super().__init__(message)
        self.status_code = status_code  # 0: no answer at all (the daemon could not be reached)


class GoalRefused(DaemonError):
    """The daemon refused a goal for a reason an in-process run would refuse it too (unknown model or profile,
    a folder that may not be attached...): the same message and exit code as in-process."""

    def __init__(self, message: str, status_code: int, exit_code: int) -> None:
        super().__init__(message, status_code)
        self.exit_code = exit_code


class DaemonLost(DaemonError):
    """The daemon went away while a run was followed; the run may still be going (exit 5, not "failed")."""

    exit_code = LOST_EXIT_CODE


@dataclass
class DaemonHome:
    """What a client needs to reach a home's daemon, without loading (and validating) the whole config: the
    daemon checks what it is sent against its own. The config is loaded only if a setting is asked for."""

    home: Path

    def plugin_settings(self, name: str) -> dict[str, Any]:
        """``[plugins.NAME]`` from the config on disk ({} when it does not load)."""
        from ..config import load_config

        try:
            return load_config(home=self.home, validate_plugins=False).plugin_settings(name)
        except AgentdError:
            return {}


def socket_path(config: Any) -> Path:
    return Path(config.home) / "agentd.sock"


def daemon_running(config: Any) -> bool:
    """True when a daemon answers on this home's socket (a stale socket from a crash answers nothing)."""
    return health(config) is not None


def health(config: Any) -> dict[str, Any] | None:
    """The daemon's ``/health`` answer, or None when no daemon answers on this home's socket."""
    if not socket_path(config).exists():
        return None
    try:
        response = wire.request(str(socket_path(config)), "GET", "/health", timeout=2.0)
        return dict(response.json()) if response.status_code == 200 else None
    except (wire.WireError, ValueError, TypeError):
        return None


def stale_config_warning(config: Any, answer: dict[str, Any] | None = None) -> str:
    """A warning when the config files on disk changed after the running daemon read them, else "".
    ``answer``: a ``/health`` answer already fetched."""
    from ..home import config_mtime_ns

    if answer is None:
        try:
            answer = request(config, "GET", "/health")
        except AgentdError:
            return ""
    if config_mtime_ns(config.home) <= int(answer.get("config_mtime_ns", 0)):
        return ""
    return (
        "warning: the config on disk changed after the daemon read it; the daemon still uses the old one: "
        "`agentd daemon reload` applies it"
    )


def request(
    config: Any, method: str, path: str, timeout: float | None = 10.0, json: Any = None,
    headers: dict[str, str] | None = None,
) -> Any:
    """One API call; returns the decoded JSON, raises DaemonError with the daemon's explanation."""
    try:
        response = wire.request(str(socket_path(config)), method, path, json=json, headers=headers, timeout=timeout)
    except wire.WireError as exc:
        raise DaemonError(
            f"cannot reach the daemon at {socket_path(config)}: {exc}; is it running?"
        ) from None
    if response.status_code >= 400:
        try:
            answer = response.json()
            detail = answer.get("detail", response.text)
        except (ValueError, AttributeError):
            answer, detail = {}, response.text
        if isinstance(answer.get("exit_code"), int) and method == "POST" and path == "/runs":
            raise GoalRefused(str(detail), response.status_code, answer["exit_code"])
        if isinstance(detail, list):  # FastAPI's validation errors
            detail = "; ".join(
                f"{'.'.join(str(x) for x in e.get('loc', []))}: {e.get('msg')}" for e in detail
            )
        raise DaemonError(f"daemon: {detail}", response.status_code)
    return response.json()


def submit(config: Any, goal: Any) -> str:
    """Queue a goal (a Goal, or the API's JSON for one) on the daemon; returns its run id.

    The request carries an Idempotency-Key, so after a connection error (the goal may or may not have been
    journaled) one retry with the same key returns the run the first attempt created instead of a second run.
    """
    headers = {"Idempotency-Key": os.urandom(16).hex()}  # what secrets.token_hex does, without hashlib's import
    body = goal.to_dict() if hasattr(goal, "to_dict") else goal
    try:
        return str(request(config, "POST", "/runs", json=body, headers=headers)["run_id"])
    except DaemonError as exc:
        if exc.status_code:
            raise
    time.sleep(0.5)
    return str(request(config, "POST", "/runs", json=body, headers=headers)["run_id"])


def events(
    config: Any, run_id: str, after: int = 0, retry_s: float | None = None
) -> Iterator[dict[str, Any]]:
    """A run's events until it finishes or parks; reconnects with Last-Event-ID if the daemon restarts."""
    deadline = None
    while True:
        try:
            headers = {"Last-Event-ID": str(after)}
            with wire.stream(str(socket_path(config)), f"/runs/{run_id}/events", headers=headers) as response:
                if response.status_code >= 400:
                    raise DaemonError(
                        f"daemon: cannot stream run {run_id} ({response.status_code})", response.status_code
                    )
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
        except (wire.WireError, DaemonError) as exc:
            if isinstance(exc, DaemonError) and exc.status_code:
                raise
            if retry_s is None:  # read once it is needed: following a run needs no config
                retry_s = float(config.plugin_settings("daemon").get("reconnect_s", RECONNECT_S))
            deadline = deadline or time.monotonic() + retry_s
            if time.monotonic() > deadline:
                raise DaemonLost(
                    f"lost the daemon while following run {run_id}: the run may still be going (or resume when "
                    f"the daemon restarts); `agentd runs show {run_id}` tells (exit {LOST_EXIT_CODE})"
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


def follow(
    config: Any, run_id: str, on_event: Callable[[str, dict[str, Any]], None], seen: list[int] | None = None
) -> dict[str, Any]:
    """Feed a run's events to ``on_event``; returns the outcome (the end event's data). ``seen`` holds the last
    event's seq, so following again after an interruption shows nothing twice."""
    seen = seen if seen is not None else [0]
    outcome: dict[str, Any] = {"status": "failed"}
    for event in events(config, run_id, after=seen[0]):
        seen[0] = max(seen[0], int(event.get("seq", 0)))
        type_ = str(event.pop("type", ""))
        on_event(type_, event)
        if type_ == "run_error":  # the daemon could not journal the run (disk full); it resumes when it can
            raise DaemonError(f"run {run_id} stopped: {event.get('error')}; `agentd runs show {run_id}` later")
        if type_ in END_EVENTS:
            outcome = event
    return outcome


def run_goal_remote(
    config: Any, goal: Any, as_json: bool = False, detach: bool = False, answer: dict[str, Any] | None = None
) -> int:
    """``agentd goal`` with a daemon up: submit, then stream (or print the id: --detach); the exit code.
    ``answer``: the daemon's ``/health`` answer when the caller already asked."""
    from ..cli.render import JsonLines, LiveTrace

    warning = stale_config_warning(config, answer)
    if warning:
        print(warning, file=sys.stderr)
    run_id = submit(config, goal)
    if detach:
        print(json.dumps({"run_id": run_id, "status": "queued"}) if as_json else run_id)
        return 0
    return follow_or_cancel(config, run_id, JsonLines() if as_json else LiveTrace())


def follow_or_cancel(config: Any, run_id: str, on_event: Any) -> int:
    """Follow a run this command started to its end; Ctrl-C cancels it (as in-process). The exit code."""
    from ..cli.render import exit_code

    seen = [0]
    try:
        outcome = follow(config, run_id, on_event, seen)
    except KeyboardInterrupt:
        on_event.close()
        # Ctrl-C means what it means in-process: cancel the run (the daemon records it as cancelled), then show
        # the daemon's own summary of it (real steps, calls, tokens, time). A second Ctrl-C leaves at once.
        with contextlib.suppress(DaemonError):
            request(config, "POST", f"/runs/{run_id}/cancel")
        print(f"cancelling run {run_id} (Ctrl-C again to leave now)", file=sys.stderr)
        with contextlib.suppress(KeyboardInterrupt, DaemonError):
            follow(config, run_id, on_event, seen)
        return 130
    finally:
        on_event.close()
    return exit_code(outcome)
