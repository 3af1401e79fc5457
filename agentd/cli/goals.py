"""`agentd goal`: submit a goal and follow it to its outcome, through the daemon when one runs, else in-process."""

from __future__ import annotations

import sys
from typing import Any

from .render import JsonLines, LiveTrace, exit_code


def build_goal(text: str, options: dict[str, Any], config: Any) -> Any:
    """A Goal from CLI options on top of the configured loop defaults."""
    from ..records import Goal

    budgets = config.loop.budgets(
        max_steps=options.get("max_steps"),
        max_replans=options.get("max_replans"),
        max_tokens=options.get("max_tokens"),
        max_seconds=options.get("max_seconds"),
    )
    goal = Goal(text=text, model=options.get("model"), budgets=budgets, memory=not options.get("no_memory"),
                profile=options.get("profile"), continues=options.get("continues"))
    if options.get("dirs"):  # attached folders, checked against [workspace] allowed_dirs here, before anything runs
        from pathlib import Path

        from ..folders import absolute_dirs, attach

        goal.dirs = attach(absolute_dirs(options["dirs"], Path.cwd()), config)
        goal.no_undo = bool(options.get("no_undo"))
    return goal


def split_continue(text: str | None, continues: str | None) -> tuple[str, str | None]:
    """``--continue "in French"`` is a goal continuing the last run, not a run named "in French"."""
    import re

    import click

    if text is None and continues is not None and not re.fullmatch(r"last|[0-9][0-9a-f-]*", continues):
        return continues, "last"
    if text is None:
        raise click.UsageError("Missing argument 'TEXT': say what you want done, e.g. agentd goal \"Create hello.txt\"")
    return text, continues


def goal_request(text: str, options: dict[str, Any]) -> dict[str, Any]:
    """The API's JSON for a goal from CLI options; the daemon fills in its ``[loop]`` budgets and checks the
    model, profile and folders against its config."""
    budgets = {name: options.get(name) for name in ("max_steps", "max_replans", "max_tokens", "max_seconds")}
    request = {"text": text, "model": options.get("model"), "memory": not options.get("no_memory"),
               "profile": options.get("profile"), "continues": options.get("continues"),
               "budgets": {name: value for name, value in budgets.items() if value is not None}}
    if options.get("dirs"):
        from pathlib import Path

        from ..folders import absolute_dirs

        request |= {"dirs": absolute_dirs(options["dirs"], Path.cwd()), "no_undo": bool(options.get("no_undo"))}
    return request


def run_goal(text: str, options: dict[str, Any], as_json: bool = False, detach: bool = False) -> int:
    from ..errors import ConfigError

    if not text.strip():
        raise ConfigError('the goal is empty: say what you want done, e.g. agentd goal "Create hello.txt"')
    try:
        from ..daemon import client
    except ImportError:
        client = None  # type: ignore[assignment]
    if client is not None:  # a running daemon checks the goal against its config: no config to load here
        from ..home import resolve_home

        home = client.DaemonHome(resolve_home())
        answer = client.health(home)
        if answer is not None:
            return client.run_goal_remote(home, goal_request(text, options), as_json, detach, answer)
    from ..config import load_config

    config = load_config()
    config.model_config_for(options.get("model"))  # unknown --model: exit 2 before anything is stored
    goal = build_goal(text, options, config)
    if detach:
        raise ConfigError("--detach needs a running daemon: start one with `agentd daemon start`")
    return run_in_process(config, goal, as_json=as_json)


def run_in_process(config: Any, goal: Any, as_json: bool = False) -> int:
    from ..app import make_app

    on_event = JsonLines() if as_json else LiveTrace()
    if not as_json:
        print("(no daemon running: running this goal in-process)", file=sys.stderr)
    app = make_app(config)
    try:
        app.models.get(goal.model)  # a missing model file or bad endpoint config fails here, clearly
        engine = app.engine
        run_id = engine.submit(goal, hold=True)  # born leased to this process: no daemon may drive it too
        outcome = engine.run(run_id, on_event=on_event)
    finally:
        on_event.close()
        app.close()
    return exit_code(outcome)
