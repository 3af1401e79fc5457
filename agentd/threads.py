"""Conversations: a goal that continues an earlier run works in that run's workspace, in its thread, and plans
with the earlier goal, its answer and its files in view (``agentd goal --continue``, ``agentd chat``).

The journal keeps the thread (``runs.thread_id``) and refuses a follow-up while a run of the thread has not
ended, so two runs never work in one workspace at once.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .records import Goal

LAST = "last"  # the newest run in the journal
# Goal fields a follow-up takes from the run it continues unless it sets them itself (the folders a run works
# on belong here once goals have them).
CARRIED: tuple[str, ...] = ("dirs",)  # a follow-up works on the folders the run before had, unless it names its own
LISTED_FILES = 12  # the plan prompt names at most this many of the workspace's files, newest first
ANSWER_CHARS = 300
SCANNED_ENTRIES = 5000  # a huge workspace is listed from its first entries, never walked whole


def resolve_run(journal: Any, ref: str) -> dict[str, Any]:
    """The run ``ref`` names: ``last`` (the newest run), an id, or an id's unique prefix."""
    if ref == LAST:
        rows = journal.list_runs(limit=1)
        if not rows:
            raise ConfigError("there is no run yet, so no `last` one: start one with agentd goal \"...\"")
        return rows[0]
    row = journal.get_run(ref)
    if row is None:
        raise ConfigError(f"no run {ref!r}; `agentd runs list` shows the ids (or say `last`)")
    return row


def follow_up(goal: Goal, previous: dict[str, Any]) -> Goal:
    """``goal`` as the follow-up of run ``previous``: naming it by id, with the carried fields it left unset."""
    carried = {name: previous["goal_spec"][name] for name in CARRIED
               if getattr(goal, name) in (None, [], "") and previous["goal_spec"].get(name) is not None}
    return dataclasses.replace(goal, continues=previous["id"], **carried)


def previous_context(previous: dict[str, Any], workspace: Path) -> dict[str, Any]:
    """What the plan of a follow-up sees of the run before: its goal, its answer, and the workspace's files
    (newest first, at most LISTED_FILES named, with how many more there are)."""
    files = []
    for path in itertools.islice(workspace.rglob("*"), SCANNED_ENTRIES):
        if path.is_file() and not path.is_symlink():
            files.append((path.stat().st_mtime, str(path.relative_to(workspace))))
    files.sort(reverse=True)
    answer = (previous.get("final_answer") or "").strip()
    return {
        "run_id": previous["id"],
        "goal": previous["goal"],
        "answer": answer[:ANSWER_CHARS] + ("..." if len(answer) > ANSWER_CHARS else ""),
        "status": previous["status"],
        "files": [name for _, name in files[:LISTED_FILES]],
        "more_files": max(0, len(files) - LISTED_FILES),
    }
