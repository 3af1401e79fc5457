"""The engine: plan → critique → act → feedback, bounded by budgets, journaled phase by phase.

Each phase is computed, journaled, then folded into the LoopState; a resumed run replays the journal and carries
on from its last completed phase. Model mistakes and tool failures are data the next phase sees; only
RunCancelled and the named errors leave the loop.

A run is driven under its lease (journal.py): claimed before the first write, renewed by a heartbeat thread
and by every fenced write, given back with the run's last event. A driver that loses it stops (LeaseLost).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import threads
from ..config import Config
from ..errors import AgentdError, RunCancelled, RunInterrupted, StructuredOutputError
from ..folders import folders_of, listing
from ..journal import Journal, JournalError, Lease, LeaseLost, RunHeld, process_owner
from ..models.registry import BUNDLED_N_CTX
from ..records import Critique, Goal, RunStatus, StopReason, Verdict
from ..tools import ToolRegistry
from . import heartbeat, phases, selection, structured, verify
from .acting import Acting
from .heartbeat import HeldLease
from .outcome import Outcome
from .progress import ProgressReporter
from .state import LoopState

log = logging.getLogger(__name__)
_OVERFLOW = re.compile(r"Requested tokens \((\d+)\) exceed context window of (\d+)")  # llama-cpp-python's words
Emit = Callable[[str, dict[str, Any]], None]


class Engine:
    """Runs goals to an outcome. One engine serves many runs (the daemon shares it between workers)."""

    def __init__(self, config: Config, host: Any, journal: Journal, models: Any, tools: ToolRegistry) -> None:
        self.config = config
        self.host = host
        self.journal = journal
        self.models = models
        self.tools = tools

    # -- public ---------------------------------------------------------------------------------
    def submit(self, goal: Goal, run_id: str | None = None, hold: bool = False) -> str:
        """Persist a goal as a queued run with its own workspace; returns the run id. ``hold``: the run is born
        leased to this process (the in-process CLI), so no daemon can claim it before ``run`` does."""
        return self.journal.create_run(**self._queued(goal, run_id, hold))

    def submit_many(self, goals: Sequence[Goal]) -> list[str | Exception]:
        """Persist several goals as queued runs in one transaction (the daemon's group commit of the goals that
        arrived together); for each, its run id or the error that refused it. A goal refused before the write
        (an empty text, an unknown model) refuses only itself; a failed write (disk full) refuses all of them. A
        follow-up of a conversation is written on its own, since its check can refuse it inside the write."""
        results: list[str | Exception] = [ValueError("not submitted")] * len(goals)
        together: list[tuple[int, dict[str, Any]]] = []
        for i, goal in enumerate(goals):
            try:
                if goal.continues:
                    results[i] = self.submit(goal)
                else:
                    together.append((i, self._queued(goal, None, False)))
            except Exception as exc:  # noqa: BLE001 - this goal's answer; the others go on
                results[i] = exc
        try:
            with self.journal.together():
                ids = [self.journal.create_run(**fields) for _, fields in together]
        except Exception as exc:  # noqa: BLE001 - nothing of the group was written: each is told why
            ids = [exc] * len(together)
        for (i, _), run_id in zip(together, ids, strict=True):
            results[i] = run_id
        return results

    def _queued(self, goal: Goal, run_id: str | None, hold: bool) -> dict[str, Any]:
        """What ``Journal.create_run`` takes for ``goal``, its workspace made: the goal checked, its profile
        chosen, a follow-up joined to the run it continues."""
        if not goal.text.strip():
            raise AgentdError("the goal is empty: say what you want done, e.g. agentd goal \"Create hello.txt\"")
        model_name, _ = self.config.model_config_for(goal.model)
        from ..journal import new_run_id
        from ..models.profiles import choose_profile

        profile = choose_profile(self.config, model_name, goal.profile).name
        goal = dataclasses.replace(goal, profile=profile)  # journaled with the goal; the caller's stays as it was

        thread_id = None
        if goal.continues:  # a follow-up: the earlier run's workspace and thread (the journal refuses a busy one)
            previous = threads.resolve_run(self.journal, goal.continues)
            goal = threads.follow_up(goal, previous)
            workspace, thread_id = Path(previous["workspace"]), previous["thread_id"] or previous["id"]
            run_id = run_id or new_run_id()
            workspace.mkdir(parents=True, exist_ok=True)
        elif run_id is None:
            run_id = self._new_workspace()
            workspace = self.config.workspaces / run_id
        else:
            workspace = self.config.workspaces / run_id
            workspace.mkdir(parents=True, exist_ok=True)
        lease = Lease(run_id, process_owner(), 1, self.config.loop.lease_ttl_s) if hold else None
        return {"goal": goal, "workspace": workspace, "model": model_name, "run_id": run_id, "lease": lease,
                "thread_id": thread_id}

    def _new_workspace(self) -> str:
        """A new run id whose workspace folder this call made. A drawn id (a second's timestamp and 24 random
        bits) repeats about once in 14 minutes at 200 goals a second; a folder that exists is another run's, so
        the id is drawn again before anything is written (in a group commit a repeated id would refuse them all)."""
        from ..journal import new_run_id

        while True:
            run_id = new_run_id()
            try:
                (self.config.workspaces / run_id).mkdir(parents=True)
                return run_id
            except FileExistsError:
                continue

    def decide(self, run_id: str, approved: bool, by: str = "user") -> None:
        """Record a person's answer to a parked run; approve lets the call run on resume, deny stops the run."""
        row = self.journal.get_run(run_id)
        if row is None or row["status"] != RunStatus.awaiting_approval.value:
            raise AgentdError(f"run {run_id!r} is not awaiting approval")
        self.journal.add_phase(row["id"], "approval", {"approved": approved, "by": by}, time.time())
        if not approved:
            data = {"stop_reason": StopReason.denied.value, "detail": f"the tool call was denied by {by}"}
            self.journal.add_phase(row["id"], "stop", data, time.time())
        self.journal.set_status(row["id"], RunStatus.queued)

    def run(
        self, run_id: str, on_event: Emit | None = None, cancel: threading.Event | None = None, owner: str = "",
        live: Callable[[], bool] | None = None,
    ) -> dict:
        """Drive a run to its end (or resume it) under its lease and return its outcome.

        ``live``: whether anyone watches the run's live progress now, asked before each model call (a daemon:
        an event stream is open); None: whenever there is an ``on_event``. Unwatched, a model call reports no
        tokens, so a provider streams nothing for nobody.

        RunHeld: another live process drives it. LeaseLost: it was taken over mid-run; this process stopped."""
        row = self.journal.get_run(run_id)
        if row is None:
            raise AgentdError(f"no run {run_id!r} in the journal")
        owner = owner or process_owner()
        lease = self.journal.claim_run(row["id"], owner, self.config.loop.lease_ttl_s)
        if lease is None:
            raise RunHeld(f"run {row['id']} is being driven by another process ({row['lease_owner']}); not here")
        row = self.journal.get_run(row["id"]) or row  # as of the claim: another driver may have ended it since
        if row["status"] not in (RunStatus.queued.value, RunStatus.running.value):
            self.journal.release_lease(lease)  # nothing to drive: ended (or parked) by its last owner
            ended = {"stop_reason": row["stop_reason"], "final_answer": row["final_answer"] or ""}
            return {"run_id": row["id"], "status": row["status"], "detail": "nothing to drive"} | ended
        cancel = cancel or threading.Event()
        keeper = heartbeat.KEEPER.hold(self.journal, lease, cancel)
        try:
            return self._drive(row, lease, keeper, on_event, cancel, live)
        except JournalError:
            # Nothing more can be recorded (disk full?): give the run back, resumable, as far as the disk allows.
            try:
                self.journal.release_lease(lease)
            except JournalError:
                log.warning("could not release run %s; its lease expires in %gs", run_id, lease.ttl_s)
            raise
        finally:
            heartbeat.KEEPER.drop(keeper)

    def _drive(
        self, row: dict, lease: Lease, keeper: HeldLease, on_event: Emit | None, cancel: Any,
        live: Callable[[], bool] | None,
    ) -> dict:
        goal = Goal.from_dict(row["goal_spec"])
        state = LoopState(run_id=row["id"], goal=goal)
        run = _RunContext(self, state, Path(row["workspace"]), on_event, cancel, lease, keeper, live)
        for phase in self.journal.phases(row["id"]):
            state.apply(phase["kind"], phase)
        resumed = bool(state.observations or state.plan or state.memories is not None)
        started = {"goal": goal.text, "workspace": str(run.workspace), "resumed": resumed, "profile": run.profile,
                   "thread_id": row.get("thread_id"), "continues": goal.continues, "loop": run.loop.model_dump()}
        with self.journal.batch(state.run_id, lease):  # the status and the event that tells of it: one commit
            self.journal.set_status(state.run_id, RunStatus.running, lease=lease)
            seq = self.journal.add_event(state.run_id, "run_started", started, lease=lease)
        run._tell("run_started", started, seq)
        try:
            run.drive()
        except LeaseLost:
            log.warning("run %s: lease lost; another process drives it now", state.run_id)
            raise
        except RunInterrupted:
            return run.interrupted()
        except (RunCancelled, KeyboardInterrupt):
            # Ctrl-C in-process or a cancel from the daemon: the run ends as cancelled, fully journaled; the
            # interrupted phase's time counts, so the summary shows how long the run really went on.
            run.stop(StopReason.cancelled, "cancelled by the user", started=run.phase_started)
        except JournalError:
            raise  # nothing more can be recorded; what was journaled stays, and a restart resumes it
        except AgentdError as exc:  # e.g. the model became unavailable mid-run
            run.stop(StopReason.model_error, str(exc))
        return run.finish()


