"""The daemon's HTTP API (FastAPI): submit goals, list/get/cancel runs, approve/deny, SSE events, status.

Handlers that touch the journal are plain ``def`` functions, so Starlette runs them in its thread pool and the
event loop stays free; runs themselves execute in worker threads (agentd.daemon.worker). Errors are JSON with a
``detail`` saying what to do, never a 500 for bad input.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ..errors import AgentdError
from ..records import Goal, RunStatus

END_EVENTS = ("run_finished", "run_parked")
MAX_SEQ = 2**62
RunStatusName = Literal[
    "queued", "running", "awaiting_approval", "succeeded", "failed", "cancelled", "stopped"
]


class BudgetsIn(BaseModel):
    """Per-run limits; any left out take the configured ``[loop]`` default."""

    model_config = ConfigDict(extra="forbid")

    max_steps: int | None = Field(None, ge=1, le=10_000)
    max_replans: int | None = Field(None, ge=0, le=1_000)
    max_tokens: int | None = Field(None, ge=100, le=100_000_000)
    max_seconds: float | None = Field(None, gt=0, le=7 * 86400)
    tool_timeout_s: float | None = Field(None, gt=0, le=86400)


class GoalIn(BaseModel):
    """A goal to reach."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=50_000)
    model: str | None = Field(None, max_length=200)
    budgets: BudgetsIn = Field(default_factory=BudgetsIn)
    memory: bool = True
    schedule: str | None = Field(None, max_length=200)
    allowed_tools: list[str] | None = Field(None, max_length=500)

    def to_goal(self, loop: Any) -> Goal:
        return Goal(
            text=self.text,
            model=self.model,
            budgets=loop.budgets(**self.budgets.model_dump()),
            memory=self.memory,
            schedule=self.schedule,
            allowed_tools=self.allowed_tools,
        )


class Submitted(BaseModel):
    run_id: str
    status: str


class CancelOut(BaseModel):
    run_id: str
    status: str


