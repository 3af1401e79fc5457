"""The dashboard's pages: server-rendered Jinja2, plain HTML forms, a little vanilla JS for live events.

Every form posts back here and answers with a redirect (post/redirect/get), so each page works without
JavaScript; the Run page's script only appends events from the API's SSE stream as they happen.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from ...errors import AgentdError
from ...records import RunStatus
from . import queries

HERE = Path(__file__).parent
BUDGETS = ("max_steps", "max_replans", "max_tokens", "max_seconds")
# Pages load only from the daemon, post only to it, and cannot be framed (no clickjacked Approve button).
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def templates() -> Jinja2Templates:
    t = Jinja2Templates(directory=str(HERE / "templates"))
    t.env.filters["when"] = _when
    t.env.filters["ago"] = _ago
    t.env.filters["iso"] = _iso
    return t


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form as a flat dict (last value wins); read here so handlers can stay synchronous."""
    body = (await request.body()).decode("utf-8", "replace")
    return {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}


FormData = Annotated[dict, Depends(read_form)]


def back(form: dict[str, str], default: str) -> RedirectResponse:
    """Redirect to the page the form came from; only to a path on this site."""
    target = form.get("next", "")
    ok = target.startswith("/") and not target.startswith("//") and "\\" not in target
    return RedirectResponse(target if ok else default, status_code=303)


def make_router(daemon: Any) -> APIRouter:  # noqa: C901 - one closure per page, each a few lines
    """The pages over one Daemon."""
    router = APIRouter(include_in_schema=False)
    pages = templates()
    journal = daemon.app.journal

    def page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        context |= {"nav": name.split(".")[0], "approvals_waiting": _waiting(journal)}
        response = pages.TemplateResponse(request, name, context, status_code=status_code)
        response.headers.update(PAGE_HEADERS)
        return response

    def run_or_404(run_id: str) -> dict[str, Any]:
        run = queries.run_detail(journal, run_id)
        if run is None:
            raise HTTPException(404, f"no run {run_id!r}")
        return run

    @router.get("/", response_class=HTMLResponse)
    def runs(request: Request, q: str = "", status: str = "", before: float | None = None) -> HTMLResponse:
        result = queries.runs_page(journal, q=q.strip()[:200], status=status, before=before)
        return page(request, "runs.html", result=result, q=q, status=status, statuses=queries.STATUSES)

    @router.get("/ui/new", response_class=HTMLResponse)
    def new_goal(request: Request) -> HTMLResponse:
        return page(request, "new.html", form={}, error="", defaults=_defaults(daemon))

    @router.post("/ui/runs")
    def submit(request: Request, form: FormData) -> Response:
        from ..api import GoalIn

        try:
            goal = GoalIn.model_validate(_goal_fields(form))
            run_id = daemon.queue.submit(goal.to_goal(daemon.config.loop))
        except (ValidationError, AgentdError) as exc:
            return page(request, "new.html", 400, form=form, error=_explain(exc), defaults=_defaults(daemon))
        return RedirectResponse(f"/ui/runs/{quote(run_id)}", status_code=303)

    @router.get("/ui/runs/{run_id}", response_class=HTMLResponse)
    def run(request: Request, run_id: str) -> HTMLResponse:
        found = queries.run_detail(journal, run_id)
        if found is None:
            message = f"No run {run_id!r} in the journal (an id prefix must match exactly one run)."
            return page(request, "error.html", 404, title="Run not found", message=message)
        return page(request, "run.html", run=found)

    @router.get("/ui/runs/{run_id}/files/{path:path}")
    def run_file(run_id: str, path: str, download: bool = False) -> FileResponse:
        run = run_or_404(run_id)
        workspace = Path(run["workspace"]).resolve()
        rel = queries.workspace_path(workspace, path)
        if rel is None or not (workspace / rel).is_file():
            raise HTTPException(404, f"no file {path!r} in run {run['id']}'s workspace")
        disposition = "attachment" if download else "inline"
        return FileResponse(workspace / rel, filename=Path(rel).name, content_disposition_type=disposition,
                            headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"})

    @router.post("/ui/runs/{run_id}/{action}")
    def act_on_run(run_id: str, action: str, form: FormData) -> Response:
        row = run_or_404(run_id)
        if action == "cancel" and not RunStatus(row["status"]).finished:
            daemon.queue.cancel(row["id"])
        elif action in ("approve", "deny") and row["status"] == RunStatus.awaiting_approval.value:
            daemon.queue.decide(row["id"], action == "approve", by="dashboard")
        elif action not in ("cancel", "approve", "deny"):
            raise HTTPException(404, f"no action {action!r}; cancel, approve or deny")
        return back(form, f"/ui/runs/{quote(row['id'])}")

    @router.get("/ui/approvals", response_class=HTMLResponse)
    def approvals(request: Request) -> HTMLResponse:
        return page(request, "approvals.html", runs=queries.approvals(journal))

    @router.get("/ui/schedules", response_class=HTMLResponse)
    def schedules(request: Request) -> HTMLResponse:
        return page(request, "schedules.html", schedules=_schedules(journal), can_run=_runner(daemon) is not None)

    @router.post("/ui/schedules/{name}/{action}")
    async def act_on_schedule(name: str, action: str, form: FormData) -> Response:
        from ...schedule.store import ScheduleStore

        store = ScheduleStore(journal)
        if action in ("pause", "resume"):
            await asyncio.to_thread(store.set_paused, name, action == "pause")
        elif action == "run" and _runner(daemon) is not None:
            await asyncio.to_thread(_runner(daemon), name)
        else:
            raise HTTPException(404, f"no action {action!r}; pause, resume or run")
        return back(form, "/ui/schedules")

    @router.get("/ui/report", response_class=HTMLResponse)
    def report(request: Request, hours: float = 24.0) -> HTMLResponse:
        from ...schedule.report import build_report

        hours = min(max(hours, 0.25), 24 * 366)
        data = build_report(journal, since=time.time() - hours * 3600)
        failures = [r for r in data["runs"] if r["status"] not in ("succeeded", "queued", "running")]
        return page(request, "report.html", report=data, hours=hours, failures=failures,
                    others=[r for r in data["runs"] if r not in failures])

    @router.get("/ui/memory", response_class=HTMLResponse)
    def memory(request: Request, q: str = "", k: int = 10) -> HTMLResponse:
        store, problem = _memory(daemon)
        hits = store.search(q, k=min(max(k, 1), 50)) if store is not None and q.strip() else []
        return page(request, "memory.html", q=q, hits=[h.to_dict() for h in hits], problem=problem)

    @router.post("/ui/memory/forget")
    def forget(form: FormData) -> Response:
        store, problem = _memory(daemon)
        if store is None:
            raise HTTPException(409, problem)
        store.forget(id=form.get("id", ""))
        return back(form, "/ui/memory")

    @router.get("/ui/tools", response_class=HTMLResponse)
    def tools(request: Request) -> HTMLResponse:
        app = daemon.app
        unavailable = [(p, str(r)) for p, reasons in app.host.call_each("unavailable_tools", config=app.config)
                       for r in reasons or []]
        return page(request, "tools.html", tools=[t.summary() for t in app.tools.tools.values()],
                    plugins=list(app.host.infos.values()), unavailable=unavailable, problems=app.tools.problems)

    return router


# -- helpers -----------------------------------------------------------------------------------------
def _waiting(journal: Any) -> int:
    rows = journal._query("SELECT COUNT(*) FROM runs WHERE status = ?", (RunStatus.awaiting_approval.value,))
    return int(rows[0][0])


def _defaults(daemon: Any) -> dict[str, Any]:
    loop = daemon.config.loop
    return {k: getattr(loop, k, "") for k in BUDGETS}


def _goal_fields(form: dict[str, str]) -> dict[str, Any]:
    """The New goal form as GoalIn's fields: blank budgets take the configured defaults."""
    budgets = {k: form[k].strip() for k in BUDGETS if form.get(k, "").strip()}
    return {"text": form.get("text", "").strip(), "model": form.get("model", "").strip() or None,
            "memory": form.get("memory") == "on", "budgets": budgets}


def _explain(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p != 'budgets') or 'goal'}: {e['msg']}" for e in exc.errors()
        )
    return str(exc)


