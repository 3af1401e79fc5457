"""`agentd runs follow`: re-attach to a run's event stream, through the daemon when one runs, else from the
journal, rendered like `agentd goal` (same trace, same exit codes). Ctrl-C stops following; the run goes on."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any

from .render import JsonLines, LiveTrace, exit_code

END_EVENTS = ("run_finished", "run_parked")
POLL_S = 0.2
UNDRIVEN_S = 3.0  # a run nobody has held for this long is not going on: say so rather than wait forever


class NotDriven(Exception):
    """The run is open in the journal but no live process drives it (no daemon is running)."""


def follow_run(config: Any, run_id: str, since: int = 0, as_json: bool = False) -> int:
    """Render run ``run_id``'s events after ``since`` until it ends or parks; the exit code `agentd goal` gives."""
    from ..daemon import client
    from ..errors import AgentdError

    on_event = JsonLines() if as_json else LiveTrace()
    try:
        if client.daemon_running(config):
            outcome = client.follow(config, run_id, on_event, [since])
        else:
            outcome = _follow_journal(config, run_id, since, on_event)
    except KeyboardInterrupt:
        on_event.close()
        print(f"stopped following run {run_id}; it goes on: `agentd runs follow {run_id}` to watch again",
              file=sys.stderr)
        return 130
    except NotDriven as exc:
        on_event.close()
        raise AgentdError(str(exc)) from None
    finally:
        on_event.close()
    return exit_code(outcome)


def _follow_journal(config: Any, run_id: str, since: int, on_event: Any) -> dict[str, Any]:
    from ..journal import Journal

    journal = Journal(config.journal_path)
    outcome: dict[str, Any] = {"status": "failed"}
    try:
        for event in journal_events(journal, run_id, since):
            type_ = str(event.pop("type"))
            on_event(type_, event)
            if type_ in END_EVENTS:
                outcome = event
    finally:
        journal.close()
    return outcome


def journal_events(journal: Any, run_id: str, after: int = 0) -> Iterator[dict[str, Any]]:
    """The run's journaled events after ``after``, then new ones as they are written, until it ends or parks.
    A run that ended before ``after`` ends the stream with its last end event, so the outcome is always shown."""
    from ..journal import owner_is_dead

    undriven_since: float | None = None
    while True:
        batch = journal.events(run_id, after)
        for event in batch:
            after = event["seq"]
            yield {"type": event["type"], "seq": after, "run_id": run_id} | event["data"]
            if event["type"] in END_EVENTS:
                return
        if batch:
            continue
        row = journal.get_run(run_id)
        if row["status"] not in ("queued", "running"):
            time.sleep(POLL_S)  # the status is written just before the end event: give it a moment
            if not journal.events(run_id, after):
                ends = [e for e in journal.events(run_id) if e["type"] in END_EVENTS]
                end: dict[str, Any] = ends[-1] if ends else {"type": "run_finished", "seq": after,
                                                              "data": _row_outcome(row)}
                yield {"type": end["type"], "seq": end["seq"], "run_id": run_id} | end["data"]
                return
            continue
        held = row["lease_owner"] and row["lease_expires_at"] > time.time() and not owner_is_dead(row["lease_owner"])
        undriven_since = None if held else undriven_since or time.monotonic()
        if undriven_since is not None and time.monotonic() - undriven_since > UNDRIVEN_S:
            raise NotDriven(
                f"run {run_id} is {row['status']} but nothing drives it now (no daemon is running): "
                f"`agentd daemon start` resumes it, then `agentd runs follow {run_id}`"
            )
        time.sleep(POLL_S)


def _row_outcome(row: dict[str, Any]) -> dict[str, Any]:
    """An outcome from the run's row, for a run whose end was never journaled as an event."""
    return {"status": row["status"], "stop_reason": row["stop_reason"], "final_answer": row["final_answer"] or "",
            "workspace": row["workspace"], "usage": row["usage"], "steps": 0, "detail": ""}