def create_api(daemon: Any) -> FastAPI:
    """The API over one Daemon (agentd.daemon.server.Daemon)."""
    api = FastAPI(title="agentd", version=daemon.status()["version"], description=__doc__)
    journal = daemon.app.journal

    @api.exception_handler(AgentdError)
    async def agentd_error(request: Request, exc: AgentdError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    def get_run_or_404(run_id: str) -> dict[str, Any]:
        row = journal.get_run(run_id)
        if row is None:
            raise HTTPException(404, f"no run {run_id!r}; GET /runs lists them")
        return row

    @api.get("/health")
    def health() -> dict[str, Any]:
        """Liveness: answers while the daemon serves."""
        return {"ok": True, "accepting": not daemon.stopping}

    @api.get("/status")
    def status() -> dict[str, Any]:
        """pid, uptime, version, queue depth, running runs, loaded models, scheduler status."""
        return daemon.status()

    @api.post("/runs", status_code=201, response_model=Submitted)
    def submit(goal: GoalIn) -> Submitted:
        """Queue a goal; it is journaled before this answers, so a crash cannot lose it."""
        if daemon.stopping:
            raise HTTPException(503, "the daemon is shutting down; retry after it restarts")
        run_id = daemon.queue.submit(goal.to_goal(daemon.config.loop))
        return Submitted(run_id=run_id, status=RunStatus.queued.value)

    @api.get("/runs")
    def list_runs(
        limit: int = Query(50, ge=1, le=1000), status: RunStatusName | None = None
    ) -> list[dict[str, Any]]:
        """Recent runs, newest first."""
        return journal.list_runs(limit=limit, status=status)

    @api.get("/runs/{run_id}")
    def get_run(run_id: str, detail: bool = False) -> dict[str, Any]:
        """One run with its verification (``verified``, ``findings``); ``detail=true`` adds phases and tool calls."""
        from ..engine.verify import verification_of

        row = get_run_or_404(run_id)
        phases = journal.phases(row["id"])
        row |= verification_of(phases)
        if detail:
            row = row | {"phases": phases, "tool_calls": journal.tool_calls(row["id"])}
        return row

    @api.post("/runs/{run_id}/cancel", response_model=CancelOut)
    def cancel(run_id: str) -> CancelOut:
        """Cancel a run: a running one stops at its next safe point (tools see ctx.cancel)."""
        row = get_run_or_404(run_id)
        if RunStatus(row["status"]).finished:
            raise HTTPException(409, f"run {row['id']} already ended ({row['status']})")
        return CancelOut(run_id=row["id"], status=daemon.queue.cancel(row["id"]))

    def decide(run_id: str, approved: bool) -> dict[str, Any]:
        row = get_run_or_404(run_id)
        if row["status"] != RunStatus.awaiting_approval.value:
            raise HTTPException(409, f"run {row['id']} is {row['status']}, not awaiting approval")
        daemon.queue.decide(row["id"], approved)
        return {"run_id": row["id"], "approved": approved, "status": RunStatus.queued.value}

    @api.post("/runs/{run_id}/approve")
    def approve(run_id: str) -> dict[str, Any]:
        """Let a parked run make the call it asked for; it continues."""
        return decide(run_id, True)

    @api.post("/runs/{run_id}/deny")
    def deny(run_id: str) -> dict[str, Any]:
        """Refuse a parked run's call; it stops with stop_reason denied."""
        return decide(run_id, False)

    @api.get("/runs/{run_id}/events", response_class=StreamingResponse)
    def events(
        run_id: str,
        after: int = Query(0, ge=0, le=MAX_SEQ),
        follow: bool = True,
        last_event_id: str | None = Header(None),
    ) -> StreamingResponse:
        """A run's events after id ``after`` (or Last-Event-ID) as SSE; ends when the run ends or parks."""
        row = get_run_or_404(run_id)
        start = _last_event_id(last_event_id, after)
        return StreamingResponse(
            _stream(daemon, row["id"], start, follow),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    scheduler = daemon.scheduler
    if scheduler is not None and callable(getattr(scheduler, "run_now", None)):

        @api.post("/schedules/{name}/run")
        async def run_schedule(name: str) -> dict[str, Any]:
            """Fire a schedule now; its goal is queued like any other run."""
            try:
                result = await asyncio.to_thread(scheduler.run_now, name)
            except KeyError:
                raise HTTPException(404, f"no schedule {name!r}") from None
            return {"name": name, "run_id": result}

    return api


def _last_event_id(header: str | None, after: int) -> int:
    if header is None:
        return after
    try:
        value = int(header.strip())
    except ValueError:
        raise HTTPException(400, "Last-Event-ID must be an event id (an integer)") from None
    if not 0 <= value <= MAX_SEQ:
        raise HTTPException(400, "Last-Event-ID is out of range")
    return max(value, after)


async def _stream(daemon: Any, run_id: str, after: int, follow: bool) -> AsyncIterator[str]:
    """Journaled events past ``after``, then new ones as they are journaled, until the run ends or parks."""
    journal = daemon.app.journal
    idle, ended_checks = 0.0, 0
    while True:
        batch = await asyncio.to_thread(journal.events, run_id, after)
        for event in batch:
            after = event["seq"]
            data = json.dumps(
                {"type": event["type"], "seq": after, "run_id": run_id} | event["data"], default=str
            )
            yield f"id: {after}\nevent: {event['type']}\ndata: {data}\n\n"
            if event["type"] in END_EVENTS:
                return
        if batch:
            idle = 0.0
            continue
        if not follow or daemon.stopping:
            return
        row = await asyncio.to_thread(journal.get_run, run_id)
        if row is None or row["status"] not in (RunStatus.queued.value, RunStatus.running.value):
            # The status is written just before the end event: give that event a moment, then stop.
            ended_checks += 1
            if ended_checks > 10:
                return
            await asyncio.sleep(0.1)
            continue
        await daemon.wait_change(1.0)
        idle += 1.0
        if idle >= 15:
            idle = 0.0
            yield ": keep-alive\n\n"


def token_guard(app: Any, token: str) -> Any:
    """ASGI middleware for the TCP listener: every request needs ``Authorization: Bearer <token>``."""
    expected = f"Bearer {token}".encode()

    async def guarded(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, expected):
                body = b'{"detail": "a bearer token is required: Authorization: Bearer $AGENTD_TOKEN"}'
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"www-authenticate", b"Bearer"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await app(scope, receive, send)

    return guarded