def _runner(daemon: Any) -> Any:
    return getattr(daemon.scheduler, "run_now", None) if daemon.scheduler is not None else None


def _schedules(journal: Any) -> list[dict[str, Any]]:
    """Every schedule as `schedule list` describes it, plus its recent missed and skipped fires."""
    from ...schedule.scheduler import describe
    from ...schedule.store import FireStatus, ScheduleStore

    store = ScheduleStore(journal)
    now = time.time()
    out = []
    for schedule in store.all():
        entry = describe(store, schedule, now)
        not_run = [f for s in (FireStatus.missed, FireStatus.skipped_overlap)
                   for f in store.fires(schedule.name, status=s.value)]
        entry["not_run"] = sorted(not_run, key=lambda f: f.scheduled_at, reverse=True)[:10]
        out.append(entry)
    return out


def _memory(daemon: Any) -> tuple[Any, str]:
    """The long-term memory a plugin offers (the ``memory_store`` hook), or None and why not."""
    try:
        offers = daemon.app.host.call_each("memory_store", config=daemon.config)
    except AgentdError as exc:
        return None, str(exc)
    for _plugin, store in offers:
        if store is not None:
            return store, ""
    return None, "no plugin offers long-term memory (load the memory plugin and enable it)"


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "–"


def _iso(text: str | None) -> str:
    """An ISO timestamp with its zone, as people read it: 2026-12-03 03:00 UTC."""
    if not text:
        return ""
    from datetime import datetime

    moment = datetime.fromisoformat(text)
    return moment.strftime("%Y-%m-%d %H:%M ") + (moment.tzname() or "")


def _ago(ts: float | None) -> str:
    if not ts:
        return "–"
    s = max(0, int(time.time() - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit} ago"
    return f"{s}s ago"
