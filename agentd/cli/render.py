"""Terminal output for run events: a live, readable trace (rich) or one JSON object per line."""

from __future__ import annotations

import json
import sys
from typing import Any

EXIT_CODES = {"succeeded": 0, "failed": 1, "stopped": 3, "awaiting_approval": 4, "cancelled": 130}


def exit_code(outcome: dict[str, Any]) -> int:
    return EXIT_CODES.get(outcome.get("status", "failed"), 1)


class JsonLines:
    """``--json``: every event as one line; the last line is the run's outcome."""

    def __call__(self, type_: str, data: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps({"type": type_} | data, default=str) + "\n")
        sys.stdout.flush()


class LiveTrace:
    """The human view: plan, critique, each call and observation, replans, and the final answer."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(highlight=False)

    def __call__(self, type_: str, data: dict[str, Any]) -> None:
        handler = getattr(self, f"on_{type_}", None)
        if handler is not None:
            handler(data)

    def on_run_started(self, d: dict[str, Any]) -> None:
        verb = "resuming" if d.get("resumed") else "goal"
        self.console.print(f"[bold]{verb}[/] {d['goal']}  [dim](run {d['run_id']})[/]")

    def on_context(self, d: dict[str, Any]) -> None:
        self.console.print(f"[cyan]recalled[/] {len(d['memories'])} memories")
        from rich.markup import escape

        for memory in d["memories"][:5]:
            self.console.print(f"  [dim]- {escape(memory[:160])}[/]")

    def on_plan(self, d: dict[str, Any]) -> None:
        title = "replan" if d.get("replan") else "plan"
        asked = f" [dim](the goal asks for {', '.join(d['requested_tools'])})[/]" if d.get("requested_tools") else ""
        self.console.print(f"[bold cyan]{title}[/]{asked}")
        for i, step in enumerate(d["steps"], 1):
            self.console.print(f"  {i}. {step['intent']} [dim]\\[{step.get('tool') or '?'}][/]")

    def on_critique(self, d: dict[str, Any]) -> None:
        colour = {"approve": "green", "revise": "yellow", "reject": "red"}[d["verdict"]]
        reasons = ("; ".join(d.get("reasons") or [])) or ""
        self.console.print(f"[{colour}]critique: {d['verdict']}[/] [dim]({d.get('critic', '')})[/] {reasons}")

    def on_tool_call(self, d: dict[str, Any]) -> None:
        args = json.dumps(d["args"], ensure_ascii=False)
        self.console.print(f"[bold]step {d['step']}[/] → {d['tool']}({args[:200]})")

    def on_observation(self, d: dict[str, Any]) -> None:
        mark = "[green]ok[/]" if d["ok"] else "[red]error[/]"
        text = d["output"].replace("\n", " ⏎ ")
        self.console.print(f"  {mark} {text[:300]}")

    def on_feedback(self, d: dict[str, Any]) -> None:
        self.console.print(f"  [magenta]{d['decision']}[/]: {d.get('summary', '')}")

    def on_replan(self, d: dict[str, Any]) -> None:
        self.console.print(f"[yellow]replanning[/]: {d['reason']}")

    def on_model_error(self, d: dict[str, Any]) -> None:
        self.console.print(f"[red]model output problem in {d['phase']}[/]: {d['error']}")

    def on_run_finished(self, d: dict[str, Any]) -> None:
        colour = {"succeeded": "green", "stopped": "yellow"}.get(d["status"], "red")
        usage = d.get("usage", {})
        self.console.print(
            f"[bold {colour}]{d['status']}[/] ({d['stop_reason']}) in {d['steps']} steps, "
            f"{usage.get('model_calls', 0)} model calls, {usage.get('prompt_tokens', 0)}+"
            f"{usage.get('completion_tokens', 0)} tokens, {usage.get('seconds', 0):.1f}s"
        )
        if d.get("detail") and d["status"] != "succeeded":
            self.console.print(f"[dim]{d['detail']}[/]")
        if d.get("final_answer"):
            self.console.print(f"[bold]answer:[/] {d['final_answer']}")
        if d["status"] == "succeeded" and d.get("verified") is False:
            self.console.print("[yellow]not verified[/]: the checks found no evidence either way")
        for finding in d.get("findings") or []:
            self.console.print(f"  [yellow]{finding.get('kind', '')}[/]: {finding.get('message', '')}")
        self.console.print(f"run {d['run_id']}  workspace {d['workspace']}")

    def on_verify(self, d: dict[str, Any]) -> None:
        problems = "; ".join(f.get("message", "") for f in d.get("findings", []))
        self.console.print(f"[yellow]not done yet[/] (one repair round): {problems}")
