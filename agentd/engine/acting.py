"""The act and tool phases of a run: the model writes a call, and it runs under the run's approval rules,
policy vetoes and timeouts, its end journaled with its observation (one transaction), so a crash never makes
resume run a finished call again.

``Acting`` is part of the run context (``loop._RunContext``): it uses that context's state, journal plumbing
(``record``, ``stop``) and model calls (``ask``); what an observation leads to (a conclusion, a loop stop, a
replan) is decided here, the conclusion itself in ``outcome.py``.
"""

from __future__ import annotations

import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import Config, LoopConfig
from ..folder_changes import FolderAccess, FolderChanges
from ..folders import folder_files, folders_of
from ..journal import Lease
from ..policy import allowed
from ..records import Budgets, Observation, StopReason, ToolCall, ToolResult
from ..tools import ToolContext, ToolRegistry, execute
from ..workspace_fs import WorkspaceWalk
from . import phases
from .state import LoopState, call_key


class Acting:
    """do_act and do_tool, and how a tool's result is observed."""

    state: LoopState
    engine: Any
    config: Config
    loop: LoopConfig
    tools: ToolRegistry
    workspace: Path
    lease: Lease
    cancel: threading.Event
    budgets: Budgets
    record: Callable[..., None]
    stop: Callable[..., None]
    ask: Callable[..., tuple[Any, dict]]
    conclude: Callable[[str, str], None]
    _answer_from_evidence: Callable[[], str]

    def _recover_interrupted_call(self) -> None:
        """A tool call journaled as started but never finished (a crash) is not re-run blindly."""
        if self.state.pending_call is None:
            return
        for call in reversed(self.engine.journal.tool_calls(self.state.run_id)):
            if call["status"] == "started":
                result = ToolResult(
                    error="this call was interrupted by a daemon restart; it may or may not have taken effect. "
                    "Check its effect before repeating it."
                )
                self._observe(self.state.pending_call, result, 0.0, time.time(),
                              self._finish_call(call["id"], {}, "interrupted"))
            break

    def do_act(self) -> None:
        started = time.time()
        step = self.state.plan.steps[self.state.step]  # type: ignore[union-attr]
        planned = self.tools.tools.get(step.tool)
        request = phases.act_request(self.state.step + 1, step.intent, self.state.goal.text, planned)
        loop = self.loop
        choices = self.tools.subset([step.tool]) if loop.act_tools == "planned" and step.tool in self.tools else self.tools
        paths = phases.path_candidates(self.state.goal.text, self._known_files()) if loop.ground_paths else None
        schema = phases.act_schema(choices, preferred=step.tool, paths=paths)
        call, data = self.ask("act", request, schema, lambda v: phases.parse_act(v, self.tools))
        if call is None:
            self.record("act", data, started)
            if data.get("model_failure"):
                self.stop(StopReason.model_error, data["error"])
            else:
                # The step's output never parsed: tell the loop as an observation, let feedback decide.
                bad = ToolCall(tool=step.tool or "?", args={}, reasoning="unparseable model output")
                self._observe(bad, ToolResult(error=data["error"]), 0.0, time.time())
            return
        data["call"] = call.to_dict()
        told = {"step": self.state.step + 1, "tool": call.tool, "args": call.args}
        self.record("act", data, started, [("tool_call", told)])

    def _known_files(self) -> list[str]:
        """Files in the workspace and the attached folders now (bounded listings): valid targets for grounded
        path arguments."""
        entries = sorted(WorkspaceWalk(self.workspace), key=lambda e: e.path.split("/"))[:200]  # as paths sort
        found = [e.path for e in entries if stat.S_ISREG(e.stat.st_mode)]
        for folder in folders_of(self.state.goal):
            found += sorted(name for name, _, _ in folder_files(folder))[:200]
        return found

    def do_tool(self) -> None:
        call = self.state.pending_call
        assert call is not None
        started = time.time()
        tool = self.tools[call.tool]
        if self._needs_approval(call):
            told = {"step": self.state.step + 1, "tool": call.tool, "args": call.args}
            self.record("approval_needed", {"call": call.to_dict()}, started, [("approval_needed", told)])
            return
        veto = self._veto(call, tool)
        if veto:
            self._observe(call, ToolResult(error=f"not allowed: {veto}"), 0.0, started)
            return
        call_id = self.engine.journal.tool_call_started(
            self.state.run_id, self.state.step, call.tool, call.args, lease=self.lease
        )
        ctx = ToolContext(
            run_id=self.state.run_id,
            workspace=self.workspace,
            settings=self.config.plugin_settings(tool.plugin),
            cancel=self.cancel,
            timeout_s=self.budgets.tool_timeout_s,
            goal=self.state.goal,
            folders=FolderAccess.for_goal(self.state.goal, self.config, self.state.run_id),
        )
        try:
            result = execute(tool, call.args, ctx)
        except BaseException:  # Ctrl-C while the tool ran: say so in the journal, then let it propagate
            ctx.cancel.set()
            self.engine.journal.tool_call_finished(call_id, {}, status="interrupted", lease=self.lease)
            raise
        if ctx.folders is not None:  # every write to an attached folder is journaled, even by a failed call
            FolderChanges(self.engine.journal).record(self.state.run_id, ctx.folders.changes, lease=self.lease)
        self._observe(call, result, time.time() - started, started, self._finish_call(call_id, result.to_dict()),
                      after=lambda: self.engine.host.call_each(
                          "after_tool_call", call=call, result=result, run_id=self.state.run_id))

    def _finish_call(self, call_id: int, result: dict[str, Any], status: str = "finished") -> Callable[[], None]:
        """The call's end, written in the same transaction as its observation: a crash leaves either both (the
        step is done) or a call that only started (interrupted: never run again blindly), never a finished call
        without its observation, which resume would have taken for a step still to do."""
        return lambda: self.engine.journal.tool_call_finished(call_id, result, status=status, lease=self.lease)

    def _needs_approval(self, call: ToolCall) -> bool:
        """Unattended runs (a schedule's allowlist) park instead of running a tool nobody allowed."""
        if allowed(self.tools[call.tool], self.state.goal.allowed_tools):
            return False
        return self.state.approved_call != call.to_dict()

    def _veto(self, call: ToolCall, tool: Any) -> str | None:
        for plugin, answer in self.engine.host.call_each(
            "before_tool_call", call=call, tool=tool, run_id=self.state.run_id, goal=self.state.goal
        ):
            if answer:
                return f"{answer} (policy from {plugin})"
        return None

    def _observe(
        self, call: ToolCall, result: ToolResult, seconds: float, started: float,
        finish: Callable[[], None] | None = None, after: Callable[[], object] | None = None,
    ) -> None:
        """Record the observation (with ``finish``, the call's end, in one transaction), run ``after`` (the
        ``after_tool_call`` hook), then act on what the result says."""
        observation = Observation(step=self.state.step, call=call, result=result, seconds=round(seconds, 4))
        told = {"step": self.state.step + 1, "tool": call.tool, "ok": result.ok, "output": result.for_model(400),
                "artifacts": result.artifacts}
        self.record("tool", {"observation": observation.to_dict()}, started, [("observation", told)], also=finish)
        if after is not None:
            after()
        if result.data.get("final_answer") and result.ok:
            self.conclude(str(result.data["final_answer"]), "final_answer tool called")
            return
        repeats = self.state.seen_calls.get(call_key(observation), 0)
        if repeats >= 2 and result.ok and (answer := self._answer_from_evidence()):
            # A small model often redoes a step that already worked (the plan names it twice); when the checks
            # show the goal reached, that is the end of the run, not a loop.
            self.conclude(answer, f"{call.tool} repeated a step that had worked; the checks show the goal reached")
        elif repeats >= 3:
            self.stop(StopReason.loop, f"{call.tool} was called 3 times with the same arguments and result")
        elif repeats == 2 and not result.ok:  # a step that worked, done again, is redone work, not a wrong turn
            reason = f"{call.tool} with the same arguments gave the same result twice; do something different"
            self.record("replan", {"reason": reason}, events=[("replan", {"reason": reason})])
