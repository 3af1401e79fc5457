"""How a run ends: the feedback after each step (rules where unambiguous, else the model), and every claim
of success checked against the evidence before it may stand (``verify.py``'s checks, through the
``verify_outcome`` hook): an answer the evidence contradicts is rebuilt from it, or repaired once, or ends
``unverified``. Then the run's outcome, journaled with its last event.

``Outcome`` is part of the run context (``loop._RunContext``), whose state, journal plumbing and model calls it
uses.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import LoopConfig
from ..journal import Lease
from ..records import Decision, Feedback, RunStatus, StopReason
from . import phases, verify
from .state import LoopState

VALUE_CHARS = 100  # a tool's "value" longer than this is a document, not an answer to lead with


class Outcome:
    """do_feedback and do_conclude, the outcome checks, and the run's end."""

    state: LoopState
    engine: Any
    loop: LoopConfig
    workspace: Path
    lease: Lease
    record: Callable[..., None]
    stop: Callable[..., None]
    emit: Callable[..., None]
    ask: Callable[..., tuple[Any, dict]]
    model: Callable[[], Any]

    def do_feedback(self) -> None:
        started = time.time()
        last = self.state.last_observation
        ok = last is not None and last.result.ok
        choices = phases.feedback_choices(self.state.remaining_steps, ok)
        result = last.result.for_model(self.loop.observation_chars) if last else "(no result)"
        request = phases.feedback_request(result, self.state.remaining_steps, choices, ok)
        lead = self._answer_lead(last)
        feedback = self._feedback_by_rules(ok)
        if feedback is not None:
            # The turn still goes into the transcript, so the model sees the result as if it had decided.
            data: dict[str, Any] = {
                "request": request, "reply": phases.reply_text(phases.canonical(feedback)), "decided_by": "rules"
            }
        else:
            schema = phases.feedback_schema(choices, lead=lead)
            feedback, data = self.ask("feedback", request, schema, lambda v: phases.parse_feedback(v, choices))
        if feedback is None:
            self.record("feedback", data | {"feedback": {"decision": "replan", "summary": data["error"]}}, started)
            if data.get("model_failure"):
                self.stop(StopReason.model_error, data["error"])
            return
        data["feedback"] = feedback.to_dict()
        if lead:
            data["answer_lead"] = lead
        told = [("feedback", feedback.to_dict())]
        if feedback.decision.value == "replan":
            told.append(("replan", {"reason": feedback.summary}))
        self.record("feedback", data, started, told)
        # done and give_up end in do_conclude, the next phase: live and resumed runs alike

    def do_conclude(self) -> None:
        """The stop a done or give_up decision calls for."""
        decided = self.state.concluded
        assert decided is not None
        if decided.decision.value == "done":
            self.conclude(self.state.final_answer, decided.summary)  # checked against the evidence first
        else:
            self.stop(StopReason.gave_up, decided.summary)

    def _feedback_by_rules(self, ok: bool) -> Feedback | None:
        """Decide without a model call where it is unambiguous: a direct call that worked is done (the model
        said one call reaches the goal; its answer is the evidence's, else what the tool returned); a step that
        worked with more of the plan to go continues; a last step whose evidence shows the goal reached is done,
        its answer composed from that evidence. A failed step, or a last step without evidence, is left to the
        model. Every done is checked against the evidence by ``conclude``."""
        plan, last = self.state.plan, self.state.last_observation
        if ok and plan is not None and last is not None and last.call == plan.call:  # the direct call itself
            answer = self._answer_from_evidence() or last.result.for_model(phases.ANSWER["maxLength"])
            return Feedback(Decision.done, "the one call the goal needed worked", answer)
        if self.loop.feedback != "rules" or not ok:
            return None
        if self.state.remaining_steps:
            return Feedback(Decision.continue_, "step done")
        answer = self._answer_from_evidence()
        return Feedback(Decision.done, "the checks show the goal reached", answer) if answer else None

    def _answer_from_evidence(self) -> str:
        """An answer composed from what the run's steps show, when that evidence shows the goal reached and no
        rule finds fault with it; "" otherwise."""
        goal, names = self.state.goal.text, self.engine.tools.names()
        ev = verify.Evidence.of(self.state)
        if not verify.positive_evidence(goal, self.state, self.workspace, names, ev):
            return ""
        answer = verify.compose_answer(goal, self.state, "", names, ev)
        if not answer or verify.check_outcome(goal, self.state, answer, self.workspace, names, ev):
            return ""
        return answer

    def conclude(self, answer: str, summary: str) -> None:
        """The run says it is done: check the claim against the evidence before it may succeed.

        An answer the evidence contradicts is rebuilt from the evidence; a claim still contradicted gets one
        repair round (the findings become the next plan's notes), then ends ``unverified``. Evidence that is
        merely missing lets the run succeed, marked ``verified: false``.
        """
        findings = self._verify(answer)
        if findings:
            composed = verify.compose_answer(self.state.goal.text, self.state, answer, self.engine.tools.names())
            if composed != answer:
                recheck = self._verify(composed)
                if len(recheck) < len(findings):
                    answer, findings = composed, recheck
        shown = [f.to_dict() for f in findings]
        if any(f.kind == verify.CONTRADICTED for f in findings):
            if self.state.repairs < 1:
                told = {"verified": False, "findings": shown, "repair": True}
                self.record("verify", {"answer": answer, "findings": shown}, events=[("verify", told)])
                return
            detail = "; ".join(f.message for f in findings)
            self.stop(StopReason.unverified, detail, final_answer=answer, verified=False, findings=shown)
            return
        self.stop(StopReason.done, summary, final_answer=answer, verified=not findings, findings=shown)

    def _verify(self, answer: str) -> list[verify.Finding]:
        """Every ``verify_outcome`` check (the rules always), plus the model verifier when configured."""
        findings: list[verify.Finding] = []
        for plugin, result in self.engine.host.call_each(
            "verify_outcome", goal=self.state.goal, state=self.state, answer=answer, workspace=self.workspace,
            tools=self.engine.tools,
        ):
            for f in result or []:
                findings.append(f if isinstance(f, verify.Finding) else verify.Finding(plugin, str(f)))
        mode = self.loop.verifier
        if mode == "both" or (mode == "model" and not findings):
            findings += self._model_verdict(answer)
        return findings

    def _model_verdict(self, answer: str) -> list[verify.Finding]:
        request = phases.render("verify.j2", goal=self.state.goal.text, answer=answer)
        verdict, data = self.ask("verify", request, phases.VERIFY_SCHEMA, phases.parse_verify)
        self.record("model_verify", data)  # its tokens count against the run's budget
        if verdict is None or verdict["reached"]:
            return []
        return [verify.Finding("model", verdict["reason"] or "the model verifier says the goal is not reached")]

    def _answer_lead(self, last: Any) -> str:
        """The short value the last step produced (``ToolResult.data["value"]``), which a grammar-decoded
        ``done`` answer must start with, so a small model reports what the tool found instead of retyping it."""
        if not self.loop.ground_answers or last is None or not last.result.ok:
            return ""
        if self.model().structured != "grammar":
            return ""
        value = last.result.data.get("value")
        return value if isinstance(value, str) and 0 < len(value) <= VALUE_CHARS and "\n" not in value else ""

    # -- the end --------------------------------------------------------------------------------
    def interrupted(self) -> dict[str, Any]:
        """Shutdown: the run goes back to the queue unowned, with its journal as it is; the next start resumes
        it. Not a stop: only a person's cancel cancels."""
        detail = "interrupted by a daemon shutdown; resumed at the next start"
        self.emit("run_interrupted", {"detail": detail})
        self.engine.journal.release_lease(self.lease, RunStatus.queued)
        return {"run_id": self.state.run_id, "status": RunStatus.queued.value, "detail": detail}

    def finish(self) -> dict[str, Any]:
        s = self.state
        outcome = {
            "run_id": s.run_id,
            "status": s.status.value,
            "stop_reason": s.stop_reason.value if s.stop_reason else None,
            "detail": s.stop_detail,
            "final_answer": s.final_answer,
            "workspace": str(self.workspace),
            "steps": s.steps_taken,
            "replans": s.replans,
            "usage": s.usage.to_dict() | {"seconds": round(s.seconds, 3)},
            "verified": s.verified,  # None while the run is parked
            "findings": s.findings,
        }
        self.engine.journal.set_status(
            s.run_id,
            s.status,
            lease=self.lease,
            stop_reason=s.stop_reason,
            final_answer=s.final_answer,
            usage=outcome["usage"],
        )
        if s.status.finished:
            self.engine.host.call_each("run_finished", run_id=s.run_id, goal=s.goal, outcome=outcome, state=s)
        # The last event gives the lease back in its own transaction: a crash before it leaves the run claimable.
        self.emit("run_finished" if s.status.finished else "run_parked", outcome, release=True)
        return outcome
