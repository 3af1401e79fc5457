"""Terminal output for run events: a live, readable trace (rich) or one JSON object per line."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

EXIT_CODES = {"succeeded": 0, "failed": 1, "stopped": 3, "awaiting_approval": 4, "cancelled": 130}


def exit_code(outcome: dict[str, Any]) -> int:
    return EXIT_CODES.get(outcome.get("status", "failed"), 1)


def usage_line(usage: dict[str, Any]) -> str:
    """``3 model calls, 1200+310 tokens, 12.4s``: a run's usage as people read it."""
    return (
        f"{usage.get('model_calls', 0)} model calls, {usage.get('prompt_tokens', 0)}+"
        f"{usage.get('completion_tokens', 0)} tokens, {usage.get('seconds', 0):.1f}s"
    )


class JsonLines:
    """``--json``: every event as one line; the last line is the run's outcome."""

    def __call__(self, type_: str, data: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps({"type": type_} | data, default=str) + "\n")
        sys.stdout.flush()

    def close(self) -> None:
        """Nothing to tidy (LiveTrace has a status line to remove)."""


PHASES = {"plan": "planning", "critique": "critiquing the plan", "act": "choosing the next call",
          "feedback": "judging the result"}


class StatusLine:
    """The live bottom line on a terminal: phase, elapsed time, tokens generated so far, model calls."""

    def __init__(self) -> None:
        from rich.spinner import Spinner

        self.spinner = Spinner("dots")
        self.started = time.monotonic()
        self.phase = "starting"
        self.tokens = 0
        self.calls = 0

    def text(self) -> str:
        calls = f"{self.calls} model call{'s' if self.calls != 1 else ''}"
        return f"{self.phase} · {time.monotonic() - self.started:.0f}s · {self.tokens} tokens · {calls}"

    def __rich_console__(self, console: Any, options: Any) -> Any:
        from rich.text import Text

        self.spinner.update(text=Text(self.text(), style="dim"))
        yield self.spinner


class LiveTrace:
    """The human view: plan, critique, each call and observation, replans, and the final answer; on a terminal
    also a live status line (see StatusLine) while the run goes on. Piped, it prints only the trace."""

    def __init__(self) -> None:
        from rich.console import Console

        # Piped: plain text whose long lines are left whole (no colour, no wrapping at an imagined 80 columns).
        self.console = Console(highlight=False, soft_wrap=not sys.stdout.isatty())
        self.status: StatusLine | None = None
        self._live: Any = None

    def __call__(self, type_: str, data: dict[str, Any]) -> None:
        handler = getattr(self, f"on_{type_}", None)
        if handler is not None:
            handler(data)
        if type_ in ("run_finished", "run_parked"):
            self.close()

    def close(self) -> None:
        """Remove the status line (it is transient); call when the run ends or the command is interrupted."""
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _set_phase(self, phase: str) -> None:
        if self.status is not None:
            self.status.phase = phase

    def on_run_started(self, d: dict[str, Any]) -> None:
        verb = "resuming" if d.get("resumed") else "goal"
        self.console.print(f"[bold]{verb}[/] {d['goal']}  [dim](run {d['run_id']})[/]")
        if d.get("continues"):
            self.console.print(f"[dim]continuing run {d['continues']} in its workspace[/]")
        if self.console.is_terminal and self._live is None:
            from rich.live import Live

            self.status = StatusLine()
            self._live = Live(self.status, console=self.console, transient=True, refresh_per_second=4)
            self._live.start()

    def on_progress(self, d: dict[str, Any]) -> None:
        if self.status is not None:
            self.status.phase = PHASES.get(d["phase"], d["phase"])
            self.status.tokens, self.status.calls = d["tokens"], d["model_calls"]

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
        if d.get("answer"):
            self.console.print("  [dim]no tool applies; answered directly[/]")

    def on_critique(self, d: dict[str, Any]) -> None:
        colour = {"approve": "green", "revise": "yellow", "reject": "red"}[d["verdict"]]
        reasons = ("; ".join(d.get("reasons") or [])) or ""
        self.console.print(f"[{colour}]critique: {d['verdict']}[/] [dim]({d.get('critic', '')})[/] {reasons}")

    def on_tool_call(self, d: dict[str, Any]) -> None:
        self._set_phase(f"running {d['tool']}")
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
        self.console.print(
            f"[bold {colour}]{d['status']}[/] ({d['stop_reason']}) in {d['steps']} steps, "
            f"{usage_line(d.get('usage') or {})}"
        )
        if d.get("detail") and d["status"] != "succeeded":
            self.console.print(f"[dim]{d['detail']}[/]")
        if d.get("final_answer"):
            self.console.print(f"[bold]answer:[/] {d['final_answer']}")
        if d["status"] == "succeeded" and d.get("verified") is False:
            self.console.print("[yellow]not verified[/]: the checks found no evidence either way")
        for finding in d.get("findings") or []:
            self.console.print(f"  [yellow]{finding.get('kind', '')}[/]: {finding.get('message', '')}")
        # Never wrapped: the id and the path stay whole for copy and paste, whatever the terminal's width.
        self.console.print(f"run {d['run_id']}  workspace {d['workspace']}", soft_wrap=True, markup=False)

    def on_verify(self, d: dict[str, Any]) -> None:
        problems = "; ".join(f.get("message", "") for f in d.get("findings", []))
        self.console.print(f"[yellow]not done yet[/] (one repair round): {problems}")


def print_table(columns: list[str], rows: list[list[str]], prose: tuple[str, ...] = ()) -> None:
    """A listing that never cuts or breaks an id or a path, at any terminal width or through a pipe.

    Not a terminal: plain aligned text, one line per row, every value whole (``| grep``, ``| awk '{print $1}'``).
    A terminal wide enough: a table whose token columns never wrap; ``prose`` columns (goals, memory text) wrap
    between words. Too narrow even for that: one block per row, the tokens on the first line, prose below it.
    """
    import shutil
    import textwrap

    rows = [[str(v) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    if not sys.stdout.isatty():
        for line in [columns, *rows]:
            sys.stdout.write("  ".join(v.ljust(w) for v, w in zip(line[:-1], widths, strict=False)) + "  " + line[-1] + "\n")
        return
    width = shutil.get_terminal_size().columns
    tokens = [i for i, c in enumerate(columns) if c not in prose]
    prose_at = [i for i in range(len(columns)) if i not in tokens]
    room = (width - 1 - sum(widths[i] + 3 for i in tokens)) // max(1, len(prose_at)) - 3
    longest_word = max((len(w) for r in rows for i in prose_at for w in r[i].split()), default=0)
    if room >= max(20, longest_word):  # every prose word (a path in a goal, too) fits its column whole
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        table = Table(*columns)
        for i, spec in enumerate(table.columns):
            if i in tokens:
                spec.no_wrap, spec.min_width = True, widths[i]
            else:
                spec.min_width, spec.overflow = 20, "fold"
        for row in rows:
            table.add_row(*[Text(v) for v in row])
        Console(highlight=False).print(table)
        return
    wrap = textwrap.TextWrapper(width=max(20, width - 2), initial_indent="  ", subsequent_indent="  ",
                                break_long_words=False, break_on_hyphens=False)
    for row in rows:
        sys.stdout.write("  ".join(row[i] for i in tokens if row[i]) + "\n")
        for i, name in enumerate(columns):
            if i not in tokens and row[i]:
                sys.stdout.write("\n".join(wrap.wrap(f"{name}: {row[i]}")) + "\n")
