"""``agentd eval``: run a suite of goals, each in a fresh home and workspace, and check every outcome from outside.

A suite is JSON Lines, one case a line::

    {"id": "kiwi", "goal": "Write kiwi to k.txt",
     "files": {"notes.txt": "given input"},            # put in the workspace before the run (optional)
     "memory": ["The locker code is 4417"],            # remembered before the run (optional)
     "allowed_tools": ["read_file"],                   # an unattended run's allowlist (optional)
     "expect": {"status": "succeeded",                 # or a list of statuses; default "succeeded"
                "stop_reason": "done",                 # optional
                "files": {"k.txt": "kiwi"},            # file -> text (or list of texts) it must contain
                "answer": ["kiwi"],                    # words the final answer must contain (any case)
                "tools": ["write_file"], "not_tools": ["run_shell"]}}

A case is *right* when every expectation holds. A *false success* is a run that ended ``succeeded`` while its
case is not right: the number a nightly job's morning report depends on. The checks read only the run's
outcome, its workspace and the journal's tool calls, never the engine's own verification. Imports only
``agentd``'s public modules, so it can also measure another checkout (benchmarks/eval_compare.py).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Case:
    """One goal of a suite and what its outcome must show."""

    id: str
    goal: str
    expect: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    memory: list[str] = field(default_factory=list)
    allowed_tools: list[str] | None = None
    source: str = ""

    @classmethod
    def parse(cls, line: str, where: str) -> Case:
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not valid JSON ({exc.msg}); each line must be one case object") from None
        if not isinstance(data, dict) or not str(data.get("goal", "")).strip():
            raise ValueError(f"{where}: a case needs a non-empty \"goal\"")
        unknown = set(data) - {"id", "goal", "expect", "files", "memory", "allowed_tools", "note"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}; see `agentd eval --help`")
        return cls(
            id=str(data.get("id") or where), goal=data["goal"], expect=dict(data.get("expect") or {}),
            files=dict(data.get("files") or {}), memory=list(data.get("memory") or []),
            allowed_tools=data.get("allowed_tools"), source=where,
        )


def load_suite(path: Path) -> list[Case]:
    """The cases of a JSONL suite; a bad line is a ValueError naming the file and line."""
    cases = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            cases.append(Case.parse(line, f"{Path(path).name}:{number}"))
    if not cases:
        raise ValueError(f"{path}: no cases; write one JSON object per line")
    return cases


@dataclass
class Result:
    """One case run once: its outcome, what the outside checks found, and what it cost."""

    case: str
    suite: str
    status: str
    stop_reason: str | None
    verified: bool | None
    right: bool
    problems: list[str]
    steps: int
    model_calls: int
    tokens: int
    seconds: float
    answer: str = ""

    @property
    def false_success(self) -> bool:
        return self.status == "succeeded" and not self.right


def check(case: Case, outcome: dict[str, Any], workspace: Path, tools_called: list[str]) -> list[str]:
    """What is wrong with an outcome, judged from outside; empty when the case is right."""
    expect, problems = case.expect, []
    statuses = expect.get("status", "succeeded")
    statuses = [statuses] if isinstance(statuses, str) else list(statuses)
    if outcome["status"] not in statuses:
        problems.append(f"status {outcome['status']} ({outcome.get('stop_reason')}), expected {'/'.join(statuses)}")
    if expect.get("stop_reason") and outcome.get("stop_reason") != expect["stop_reason"]:
        problems.append(f"stop_reason {outcome.get('stop_reason')}, expected {expect['stop_reason']}")
    for name, wanted in (expect.get("files") or {}).items():
        path = workspace / name
        if not path.is_file():
            problems.append(f"{name} missing")
            continue
        text = path.read_text(encoding="utf-8", errors="replace").lower()
        for piece in [wanted] if isinstance(wanted, str) else wanted:
            if str(piece).lower() not in text:
                problems.append(f"{name} lacks {piece!r}")
    answer = (outcome.get("final_answer") or "").lower()
    for word in expect.get("answer") or []:
        if str(word).lower() not in answer:
            problems.append(f"answer lacks {word!r}")
    for tool in expect.get("tools") or []:
        if tool not in tools_called:
            problems.append(f"{tool} not called")
    for tool in expect.get("not_tools") or []:
        if tool in tools_called:
            problems.append(f"{tool} called")
    return problems


def run_case(case: Case, base_config: Any, model: str | None, keep: bool = False) -> Result:
    """Run one case in a fresh home (journal, memory, workspace) with the given config's models and loop."""
    from agentd.app import make_app
    from agentd.config import Config
    from agentd.records import Goal
    from agentd.tools import ToolContext, execute

    home = Path(tempfile.mkdtemp(prefix="agentd-eval-"))
    config = Config.model_validate(base_config.model_dump() | {"home": home})
    app = make_app(config)
    started = time.monotonic()
    try:
        goal = Goal(text=case.goal, model=model, budgets=config.loop.budgets(), allowed_tools=case.allowed_tools)
        run_id = app.engine.submit(goal)
        workspace = config.workspaces / run_id
        for name, text in case.files.items():
            (workspace / name).parent.mkdir(parents=True, exist_ok=True)
            (workspace / name).write_text(text, encoding="utf-8")
        for note in case.memory:
            if "remember" not in app.tools:
                raise ValueError(f"{case.source}: the case needs memory, but no `remember` tool is registered")
            ctx = ToolContext(run_id="eval-setup", workspace=workspace, settings={}, goal=goal)
            stored = execute(app.tools["remember"], {"note": note}, ctx)
            if not stored.ok:
                raise ValueError(f"{case.source}: could not store a memory: {stored.error}")
        outcome = app.engine.run(run_id)
        called = [c["tool"] for c in app.journal.tool_calls(run_id)]
        problems = check(case, outcome, workspace, called)
    finally:
        app.close()
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
    usage = outcome.get("usage") or {}
    return Result(
        case=case.id, suite=Path(case.source.split(":")[0]).stem, status=outcome["status"],
        stop_reason=outcome.get("stop_reason"), verified=outcome.get("verified"), right=not problems,
        problems=problems, steps=int(outcome.get("steps", 0)), model_calls=int(usage.get("model_calls", 0)),
        tokens=int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0)),
        seconds=round(time.monotonic() - started, 2), answer=str(outcome.get("final_answer") or "")[:200],
    )


def totals(results: list[Result]) -> dict[str, Any]:
    """The figures a suite run is judged by."""
    n = len(results) or 1
    return {
        "runs": len(results),
        "right": sum(r.right for r in results),
        "claimed_success": sum(r.status == "succeeded" for r in results),
        "false_successes": sum(r.false_success for r in results),
        "unverified_successes": sum(r.status == "succeeded" and r.verified is False for r in results),
        "steps_per_goal": round(sum(r.steps for r in results) / n, 2),
        "model_calls_per_goal": round(sum(r.model_calls for r in results) / n, 2),
        "tokens": sum(r.tokens for r in results),
        "seconds": round(sum(r.seconds for r in results), 1),
    }


def summary(results: list[Result]) -> dict[str, Any]:
    """Totals for the whole run and for each suite file (e.g. tuned goals and held-out goals apart)."""
    suites = sorted({r.suite for r in results})
    return {
        "totals": totals(results),
        "by_suite": {s: totals([r for r in results if r.suite == s]) for s in suites},
        "results": [r.__dict__ | {"false_success": r.false_success} for r in results],
    }