class _RunContext(Acting, Outcome):
    """One run in flight: the state plus the plumbing each phase needs."""

    def __init__(
        self,
        engine: Engine,
        state: LoopState,
        workspace: Path,
        on_event: Emit | None,
        cancel: threading.Event,
        lease: Lease,
        keeper: HeldLease,
        live: Callable[[], bool] | None = None,
    ) -> None:
        self.engine = engine
        self.live = live
        self.lease = lease
        self.keeper = keeper
        self.config = engine.config
        self.state = state
        self.workspace = workspace
        self.on_event = on_event
        self.cancel = cancel
        self.budgets = state.goal.budgets
        self._reporter: ProgressReporter | None = None
        self.phase_started: float | None = None  # set while a phase runs
        from ..models.profiles import choose_profile, loop_settings

        # [loop] under the run's profile; a goal journaled before profiles existed gets the model's one now.
        self.profile = state.goal.profile or choose_profile(self.config, state.goal.model).name
        self.loop = loop_settings(self.config, self.profile)
        self._offered: tuple[str, ...] | None = None  # the set self._tools and self._head were made for
        self._tools = engine.tools  # all of them, until the plan phase chooses
        self._head: tuple[tuple[str, str], ...] | None = None

    @property
    def tools(self) -> ToolRegistry:
        """The tools this run offers the model: the set its plan phase chose (all, before that)."""
        offered = self.state.offered_tools
        chosen = None if offered is None else tuple(offered)
        if chosen != self._offered:
            self._offered, self._tools, self._head = chosen, self.engine.tools.subset(offered), None
        return self._tools

    def prompt_head(self) -> tuple[tuple[str, str], ...]:
        """The constant start of this run's prompts (phases.prompt_head), made once per offered tool set: every
        call of a run shares it, and making it means every tool's signature and argument contract."""
        tools = self.tools  # first: a new offered set drops the head made for the old one
        if self._head is None:
            self._head = phases.prompt_head(tools, self.loop.worked_examples, self.loop.direct_calls == "on")
        return self._head

    # -- plumbing -------------------------------------------------------------------------------
    def emit(self, type_: str, data: dict[str, Any], release: bool = False) -> None:
        seq = self.engine.journal.add_event(self.state.run_id, type_, data, lease=self.lease, release=release)
        self._tell(type_, data, seq)

    def _tell(self, type_: str, data: dict[str, Any], seq: int) -> None:
        if self.on_event is not None:
            self.on_event(type_, data | {"seq": seq, "run_id": self.state.run_id})

    def _progress(self, phase: str) -> ProgressReporter | None:
        """Live token progress for the display (not journaled: it is not part of what happened)."""
        if self.on_event is None or (self.live is not None and not self.live()):
            return None
        if self._reporter is None:
            on_event, run_id = self.on_event, self.state.run_id
            self._reporter = ProgressReporter(lambda type_, data: on_event(type_, data | {"run_id": run_id}))
        return self._reporter.watch(phase, self.state.usage.model_calls, self.state.usage.completion_tokens)

    def record(
        self, kind: str, data: dict[str, Any], started: float | None = None, events: Sequence[tuple[str, dict]] = (),
        also: Callable[[], None] | None = None,
    ) -> None:
        """Journal a phase with the ``events`` that tell of it (one transaction, with the writes of ``also``), then
        fold it into the state: the order that makes resume exact."""
        started = started or time.time()
        journal, run_id = self.engine.journal, self.state.run_id
        with journal.batch(run_id, self.lease):
            if also is not None:
                also()
            journal.add_phase(run_id, kind, data, started, lease=self.lease)
            seqs = [journal.add_event(run_id, type_, event, lease=self.lease) for type_, event in events]
        self.state.apply(kind, data | {"started_at": started, "finished_at": time.time()})
        for (type_, event), seq in zip(events, seqs, strict=True):
            self._tell(type_, event, seq)

    def stop(self, reason: StopReason, detail: str = "", final_answer: str = "", started: float | None = None,
             **verification: Any) -> None:
        data: dict[str, Any] = {"stop_reason": reason.value, "detail": detail} | verification
        if final_answer:
            data["final_answer"] = final_answer
        self.record("stop", data, started)

    def model(self) -> Any:
        return self.engine.models.get(self.state.goal.model)

    def ask(self, name: str, request: str, schema: dict, validate: Callable[[Any], Any]) -> tuple[Any, dict]:
        """A structured model call; returns (value or None, journal data). Failures are data, not exceptions."""
        _, model_config = self.config.model_config_for(self.state.goal.model)
        # ~3 characters a token, leaving room for the reply: older turns go before the context overflows.
        # The window the provider opened (n_ctx 0 is auto: only the provider knows the figure).
        n_ctx = self.model().info.get("n_ctx") or model_config.n_ctx or BUNDLED_N_CTX
        budget = (n_ctx - model_config.max_tokens) * 3 if model_config.provider == "llamacpp" else None
        window = n_ctx
        for _attempt in range(3):
            value, data, overflow = self._ask_once(name, request, schema, validate, budget)
            if overflow is None or budget is None:
                return value, data
            # Code and JSON run under 3 characters a token: shrink the budget by what the model measured.
            used, window = overflow
            budget = int(budget * (window - model_config.max_tokens) / used * 0.9)
        data.update(error=f"the {name} prompt does not fit the model's context of {window} tokens even with "
                    "older turns dropped: raise the model's n_ctx or shorten the goal", model_failure=True)
        self.emit("model_error", {"phase": name, "error": data["error"]})
        return None, data

    def _ask_once(
        self, name: str, request: str, schema: dict, validate: Callable[[Any], Any], budget: int | None
    ) -> tuple[Any, dict, tuple[int, int] | None]:
        """One structured call; the third item is (prompt tokens, window) when the prompt overflowed it."""
        # The constant head (system, worked examples) is journaled once; the phase names it by its digest.
        head = self.prompt_head()
        messages = phases.messages(self.tools, self.state.transcript, request, budget_chars=budget, head=head)
        data: dict[str, Any] = {
            "prompt_head": self.engine.journal.store_prompt_head(head),
            "prompt": [list(m) for m in messages[len(head):]],
            "request": request,
        }
        try:
            reply = structured.ask(
                self.model(), messages, schema, validate, name=name, retries=self.loop.output_retries,
                on_token=self._progress(name), head=len(head),
            )
        except StructuredOutputError as exc:
            data.update(raw=exc.raw, error=str(exc))
            self.emit("model_error", {"phase": name, "error": str(exc)})
            return None, data, None
        except AgentdError:
            raise
        except Exception as exc:  # the model boundary: provider errors vary (HTTP, llama.cpp, ...)
            overflow = _OVERFLOW.search(str(exc))
            if overflow:
                log.info("the %s prompt overflowed the context (%s); dropping older turns", name, exc)
                return None, data, (int(overflow[1]), int(overflow[2]))
            log.exception("model call failed in %s", name)
            data.update(error=f"{type(exc).__name__}: {exc}{_where(self.model())}", model_failure=True)
            self.emit("model_error", {"phase": name, "error": data["error"]})
            return None, data, None
        data.update(raw=reply.raw, usage=reply.usage.to_dict(), attempts=reply.attempts, repaired=reply.repaired)
        data["reply"] = phases.reply_text(phases.canonical(reply.value))
        if reply.errors:
            data["retry_errors"] = reply.errors
        return reply.value, data, None

    # -- the loop -------------------------------------------------------------------------------
    def drive(self) -> None:
        self._recover_interrupted_call()
        while (phase := self.state.next_phase()) is not None:
            if phase != "conclude":  # a decided run ends as decided
                if self.cancel.is_set():
                    raise self._stop_signal()
                if self._over_budget(phase):
                    continue
            self.phase_started = time.time()
            getattr(self, f"do_{phase}")()
            self.phase_started = None

    def _stop_signal(self) -> AgentdError:
        """Why the stop flag is up: a lost lease, a shutdown (resumable), or a person's cancel."""
        if self.keeper.lost:
            return LeaseLost(self.keeper.lost)
        if getattr(self.cancel, "reason", "cancel") == "shutdown":
            return RunInterrupted()
        return RunCancelled()

    def _over_budget(self, phase: str) -> bool:
        s, b = self.state, self.budgets
        if s.usage.total_tokens >= b.max_tokens:
            self.stop(StopReason.max_tokens, f"used {s.usage.total_tokens} tokens of {b.max_tokens}")
        elif s.seconds >= b.max_seconds:
            self.stop(StopReason.timeout, f"ran {s.seconds:.1f}s of {b.max_seconds:g}s")
        elif phase == "plan" and s.replans > b.max_replans:
            self.stop(StopReason.max_replans, f"replanned {s.replans} times; the limit is {b.max_replans}")
        elif phase == "act" and s.steps_taken >= b.max_steps:
            self.stop(StopReason.max_steps, f"took {s.steps_taken} steps; the limit is {b.max_steps}")
        else:
            return False
        return True

    def do_context(self) -> None:
        started = time.time()
        memories: list[str] = []
        if self.state.goal.memory:
            for _plugin, extra in self.engine.host.call_each(
                "extend_context", goal=self.state.goal, run_id=self.state.run_id, config=self.config
            ):
                memories.extend(str(x) for x in (extra or []))
        data: dict[str, Any] = {"memories": memories, "files_at_start": self._known_files()}
        folders = folders_of(self.state.goal)
        if folders:  # the planner sees what the attached folders hold, newest first
            data["folders"] = listing(folders, self.state.goal.since, self.config.workspace.listing_limit)
        previous = self.engine.journal.get_run(self.state.goal.continues) if self.state.goal.continues else None
        if previous is not None:  # a follow-up plans with the run before in view
            data["previous"] = threads.previous_context(previous, self.workspace)
        told = [("context", {"memories": memories})] if memories else []
        self.record("context", data, started, told)

    def do_plan(self) -> None:
        started = time.time()
        s, max_steps = self.state, self.loop.max_plan_steps
        offered = self._offer_tools()
        requested = selection.named_tools(s.goal.text, self.tools) if self._honour_requests() else []
        direct, calls = self._answer_option(requested), self._may_call(requested)
        request = phases.plan_request(s.goal.text, s.memories or [], s.notes[-2:], not s.transcript, direct,
                                      folders=s.folder_listing, previous=s.previous, calls=calls)
        paths = phases.path_candidates(s.goal.text, self._known_files()) if calls and self.loop.ground_paths else None
        schema = phases.plan_schema(self.tools, max_steps, first=requested, direct=bool(direct), calls=calls,
                                    paths=paths)
        plan, data = self.ask("plan", request, schema, lambda v: phases.parse_plan(
            v, self.tools, max_steps, requested, bool(direct), calls=calls, goal=s.goal.text))
        if requested:
            data["requested_tools"] = requested
        if offered is not None:
            data["offered_tools"] = offered
        if plan is None:
            self.record("plan", data, started)
            reason = StopReason.model_error if data.get("model_failure") else StopReason.invalid_model_output
            self.stop(reason, data["error"])
            return
        data["plan"] = plan.to_dict()
        event = {"steps": [s.to_dict() for s in plan.steps], "replan": self.state.replans}
        if plan.answer:
            event["answer"] = plan.answer
        told = [("plan", event | ({"requested_tools": requested} if requested else {}))]
        if plan.call:  # a direct call: plan and act in one reply
            told.append(("tool_call", {"step": 1, "tool": plan.call.tool, "args": plan.call.args}))
        self.record("plan", data, started, told)

    def _offer_tools(self) -> list[str] | None:
        """Choose the tools the model sees for this run, once (resume and replans keep the set)."""
        if self.state.offered_tools is not None:
            return None
        _, model_config = self.config.model_config_for(self.state.goal.model)
        cap = self.loop.max_tools or (12 if model_config.provider == "llamacpp" else 24)
        offered = selection.select_tools(self.state.goal.text, self.engine.tools, self.engine.host, self.config, cap)
        self.state.offered_tools = offered  # the plan phase journals it, so a resumed run folds the same set
        return offered

    def _answer_option(self, requested: list[str]) -> str:
        """Whether the plan may be a direct answer (``loop.direct_answers``): "" (no), "last" (offered after
        the plan and the call; not with "auto") or "first" (offered first: no offered tool shares a word with the
        goal, and a small model takes the option named first; the grammar still allows the others)."""
        if not (self.loop.direct_answers and self._may_answer_directly(requested)):
            return ""
        if not selection.matching_tools(self.state.goal.text, self.tools):
            return "first"
        return "" if self.loop.direct_answers == "auto" else "last"

    def _may_answer_directly(self, requested: list[str]) -> bool:
        """No direct answer where a tool plainly applies: the goal asks for one, names a file or asks for
        something to be done (verify.needs_tools: the outcome checks refuse an answer alone there), or the
        outcome checks already sent an answer back."""
        goal = self.state.goal.text
        return not (requested or self.state.repairs or verify.needs_tools(goal, self.engine.tools.names()))

    def _may_call(self, requested: list[str]) -> bool:
        """Whether the plan reply may be a direct call (``loop.direct_calls``; "auto": not where the goal names a
        file to write or asks for a tool, the goals the bundled model's two-turn plan and act were tuned on)."""
        mode = self.loop.direct_calls
        if mode != "auto":
            return mode == "on"
        return not (requested or verify.wanted_files(self.state.goal.text, self.engine.tools.names()))

    def _honour_requests(self) -> bool:
        """Tools the goal asks for ("use python", "use fs.read_text_file", even misspelt slightly) bind the first
        plan only: a replan is free to change course."""
        return self.loop.tool_requests == "first_step" and self.state.replans == 0

    def do_critique(self) -> None:
        started = time.time()
        plan, critiques = self.state.plan, []
        data: dict[str, Any] = {}
        if self.loop.critic in ("rules", "both"):
            for plugin, result in self.engine.host.call_each(
                "critique_plan", goal=self.state.goal, plan=plan, tools=self.tools,
                config=self.config.model_copy(update={"loop": self.loop}),  # critics judge by the run's profile
            ):
                if isinstance(result, Critique):
                    critiques.append(result if result.critic else Critique(result.verdict, result.reasons, plugin))
        if self.loop.critic in ("model", "both"):
            request = phases.render("critique.j2")
            verdict, data = self.ask("critique", request, phases.CRITIQUE_SCHEMA, phases.parse_critique)
            if verdict is not None:
                critiques.append(verdict)
        combined = combine_critiques(critiques)
        data["critique"] = combined.to_dict()
        data["critics"] = [c.to_dict() for c in critiques]
        self.record("critique", data, started, [("critique", combined.to_dict())])
        if combined.verdict == Verdict.reject:
            self.stop(StopReason.plan_rejected, "; ".join(combined.reasons))


def _where(handle: Any) -> str:
    """For an API model's failure: which endpoint it was, so the user knows what to check."""
    if "base_url" not in handle.info:
        return ""
    where = handle.info["base_url"] or "https://api.openai.com/v1"
    return f" (model {handle.name} at {where}: is it running and reachable?)"


def combine_critiques(critiques: list[Critique]) -> Critique:
    """Any reject wins, then any revise; no critic at all approves."""
    for verdict in (Verdict.reject, Verdict.revise):
        hits = [c for c in critiques if c.verdict == verdict]
        if hits:
            return Critique(verdict, [r for c in hits for r in c.reasons], ",".join(c.critic for c in hits))
    return Critique(Verdict.approve, [r for c in critiques for r in c.reasons], ",".join(c.critic for c in critiques))
