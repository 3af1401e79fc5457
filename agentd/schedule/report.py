"""``agentd report``: what the schedules did over a period, built from the journal and the fire records.

What ran (outcome, final answer, artifacts), which fires were late (due while the daemon was down, or past
the grace time) and what became of each, what was missed or skipped and why, and every scheduled run still
awaiting approval (whatever its age: it waits on a person). Due times are shown in the schedule's timezone.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from ..engine.verify import verification_of
from ..errors import ConfigError
from ..folder_changes import FolderChanges, describe
from .spec import zone
from .store import Fire, FireStatus, ScheduleStore


def build_report(journal: Any, since: float, now: float | None = None) -> dict[str, Any]:
    """The report as plain data (``--json`` prints it as is)."""
    store = ScheduleStore(journal)
    now = time.time() if now is None else now
    fires = [f for f in store.fires() if f.recorded_at >= since or f.scheduled_at >= since]
    zones = {s.name: s.timezone for s in store.all()}
    runs = []
    for fire in fires:
        if fire.run_id:
            runs.append(_run_entry(journal, fire.run_id) | {"fire": fire.id, "schedule": fire.schedule,
                                                               "kind": fire.kind, "late": fire.missed,
                                                               "due": _due(fire, zones)})
    not_run = [
        _fire_entry(f, zones) for f in fires
        if f.status in (FireStatus.missed, FireStatus.skipped_overlap, FireStatus.pending)
    ]
    waiting = [
        _run_entry(journal, r["id"]) | {"schedule": r["schedule"]}
        for r in journal.list_runs(limit=1000, status="awaiting_approval")
        if r.get("schedule")
    ]
    counts: dict[str, int] = {}
    for r in runs:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    unverified = [r for r in runs if r["status"] == "succeeded" and r.get("verified") is False]
    return {
        "since": since,
        "until": now,
        "fires": len(fires),
        "runs": runs,
        "outcomes": counts,
        "late": [_fire_entry(f, zones) for f in fires if f.missed and f.kind != "manual"],
        "unverified_successes": unverified,  # succeeded, but the outcome checks lacked evidence: look at these
        "missed": [f for f in not_run if f["status"] == FireStatus.missed.value],
        "skipped": [f for f in not_run if f["status"] != FireStatus.missed.value],
        "awaiting_approval": waiting,
    }


def _due(fire: Fire, zones: dict[str, str]) -> str:
    """When the fire was due, in its schedule's timezone: ``2027-01-15 09:00:10 CET (Europe/Paris)``."""
    name = zones.get(fire.schedule, "UTC")
    try:
        tz = zone(name)
    except ConfigError:
        name, tz = "UTC", zone("UTC")
    text = datetime.fromtimestamp(fire.scheduled_at, tz).strftime("%Y-%m-%d %H:%M:%S %Z")
    return text if name == "UTC" else f"{text} ({name})"


def _fire_entry(fire: Fire, zones: dict[str, str]) -> dict[str, Any]:
    return fire.to_dict() | {"due": _due(fire, zones)}


def _run_entry(journal: Any, run_id: str) -> dict[str, Any]:
    row = journal.get_run(run_id)
    if row is None:
        return {"run_id": run_id, "status": "unknown", "final_answer": "", "artifacts": []}
    artifacts: list[str] = []
    for call in journal.tool_calls(row["id"]):
        for path in (call.get("result") or {}).get("artifacts") or []:
            if path not in artifacts:
                artifacts.append(path)
    entry = {
        "run_id": row["id"],
        "status": row["status"],
        "stop_reason": row["stop_reason"],
        "final_answer": row["final_answer"] or "",
        "artifacts": artifacts,
        "workspace": row["workspace"],
        "created_at": row["created_at"],
        "finished_at": row["finished_at"],
    }
    entry |= verification_of(journal.phases(row["id"]))
    entry["changed_files"] = [describe(c) for c in FolderChanges(journal).changed_files(row["id"])]
    if row["status"] == "awaiting_approval":
        asks = [p for p in journal.phases(row["id"]) if p["kind"] == "approval_needed"]
        if asks:
            entry["wants"] = asks[-1].get("call")
    return entry


def render_text(report: dict[str, Any]) -> str:
    """A terminal-readable report."""
    def when(ts: float | None) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"

    lines = [f"Schedules report {when(report['since'])} .. {when(report['until'])}"]
    outcomes = ", ".join(f"{n} {s}" for s, n in sorted(report["outcomes"].items())) or "none"
    caught_up = sum(1 for f in report["late"] if f["run_id"])
    lines.append(f"{len(report['runs'])} run(s): {outcomes}; {len(report['late'])} late ({caught_up} caught up); "
                 f"{len(report['missed'])} missed; {len(report['skipped'])} skipped; "
                 f"{len(report['awaiting_approval'])} awaiting approval")
    if report["unverified_successes"]:
        lines.append("\nSucceeded without evidence (verified: no) - check these:")
    for r in report["unverified_successes"]:
        lines.append(f"  {r['schedule']}  run {r['run_id']}: " + "; ".join(f["message"] for f in r["findings"]))
    if report["runs"]:
        lines.append("\nRan:")
    for r in report["runs"]:
        late = " (late: caught up)" if r["late"] else ""
        verified = {True: "  verified", False: "  unverified"}.get(r.get("verified"), "")
        lines.append(f"  {r['schedule']}  due {r['due']}  run {r['run_id']}  {r['status']}"
                     f"{' (' + r['stop_reason'] + ')' if r.get('stop_reason') else ''}{verified}  {r['kind']}{late}")
        if r["final_answer"]:
            lines.append(f"      answer: {r['final_answer'][:300]}")
        if r["artifacts"]:
            lines.append(f"      artifacts: {', '.join(r['artifacts'])}  (in {r.get('workspace', '')})")
        if r.get("changed_files"):  # writes to attached folders: `agentd runs undo ID` puts them back
            lines.append(f"      changed in attached folders: {'; '.join(r['changed_files'])}")
    if report["late"]:
        lines.append("\nLate (due while the daemon was down or past the grace time):")
    for f in report["late"]:
        became = f"ran as run {f['run_id']}" if f["run_id"] else f"{f['status']}: {f['detail'] or '-'}"
        lines.append(f"  {f['schedule']}  due {f['due']}  {became}")
    # Late fires that did not run are under Late already; Missed holds only the others.
    late_ids = {f["id"] for f in report["late"]}
    for title, key in (("Missed", "missed"), ("Skipped", "skipped")):
        entries = [f for f in report[key] if f["id"] not in late_ids or key == "skipped"]
        if entries:
            lines.append(f"\n{title}:")
        for f in entries:
            lines.append(f"  {f['schedule']}  due {f['due']}  {f['status']}: {f['detail'] or '-'}")
    if report["awaiting_approval"]:
        lines.append("\nAwaiting approval (agentd runs approve ID / deny ID):")
    for r in report["awaiting_approval"]:
        wants = r.get("wants") or {}
        lines.append(f"  {r['schedule']}  run {r['run_id']}  wants {wants.get('tool', '?')} {wants.get('args', {})}")
    return "\n".join(lines)
