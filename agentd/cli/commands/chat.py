"""`agentd chat`: an interactive prompt where each line is a goal in one conversation (thread), streamed live.

Ctrl-C cancels the goal that is running, not the session; Ctrl-D (end of input) ends it. Each goal continues the
one before (agentd/threads.py): same workspace, same thread, the earlier goal, answer and files in view.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import click

PROMPT = "chat> "


@click.command()
@click.option("--continue", "continues", is_flag=False, flag_value="last", metavar="[RUN_ID|last]",
              help="Carry on the conversation of a run (default: the last one) instead of starting a new one.")
@click.option("--model", help="Model name from the config (see `agentd models list`).")
@click.option("--profile", help="Loop profile from [profiles] (tiny, small, large, ...); default: by model size.")
@click.option("--max-steps", type=click.IntRange(1), help="Most tool calls each goal may make.")
@click.option("--no-memory", is_flag=True, help="Neither recall nor store memories.")
def chat(continues: str | None, **options: Any) -> None:
    """Talk to agentd: each line is a goal continuing the one before, shown as it happens.

    Ctrl-C cancels the running goal (the session goes on); Ctrl-D ends the session.
    """
    sys.exit(run_chat(continues, options))


def run_chat(continues: str | None, options: dict[str, Any]) -> int:
    from ...config import load_config
    from ...daemon import client
    from ...errors import AgentdError
    from ...journal import Journal
    from ...threads import resolve_run
    from ..goals import build_goal

    config = load_config()
    config.model_config_for(options.get("model"))  # an unknown --model: exit 2 before the session starts
    previous = None
    if continues:
        journal = Journal(config.journal_path)
        try:
            previous = resolve_run(journal, continues)["id"]
        finally:
            journal.close()
    driver = _Remote(config) if client.daemon_running(config) else _InProcess(config, options.get("model"))
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401 - importing it gives input() line editing and history
    click.echo("agentd chat: each line is a goal; Ctrl-C cancels the running goal, Ctrl-D ends the session"
               + (f" (continuing run {previous})" if previous else ""))
    try:
        while (line := _read_line()) is not None:
            if not line.strip():
                continue
            try:
                previous = driver.run(build_goal(line, options | {"continues": previous}, config))
            except AgentdError as exc:  # e.g. the goal before is still being cancelled: say so, go on
                click.secho(f"error: {exc}", fg="red", err=True)
            except KeyboardInterrupt:  # a second Ctrl-C while the goal was being cancelled: the session goes on
                click.echo()
    finally:
        driver.close()
    return 0


def _read_line() -> str | None:
    """The next line typed; None at Ctrl-D. Ctrl-C at the prompt only clears the line."""
    while True:
        try:
            return input(PROMPT if sys.stdin.isatty() else "")
        except KeyboardInterrupt:
            click.echo()
        except EOFError:
            click.echo()
            return None


class _InProcess:
    """No daemon: one App for the whole session (the model loads once); each goal runs here, leased to us."""

    def __init__(self, config: Any, model: str | None) -> None:
        from ...app import make_app

        click.echo("(no daemon running: running goals in-process)", err=True)
        self.app = make_app(config)
        try:
            self.app.models.get(model)  # a missing model file or bad endpoint fails now, clearly
        except BaseException:
            self.app.close()
            raise

    def run(self, goal: Any) -> str:
        import threading

        from ..render import LiveTrace

        run_id = self.app.engine.submit(goal, hold=True)
        trace = LiveTrace()
        try:
            self.app.engine.run(run_id, on_event=trace)  # Ctrl-C inside the loop ends the run as cancelled
        except KeyboardInterrupt:  # Ctrl-C just before or after the loop: make sure the run ends, cancelled
            cancel = threading.Event()
            cancel.set()
            self.app.engine.run(run_id, on_event=trace, cancel=cancel)
        finally:
            trace.close()
        return run_id

    def close(self) -> None:
        self.app.close()


class _Remote:
    """A daemon runs the goals; Ctrl-C asks it to cancel the running one."""

    def __init__(self, config: Any) -> None:
        self.config = config

    def run(self, goal: Any) -> str:
        from ...daemon import client
        from ..render import LiveTrace

        run_id = client.submit(self.config, goal)
        client.follow_or_cancel(self.config, run_id, LiveTrace())
        return run_id

    def close(self) -> None:
        """Nothing held: the daemon keeps the runs."""
