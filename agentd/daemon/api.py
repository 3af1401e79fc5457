"""The daemon's HTTP API (FastAPI): submit goals, list/get/cancel runs, approve/deny, SSE events, status.

Handlers that touch the journal are plain ``def`` functions, so Starlette runs them in its thread pool and the
event loop stays free; ``POST /runs`` waits on the loop while the intake thread journals its goal with the others
submitted meanwhile (agentd.daemon.intake). Runs themselves execute in worker threads (agentd.daemon.worker).
Errors are JSON with a ``detail`` saying what to do, never a 500 for bad input.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool
from starlette.concurrency import run_in_threadpool

from ..errors import AgentdError
from ..journal import AmbiguousRunId, ThreadBusy
from ..records import Goal, RunStatus
from ..schedule.spec import allowlist_problems
from .idempotency import IdempotencyKeys, KeyReused, check_key

END_EVENTS = ("run_finished", "run_parked")
MAX_SEQ = 2**62
MAX_BODY_BYTES = 1_000_000  # a goal is at most 50,000 characters; nothing else the API takes comes near this
RunStatusName = Literal[
    "queued", "running", "awaiting_approval", "succeeded", "failed", "cancelled", "stopped"
]


def _clean_text(value: str) -> str:
    """Text the journal can store and every client can decode: no NUL, no lone surrogate."""
    if "\x00" in value:
        raise ValueError("contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains a lone surrogate (\\ud800-\\udfff alone is not text)") from None
    return value


Text = Annotated[str, AfterValidator(_clean_text)]


class BudgetsIn(BaseModel):
    """Per-run limits; any left out take the configured ``[loop]`` default."""

    model_config = ConfigDict(extra="forbid")

    max_steps: int | None = Field(None, ge=1, le=10_000)
    max_replans: int | None = Field(None, ge=0, le=1_000)
    max_tokens: int | None = Field(None, ge=100, le=100_000_000)
    max_seconds: float | None = Field(None, gt=0, le=7 * 86400, allow_inf_nan=False)
    tool_timeout_s: float | None = Field(None, gt=0, le=86400, allow_inf_nan=False)


class DirIn(BaseModel):
    """An attached folder as an object (what ``Goal.to_dict`` sends); a string ``"PATH[:ro|:rw]"`` works too."""

    path: Text = Field(min_length=1, max_length=4096)
    mode: Literal["ro", "rw"] = "ro"
    name: str | None = Field(None, max_length=255)  # given back by Goal.to_dict; the daemon names folders itself


class GoalIn(BaseModel):
    """A goal to reach."""

    model_config = ConfigDict(extra="forbid")

    text: Text = Field(min_length=1, max_length=50_000)
    model: Text | None = Field(None, max_length=200)
    budgets: BudgetsIn = Field(default_factory=BudgetsIn)
    memory: StrictBool = True  # "yes" or 1 is a mistake to report, not a truthy value to guess at
    schedule: Text | None = Field(None, max_length=200)
    allowed_tools: list[Annotated[Text, Field(max_length=200)]] | None = Field(None, max_length=500)
    notify: list[Annotated[Text, Field(max_length=2000)]] = Field(default_factory=list, max_length=50)  # Apprise URLs
    profile: str | None = Field(None, max_length=100)
    dirs: list[Annotated[Text, Field(max_length=4096)] | DirIn] = Field(default_factory=list, max_length=50)
    no_undo: StrictBool = False
    since: float | None = Field(None, ge=0, allow_inf_nan=False)
    continues: Text | None = Field(None, min_length=1, max_length=100)  # a run id or "last": a follow-up of it

    def to_goal(self, loop: Any, config: Any = None) -> Goal:
        """The Goal; attached folders are checked against this daemon's ``[workspace] allowed_dirs`` (a 400)."""
        from ..folders import attach

        specs = [d if isinstance(d, str) else f"{d.path}:{d.mode}" for d in self.dirs]
        return Goal(
            text=self.text,
            model=self.model,
            budgets=loop.budgets(**self.budgets.model_dump()),
            memory=self.memory,
            schedule=self.schedule,
            allowed_tools=self.allowed_tools,
            notify=list(self.notify),
            profile=self.profile,
            dirs=attach(specs, config) if specs else [],
            no_undo=self.no_undo,
            since=self.since,
            continues=self.continues,
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
    api.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    journal = daemon.app.journal
    keys = IdempotencyKeys(journal)

    @api.exception_handler(AgentdError)
    async def agentd_error(request: Request, exc: AgentdError) -> JSONResponse:
        conflict = isinstance(exc, (AmbiguousRunId, ThreadBusy))
        # exit_code: what the same error exits with in-process; `agentd goal` exits with it too.
        return JSONResponse({"detail": str(exc), "exit_code": exc.exit_code}, status_code=409 if conflict else 400)

    @api.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Without the offending input: NaN or a lone surrogate in it would make the error itself unencodable.
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    def get_run_or_404(run_id: str) -> dict[str, Any]:
        row = journal.get_run(run_id)
        if row is None:
            raise HTTPException(404, f"no run {run_id!r}; GET /runs lists them")
        return row

    @api.get("/health", response_model=dict[str, Any])
    def health() -> Response:
        """Liveness: answers while the daemon serves."""
        return _json({"ok": True, "accepting": not daemon.stopping, "config_mtime_ns": daemon.config_mtime_ns})

    @api.get("/status", response_model=dict[str, Any])
    def status() -> Response:
        """pid, uptime, version, queue depth, running runs, loaded models, scheduler status."""
        return _json(daemon.status())

    @api.post("/reload")
    async def reload() -> dict[str, Any]:
        """Re-read the config and schedules.toml; on any error 400 with the reason, the old config kept."""
        return await daemon.reload()

    @api.post("/runs", status_code=201, response_model=Submitted)
    async def submit(goal: GoalIn, idempotency_key: str | None = Header(None)) -> Response:
        """Queue a goal; it is journaled before this answers, so a crash cannot lose it.

        With an ``Idempotency-Key`` header a retried request (same key, same body, within 24 hours) answers
        200 with the run the first one created instead of queueing another.
        """
        if daemon.stopping:
            raise HTTPException(503, "the daemon is shutting down; retry after it restarts")
        problems = allowlist_problems(goal.allowed_tools or [], daemon.app.tools)
        if problems:  # an entry that can never match would park the run for approval on every call
            raise HTTPException(422, f"allowed_tools: {'; '.join(problems)}")
        if idempotency_key is None:  # journaled with the goals submitted meanwhile, no thread per request
            run_id = await daemon.queue.submit_soon(partial(goal.to_goal, daemon.config.loop, daemon.config))
            return _json({"run_id": run_id, "status": RunStatus.queued.value}, 201)
        return await run_in_threadpool(submit_once, goal, idempotency_key)

    def submit_once(goal: GoalIn, idempotency_key: str) -> Response:
        """POST /runs with an Idempotency-Key: the key's claim and the run are one transaction."""
        try:
            with keys.claim(check_key(idempotency_key), goal.model_dump_json()) as (run_id, known_run):
                if known_run is None:
                    daemon.queue.submit(goal.to_goal(daemon.config.loop, daemon.config), run_id=run_id)
        except KeyReused as exc:
            raise HTTPException(422, str(exc)) from None
        if known_run is None:
            return _json({"run_id": run_id, "status": RunStatus.queued.value}, 201)
        return _json({"run_id": run_id, "status": known_run["status"]}, 200, {"Idempotent-Replayed": "true"})

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

    plugin_routes = APIRouter()
    daemon.app.host.call_each("register_routes", router=plugin_routes, config=daemon.config)
    api.include_router(plugin_routes)
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
    daemon.follow(1)  # from here on every run's events wake the streams; the first read covers those before
    try:
        async for chunk in _events(daemon, run_id, after, follow):
            yield chunk
    finally:
        daemon.follow(-1)


async def _events(daemon: Any, run_id: str, after: int, follow: bool) -> AsyncIterator[str]:
    """The SSE chunks of ``_stream``."""
    journal = daemon.app.journal
    idle, ended_checks = 0.0, 0
    sent_progress = None
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
        failed = daemon.queue.journal_errors.get(run_id) if daemon.queue else None
        if failed:  # its journal write failed (disk full): say so now rather than wait for events never written
            data = json.dumps({"type": "run_error", "run_id": run_id, "error": failed[1]})
            yield f"event: run_error\ndata: {data}\n\n"
            return
        progress = daemon.queue.progress.get(run_id) if daemon.queue is not None else None
        if progress is not None and progress is not sent_progress:  # live, not journaled: no id, no replay
            sent_progress = progress
            yield f"event: progress\ndata: {json.dumps({'type': 'progress'} | progress, default=str)}\n\n"
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


def _json(data: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer made here. What a sync endpoint returns as data FastAPI checks against its response model in
    a second trip through the thread pool (after the endpoint's own): one more thread hand-off per request on the
    endpoints every client polls. The declared ``response_model`` still documents the answer."""
    body = json.dumps(data, ensure_ascii=False, default=str, separators=(",", ":"))
    return Response(body, status_code=status_code, headers=headers, media_type="application/json")


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is a 413, whether declared or streamed in chunks."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            reason = "is not a number" if not declared.isdigit() else f"is over {self.max_bytes} bytes"
            body = json.dumps({"detail": f"the request body (Content-Length) {reason}"}).encode()
            await send({"type": "http.response.start", "status": 413 if declared.isdigit() else 400,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return None
        received = 0

        async def limited() -> dict:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:  # raised inside the handler's body read: FastAPI answers it
                raise HTTPException(413, f"the request body is over {self.max_bytes} bytes")
            return message

        return await self.app(scope, limited, send)


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
