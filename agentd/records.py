"""The loop's records: plain dataclasses, journaled as JSON and replayed on resume.

Pydantic lives only at the edges (config, tool argument schemas, parsing model output); everything the
engine carries from phase to phase is one of these.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class RunStatus(str, Enum):
    """Where a run is in its life."""

    queued = "queued"
    running = "running"
    awaiting_approval = "awaiting_approval"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    stopped = "stopped"  # a budget or the loop detector ended it

    @property
    def finished(self) -> bool:
        return self in (RunStatus.succeeded, RunStatus.failed, RunStatus.cancelled, RunStatus.stopped)


class StopReason(str, Enum):
    """Machine-readable reason a run ended; every ended run has one."""

    done = "done"
    gave_up = "gave_up"
    plan_rejected = "plan_rejected"
    max_steps = "max_steps"
    max_replans = "max_replans"
    max_tokens = "max_tokens"
    timeout = "timeout"
    loop = "loop"
    invalid_model_output = "invalid_model_output"
    model_error = "model_error"
    cancelled = "cancelled"
    daemon_crash = "daemon_crash"
    denied = "denied"
    unverified = "unverified"  # the run said done, but the outcome checks found the claim wrong

    @property
    def is_budget(self) -> bool:
        return self in (
            StopReason.max_steps,
            StopReason.max_replans,
            StopReason.max_tokens,
            StopReason.timeout,
            StopReason.loop,
        )


class Verdict(str, Enum):
    approve = "approve"
    revise = "revise"
    reject = "reject"


class Decision(str, Enum):
    """What the feedback phase decides after each step."""

    continue_ = "continue"
    replan = "replan"
    done = "done"
    give_up = "give_up"


class Record:
    """Mixin: every record turns into JSON-ready dicts and back."""

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):  # type: ignore[no-untyped-def]
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})


def _plain(value: Any) -> Any:
    """JSON-ready: dataclasses become dicts, enums their values, tuples lists; containers are new ones (what
    ``dataclasses.asdict`` gave, without its deep copy of every leaf: the journal calls this for every record)."""
    if isinstance(value, Enum):
        return value.value
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    names = _FIELDS.get(type(value))
    if names is None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = _FIELDS[type(value)] = tuple(f.name for f in dataclasses.fields(value))
    if names is not None:
        return {name: _plain(getattr(value, name)) for name in names}
    return value


_FIELDS: dict[type, tuple[str, ...]] = {}  # a dataclass's field names, looked up once per class


@dataclass
class Usage(Record):
    """Token and time accounting for one model call, or summed over a run."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    model_calls: int = 0
    model_seconds: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.model_calls += other.model_calls
        self.model_seconds += other.model_seconds


@dataclass
class PlannedStep(Record):
    intent: str
    tool: str = ""


@dataclass
class Plan(Record):
    steps: list[PlannedStep]
    reasoning: str = ""
    answer: str = ""  # a direct answer: no tool applies, so no steps
    call: ToolCall | None = None  # a direct call: the plan is one step, and the reply was its call (plan + act)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        return cls(
            steps=[PlannedStep.from_dict(s) for s in data.get("steps", [])],
            reasoning=data.get("reasoning", ""),
            answer=data.get("answer", ""),
            call=ToolCall.from_dict(data["call"]) if data.get("call") else None,
        )


@dataclass
class Critique(Record):
    verdict: Verdict
    reasons: list[str] = field(default_factory=list)
    critic: str = ""

    def __post_init__(self) -> None:
        self.verdict = Verdict(self.verdict)


@dataclass
class ToolCall(Record):
    tool: str
    args: dict[str, Any] = field(default_factory=dict)
    reasoning: str = ""


@dataclass
class ToolResult(Record):
    """What a tool hands back. `error` set means the call failed; the model sees it either way."""

    output: str = ""
    error: str | None = None
    artifacts: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    def for_model(self, limit: int = 1500) -> str:
        text = f"Error: {self.error}" if self.error else (self.output or "(no output)")
        if len(text) > limit:
            text = text[:limit] + f"\n[... cut: {len(text) - limit} more characters]"
        if self.artifacts:
            text += "\nFiles: " + ", ".join(self.artifacts)
        return text


@dataclass
class Observation(Record):
    """A tool call and what came of it, as the loop remembers it."""

    step: int
    call: ToolCall
    result: ToolResult
    seconds: float = 0.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Observation:
        return cls(
            step=data["step"],
            call=ToolCall.from_dict(data["call"]),
            result=ToolResult.from_dict(data["result"]),
            seconds=data.get("seconds", 0.0),
        )


@dataclass
class Feedback(Record):
    decision: Decision
    summary: str = ""
    final_answer: str = ""

    def __post_init__(self) -> None:
        self.decision = Decision(self.decision)


@dataclass
class Finding(Record):
    """One failed outcome check (``verify_outcome``): which check, what is wrong, and how bad: ``contradicted``
    (the evidence says the claim is wrong; the run may not succeed) or ``missing`` (nothing shows it either way;
    the run may succeed, marked ``verified: false``)."""

    check: str
    message: str
    kind: str = "contradicted"


@dataclass
class Budgets(Record):
    """Per-run limits; every one ends the run with its own stop_reason."""

    max_steps: int = 8
    max_replans: int = 2
    max_tokens: int = 60_000
    max_seconds: float = 600.0
    tool_timeout_s: float = 60.0


@dataclass
class Goal(Record):
    text: str
    model: str | None = None
    budgets: Budgets = field(default_factory=Budgets)
    memory: bool = True
    schedule: str | None = None
    allowed_tools: list[str] | None = None  # None: every tool; unattended runs get a list
    notify: list[str] = field(default_factory=list)  # the schedule's Apprise URLs when it fired
    profile: str | None = None  # loop profile ([profiles]); None: chosen from the model when it is submitted
    dirs: list[dict[str, Any]] = field(default_factory=list)  # attached folders (agentd.folders.AttachedFolder)
    no_undo: bool = False  # writes to rw folders keep no copies for `agentd runs undo` (and have no size limit)
    since: float | None = None  # a schedule's previous fire: "since last run" for the planner
    continues: str | None = None  # the run this goal follows up (a run id or "last"): its workspace, its thread

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Goal:
        data = dict(data)
        data["budgets"] = Budgets.from_dict(data.get("budgets") or {})
        return super().from_dict.__func__(cls, data)  # type: ignore[attr-defined]


@dataclass
class Event(Record):
    """One thing that happened in a run, streamed to the CLI and journaled."""

    run_id: str
    type: str
    data: dict[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)
    seq: int = 0
