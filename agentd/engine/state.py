"""A run's loop state, rebuilt by applying journaled phases in order.

The engine applies each phase right after journaling it, and a resumed run replays the same phases through the
same ``apply``; so what the loop does next depends only on the journal, never on memory lost in a crash.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ..records import (
    Critique,
    Decision,
    Feedback,
    Goal,
    Observation,
    Plan,
    RunStatus,
    StopReason,
    ToolCall,
    Usage,
    Verdict,
)

STATUS_FOR = {
    StopReason.done: RunStatus.succeeded,
    StopReason.cancelled: RunStatus.cancelled,
}


@dataclass
class LoopState:
    run_id: str
    goal: Goal
    memories: list[str] | None = None  # None until the context phase ran
    plan: Plan | None = None
    approved: bool = False
    step: int = 0  # index of the current plan step
    steps_taken: int = 0
    replans: int = 0
    pending_call: ToolCall | None = None  # chosen by act, not yet executed
    awaiting_feedback: bool = False
    observations: list[Observation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    seconds: float = 0.0  # time spent inside phases: the wall-clock budget survives restarts
    seen_calls: dict[str, int] = field(default_factory=dict)
    transcript: list[tuple[str, str]] = field(default_factory=list)  # the conversation the model sees
    awaiting_approval: bool = False  # parked: the pending call needs a person's yes or no
    approved_call: dict[str, Any] | None = None  # the pending call a person approved
    final_answer: str = ""
    concluded: Feedback | None = None  # a done/give_up decision whose stop is not journaled yet
    stop_reason: StopReason | None = None
    stop_detail: str = ""
    files_at_start: list[str] = field(default_factory=list)  # the workspace when the run began: inputs, not outputs
    folder_listing: list[str] = field(default_factory=list)  # the attached folders when the run began
    previous: dict[str, Any] | None = None  # a follow-up's view of the run before (threads.previous_context)
    offered_tools: list[str] | None = None  # the tools the plan phase offered the model (None: all)
    requested_tools: list[str] = field(default_factory=list)  # tools the goal asked for, bound to the first plan
    repairs: int = 0  # rounds the outcome checks sent the run back to work
    verified: bool | None = None  # set when the run ends: did its claim pass the outcome checks?
    findings: list[dict[str, Any]] = field(default_factory=list)

    # -- derived --------------------------------------------------------------------------------
    @property
    def status(self) -> RunStatus:
        if self.stop_reason is None and self.awaiting_approval:
            return RunStatus.awaiting_approval
        if self.stop_reason is None:
            return RunStatus.running
        if self.stop_reason in STATUS_FOR:
            return STATUS_FOR[self.stop_reason]
        return RunStatus.stopped if self.stop_reason.is_budget else RunStatus.failed

    @property
    def remaining_steps(self) -> int:
        return max(0, len(self.plan.steps) - self.step - 1) if self.plan else 0

    @property
    def last_observation(self) -> Observation | None:
        return self.observations[-1] if self.observations else None

    def next_phase(self) -> str | None:
        if self.stop_reason is not None:
            return None
        if self.concluded is not None:
            return "conclude"  # a crash between the decision and its stop must not run the step again
        if self.memories is None:
            return "context"
        if self.plan is None:
            return "plan"
        if not self.approved:
            return "critique"
        if self.awaiting_approval:
            return None  # parked until `agentd runs approve|deny`
        if self.pending_call is not None:
            return "tool"
        if self.awaiting_feedback:
            return "feedback"
        return "act"

    # -- transitions ----------------------------------------------------------------------------
    def apply(self, kind: str, data: dict[str, Any]) -> None:
        """Fold one journaled phase into the state."""
        if "usage" in data:
            self.usage.add(Usage.from_dict(data["usage"]))
        if "started_at" in data and "finished_at" in data:
            self.seconds += max(0.0, data["finished_at"] - data["started_at"])
        if data.get("request") and data.get("reply"):
            self.transcript += [("user", data["request"]), ("assistant", data["reply"])]
        getattr(self, f"_apply_{kind}")(data)

    def _apply_context(self, data: dict[str, Any]) -> None:
        self.memories = list(data.get("memories", []))
        self.files_at_start = list(data.get("files_at_start", []))
        self.folder_listing = list(data.get("folders", []))
        self.previous = data.get("previous")

    def _apply_plan(self, data: dict[str, Any]) -> None:
        if "offered_tools" in data:
            self.offered_tools = list(data["offered_tools"])
        if data.get("requested_tools") and not self.requested_tools:
            self.requested_tools = list(data["requested_tools"])
        if data.get("plan"):
            self.plan = Plan.from_dict(data["plan"])
            self.approved = False
            self.step = 0
            self.pending_call = None
            self.awaiting_feedback = False
            if self.plan.call is not None:  # a direct call: act is done, the call waits for critique, then runs
                self.pending_call = self.plan.call
                self.steps_taken += 1
            if self.plan.answer and not self.plan.steps:  # a direct answer: concluded like a done decision
                self.final_answer = self.plan.answer
                self.concluded = Feedback(Decision.done, "answered directly: no tool applies", self.plan.answer)

    def _apply_critique(self, data: dict[str, Any]) -> None:
        critique = Critique.from_dict(data["critique"])
        if critique.verdict == Verdict.approve:
            self.approved = True
        elif critique.verdict == Verdict.revise:
            self._replan("The critic asked for a revised plan: " + "; ".join(critique.reasons))

    def _apply_act(self, data: dict[str, Any]) -> None:
        if data.get("call"):
            self.pending_call = ToolCall.from_dict(data["call"])
            self.steps_taken += 1

    def _apply_tool(self, data: dict[str, Any]) -> None:
        self.approved_call = None
        observation = Observation.from_dict(data["observation"])
        self.observations.append(observation)
        self.pending_call = None
        self.awaiting_feedback = True
        key = call_key(observation)
        self.seen_calls[key] = self.seen_calls.get(key, 0) + 1

    def _apply_feedback(self, data: dict[str, Any]) -> None:
        feedback = Feedback.from_dict(data["feedback"])
        self.awaiting_feedback = False
        last = self.last_observation
        if feedback.decision == Decision.continue_:
            if last is None or last.result.ok:
                self.step = min(self.step + 1, len(self.plan.steps) - 1 if self.plan else 0)
        elif feedback.decision == Decision.replan:
            self._replan(feedback.summary or "The last step showed the plan must change.")
        elif feedback.decision == Decision.done:
            self.final_answer = feedback.final_answer or feedback.summary
        if feedback.decision in (Decision.done, Decision.give_up):
            self.concluded = feedback

    def _apply_replan(self, data: dict[str, Any]) -> None:
        self.awaiting_feedback = False
        self._replan(data.get("reason", ""))

    def _apply_verify(self, data: dict[str, Any]) -> None:
        """The outcome checks refused a ``done``: one repair round, with the findings as the next plan's notes."""
        self.awaiting_feedback = False
        self.concluded = None  # the done claim was refused: back to work, not to its stop
        self.repairs += 1
        self.plan = None
        self.approved = False
        self.notes.append("The goal is not reached yet: " + "; ".join(f["message"] for f in data.get("findings", [])))

    def _apply_model_verify(self, data: dict[str, Any]) -> None:
        """The model verifier's call: only its usage and turn matter (folded in ``apply``)."""

    def _apply_approval_needed(self, data: dict[str, Any]) -> None:
        self.awaiting_approval = True

    def _apply_approval(self, data: dict[str, Any]) -> None:
        self.awaiting_approval = False
        if data.get("approved") and self.pending_call is not None:
            self.approved_call = self.pending_call.to_dict()

    def _apply_stop(self, data: dict[str, Any]) -> None:
        self.stop_reason = StopReason(data["stop_reason"])
        self.stop_detail = data.get("detail", "")
        self.final_answer = data.get("final_answer", self.final_answer) or self.final_answer
        self.verified = bool(data.get("verified", False))
        self.findings = list(data.get("findings", []))

    def _replan(self, reason: str) -> None:
        self.plan = None
        self.approved = False
        self.replans += 1
        if reason:
            self.notes.append(reason)


def call_key(observation: Observation) -> str:
    """Same tool, same arguments, same result: the signature of a loop."""
    payload = json.dumps(
        [observation.call.tool, observation.call.args, observation.result.output, observation.result.error],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
