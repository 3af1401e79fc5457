"""What the dashboard's pages read from the journal: one page of runs at a time, a run in full, approvals.

Reads go through the journal's connection (``Journal._query``, as the schedule store does for its tables); the
runs list is keyset-paginated on ``created_at`` so a page costs the same with ten or ten thousand runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...records import RunStatus

PAGE = 50
STATUSES = tuple(s.value for s in RunStatus)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg")


def m_ui_001_indexes(db: Any) -> None:
    """The runs list filters by status or schedule and sorts by creation time: one index each."""
    db.execute("CREATE INDEX IF NOT EXISTS runs_status_created ON runs(status, created_at)")
    db.execute("CREATE INDEX IF NOT EXISTS runs_schedule_created ON runs(schedule, created_at)")


MIGRATIONS = [m_ui_001_indexes]


@dataclass
class RunsPage:
    """One page of the runs list and the cursor for the next (None on the last page)."""

    runs: list[dict[str, Any]]
    next_before: float | None
    counts: dict[str, int]


def runs_page(journal: Any, q: str = "", status: str = "", before: float | None = None,
              limit: int = PAGE) -> RunsPage:
    """Newest first; ``q`` matches the goal, the run id or the schedule; ``before`` is the previous page's end."""
    sql, params = "SELECT * FROM runs WHERE 1=1", list[Any]()
    if status in STATUSES:
        sql += " AND status = ?"
        params.append(status)
    if q:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        sql += " AND (goal LIKE ? ESCAPE '\\' OR id LIKE ? ESCAPE '\\' OR schedule LIKE ? ESCAPE '\\')"
        params += [pattern] * 3
    if before is not None:
        sql += " AND created_at < ?"
        params.append(before)
    rows = journal._query(sql + " ORDER BY created_at DESC LIMIT ?", (*params, limit + 1))
    runs = [_summary(dict(r)) for r in rows[:limit]]
    _add_outcomes(journal, runs)
    counts = {r["status"]: r["n"] for r in journal._query("SELECT status, COUNT(*) AS n FROM runs GROUP BY status")}
    return RunsPage(runs, runs[-1]["created_at"] if len(rows) > limit else None, counts)


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    usage = json.loads(row.pop("usage_json", None) or "{}")
    row.pop("goal_json", None)
    row["usage"] = usage
    row["tokens"] = int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0))
    row["cost"] = usage.get("cost_usd", usage.get("cost"))
    row.setdefault("verified", None)
    return row


def _add_outcomes(journal: Any, runs: list[dict[str, Any]]) -> None:
    """The ``verified`` flag lives in a run's outcome (its run_finished event): one query for the page."""
    if not runs:
        return
    marks = ", ".join("?" for _ in runs)
    rows = journal._query(
        f"SELECT run_id, data_json FROM events WHERE type = 'run_finished' AND run_id IN ({marks}) ORDER BY id",
        tuple(r["id"] for r in runs),
    )
    outcomes = {r["run_id"]: json.loads(r["data_json"]) for r in rows}
    for run in runs:
        verified = outcomes.get(run["id"], {}).get("verified")
        if verified is not None:
            run["verified"] = bool(verified)


def run_detail(journal: Any, run_id: str) -> dict[str, Any] | None:
    """A run with its phases, tool calls, events, artifacts, the call it waits on, and its outcome."""
    row = journal.get_run(run_id)
    if row is None:
        return None
    run = _summary(row | {"usage_json": json.dumps(row.get("usage") or {})})
    _add_outcomes(journal, [run])
    phases = journal.phases(run["id"])
    run["plans"] = [p for p in phases if p["kind"] == "plan"]
    run["critiques"] = [p for p in phases if p["kind"] == "critique"]
    run["tool_calls"] = journal.tool_calls(run["id"])
    run["events"] = journal.events(run["id"])
    run["last_seq"] = run["events"][-1]["seq"] if run["events"] else 0
    run["wants"] = wanted_call(phases) if run["status"] == RunStatus.awaiting_approval.value else None
    run["artifacts"] = artifacts(run)
    return run


def wanted_call(phases: list[dict[str, Any]]) -> dict[str, Any] | None:
    asks = [p for p in phases if p["kind"] == "approval_needed"]
    return asks[-1].get("call") if asks else None


def artifacts(run: dict[str, Any]) -> list[dict[str, Any]]:
    """Files the run's tools reported, as paths inside its workspace (anything outside is left out)."""
    workspace = Path(run["workspace"]).resolve()
    found: list[dict[str, Any]] = []
    for call in run["tool_calls"]:
        for path in (call.get("result") or {}).get("artifacts") or []:
            rel = workspace_path(workspace, str(path))
            if rel is not None and rel not in [a["path"] for a in found]:
                found.append({"path": rel, "image": rel.lower().endswith(IMAGE_SUFFIXES),
                              "exists": (workspace / rel).is_file()})
    return found


def workspace_path(workspace: Path, path: str) -> str | None:
    """``path`` relative to the workspace, or None when it points outside it."""
    target = (workspace / path).resolve()
    try:
        return str(target.relative_to(workspace.resolve()))
    except ValueError:
        return None


def approvals(journal: Any) -> list[dict[str, Any]]:
    """Every parked run, oldest first (the longest wait first), with the exact call it wants to make."""
    rows = journal.list_runs(limit=1000, status=RunStatus.awaiting_approval.value)
    return [row | {"wants": wanted_call(journal.phases(row["id"]))} for row in reversed(rows)]
