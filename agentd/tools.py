"""Tools: what a plugin registers, how a plain function becomes one, and how a call is executed safely.

A plain function is a tool: its name is the tool's name, its docstring the description, its signature the
argument schema. A parameter named ``ctx`` receives the ToolContext and is hidden from the model. Whatever a
tool raises or however long it hangs, the caller gets a ToolResult with ``error`` set, never an exception.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ToolError
from .records import ToolResult
from .workspace_fs import (  # noqa: F401  (re-exported: plugins open workspace files through agentd.tools)
    WorkspaceEntry,
    WorkspaceWalk,
    open_beneath,
    open_in_workspace,
    replace_in_workspace,
    workspace_error,
)

log = logging.getLogger(__name__)

SIDE_EFFECTS = ("reads_files", "writes_files", "network", "runs_code", "uses_gpu", "costs_money")


class CallCancel(threading.Event):
    """A call's cancel flag: set by the call's own timeout, and also reads as set once its run is cancelled."""

    def __init__(self, run_cancel: threading.Event) -> None:
        super().__init__()
        self._run_cancel = run_cancel

    def is_set(self) -> bool:
        return super().is_set() or self._run_cancel.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            if left <= 0:
                return False
            super().wait(left)
        return True


@dataclass
class ToolContext:
    """What a running tool may use: its run's workspace, settings, and a cancel flag to honour."""

    run_id: str
    workspace: Path
    settings: dict[str, Any] = field(default_factory=dict)
    cancel: threading.Event = field(default_factory=threading.Event)
    timeout_s: float = 60.0
    goal: Any = None  # the run's Goal (its schedule, allowed tools); None for a manual `agentd tools run`
    folders: Any = None  # the run's attached folders (agentd.folder_changes.FolderAccess); None: none attached

    def resolve(self, relative: str) -> Path:
        """A path inside the workspace; absolute paths and escapes (``..``, symlinks) raise ToolError."""
        return resolve_in_workspace(self.workspace, relative)


def resolve_in_workspace(workspace: Path, relative: str) -> Path:
    if not isinstance(relative, str) or not relative.strip():
        raise ToolError("path must be a non-empty relative path inside the workspace")
    if Path(relative).is_absolute():
        raise ToolError(f"absolute paths are not allowed ({relative!r}); use a path relative to the workspace")
    root = workspace.resolve()
    try:
        target = (root / relative).resolve()
        target.exists()  # a name the file system refuses (too long, NUL) fails here, as a tool error
    except (OSError, ValueError) as exc:
        raise ToolError(f"invalid path {relative[:80]!r}: {exc.__class__.__name__}") from None
    if target != root and root not in target.parents:
        raise ToolError(f"path {relative!r} leaves the workspace; use a path inside it")
    return target


@dataclass
class Tool:
    """A registered tool. ``parameters`` is the JSON schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable[..., Any]
    plugin: str = ""
    side_effects: tuple[str, ...] = ()
    timeout_s: float | None = None
    wants_ctx: bool = False
    # Phrases that, found in a goal, mean the user asked for this tool ("use python", "search the web").
    goal_phrases: tuple[str, ...] = ()
    _validator: Any = None

    @classmethod
    def from_function(
        cls,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        side_effects: tuple[str, ...] | list[str] = (),
        timeout_s: float | None = None,
        goal_phrases: tuple[str, ...] | list[str] = (),
    ) -> Tool:
        unknown = set(side_effects) - set(SIDE_EFFECTS)
        if unknown:
            raise ValueError(f"unknown side effects {sorted(unknown)}; choose from {SIDE_EFFECTS}")
        sig = inspect.signature(fn, eval_str=True)  # plugins may use `from __future__ import annotations`
        fields: dict[str, Any] = {}
        wants_ctx = False
        for pname, param in sig.parameters.items():
            if pname == "ctx":
                wants_ctx = True
                continue
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            annotation = param.annotation if param.annotation is not inspect.Parameter.empty else str
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[pname] = (annotation, default)
        from pydantic import create_model  # here, not at the top: `import agentd` (the CLI's too) stays light

        validator = create_model(f"{fn.__name__}_args", **fields)  # type: ignore[call-overload]
        schema = validator.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        doc = description or inspect.getdoc(fn) or ""
        return cls(
            name=name or fn.__name__,
            description=doc.strip().split("\n\n")[0].replace("\n", " "),
            parameters=schema,
            fn=fn,
            side_effects=tuple(side_effects),
            timeout_s=timeout_s,
            wants_ctx=wants_ctx,
            goal_phrases=tuple(goal_phrases),
            _validator=validator,
        )

    def validate(self, args: dict[str, Any]) -> dict[str, Any]:
        """Check arguments against the schema; raise ToolError with a readable message.

        A tool made from a function checks them with the model its signature built (pydantic); a schema-only
        tool (``Tool(name, description, parameters=schema, fn=...)``, MCP and LangChain tools) with jsonschema.
        """
        if self._validator is None:
            problems = schema_problems(self.parameters, args)
            if problems:
                raise ToolError(f"invalid arguments for {self.name}: {problems}")
            return dict(args)
        from pydantic import ValidationError

        try:
            return self._validator.model_validate(args).model_dump()
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'args'}: {e['msg']}" for e in exc.errors())
            raise ToolError(f"invalid arguments for {self.name}: {problems}") from None

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "plugin": self.plugin,
            "description": self.description,
            "parameters": self.parameters,
            "side_effects": list(self.side_effects),
            "goal_phrases": list(self.goal_phrases),
        }

    def requested_in(self, goal: str) -> bool:
        """Whether the goal asks for this tool in so many words: one of its goal phrases, as whole words, and
        not negated just before ("do not use python", "without using the shell")."""
        for phrase in self.goal_phrases:
            for match in _phrase_pattern(phrase).finditer(goal):
                if not _NEGATED.search(goal[: match.start()]):
                    return True
        return False


def schema_problems(schema: dict[str, Any], args: Any, limit: int = 3) -> str:
    """What is wrong with ``args`` under the JSON schema ``schema``, in one line ("" when nothing is).

    A schema jsonschema cannot read is logged and not enforced: a third-party tool's odd schema must not make
    the tool uncallable.
    """
    validator = _schema_validator(json.dumps(schema, sort_keys=True, default=str))
    if validator is None:
        return ""
    errors = sorted(validator.iter_errors(args), key=lambda e: list(e.absolute_path))[:limit]
    return "; ".join(f"{'.'.join(map(str, e.absolute_path)) or 'args'}: {_clip(e.message)}" for e in errors)


@functools.lru_cache(maxsize=512)
def _schema_validator(schema_json: str) -> Any:
    import jsonschema  # not at module level: `import agentd.cli` stays light

    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        log.warning("a tool's JSON schema is invalid (%s); its arguments are not checked", exc.message)
        return None
    return cls(schema)


def _clip(message: str, limit: int = 160) -> str:
    """A validation message stays one short line (jsonschema repeats the whole offending value)."""
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 3] + "..."


# A negation up to two words before the phrase, in the same sentence.
_NEGATED = re.compile(r"\b(not|no|never|without|don't|dont|doesn't|avoid)\b[^\w.;:!?]*(\w+[^\w.;:!?]+){0,2}$",
                      re.IGNORECASE)


@functools.lru_cache(maxsize=256)
def _phrase_pattern(phrase: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in phrase.split()]
    return re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)", re.IGNORECASE)


def as_result(value: Any) -> ToolResult:
    """Normalise what a tool returned into a ToolResult."""
    if isinstance(value, ToolResult):
        return value
    if value is None:
        return ToolResult(output="")
    if isinstance(value, str):
        return ToolResult(output=value)
    if isinstance(value, dict):
        return ToolResult(output=json.dumps(value, ensure_ascii=False, default=str), data=value)
    return ToolResult(output=str(value))


def execute(tool: Tool, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    """Run one tool call in a worker thread with a timeout; every failure becomes ``ToolResult.error``."""
    try:
        clean = tool.validate(args)
    except ToolError as exc:
        return ToolResult(error=str(exc))
    # Each call gets its own cancel flag: a timeout stops this call, never the whole run; a run's cancel
    # still reaches the call at once.
    call_ctx = dataclasses.replace(ctx, cancel=CallCancel(ctx.cancel))
    if tool.wants_ctx:
        clean["ctx"] = call_ctx
    timeout = tool.timeout_s or ctx.timeout_s
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            value = tool.fn(**clean)
            if inspect.isawaitable(value):
                import asyncio

                value = asyncio.run(_await(value))
            box["result"] = as_result(value)
        except ToolError as exc:
            box["result"] = ToolResult(error=str(exc))
        except Exception as exc:  # the tool executor is one of two places a bare catch belongs
            log.exception("tool %s raised", tool.name)
            box["result"] = ToolResult(error=f"{type(exc).__name__}: {exc}")

    started = time.monotonic()
    if not WORKERS.submit(target).wait(timeout):
        call_ctx.cancel.set()  # cooperative tools (subprocess runners) stop on this
        return ToolResult(
            error=f"{tool.name} timed out after {timeout:g}s and was abandoned; try smaller input or another approach",
            data={"timed_out": True, "seconds": round(time.monotonic() - started, 3)},
        )
    return box["result"]


async def _await(value: Any) -> Any:
    return await value


class ToolWorkers:
    """Reused threads for tool calls: starting a thread per call cost more than a fast tool itself.

    A call gets an idle worker, or a new one when none is idle, so a hung (abandoned) call never holds up the
    next; a worker idle for ``idle_s`` ends. Invariant (under the lock): workers waiting for a job = ``_idle`` +
    jobs queued.
    """

    def __init__(self, idle_s: float = 30.0) -> None:
        self.idle_s = idle_s
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # a forked child has none of the parent's threads

    def _reset(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], None], threading.Event]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0

    def submit(self, job: Callable[[], None]) -> threading.Event:
        """Run ``job`` on a worker; the event is set once it returned and its worker is free again."""
        done = threading.Event()
        with self._lock:
            if self._idle:
                self._idle -= 1
            else:
                threading.Thread(target=self._work, name="tool-worker", daemon=True).start()
            self._jobs.put((job, done))
        return done

    def _work(self) -> None:
        while True:
            try:
                job, done = self._jobs.get(timeout=self.idle_s)
            except queue.Empty:
                with self._lock:
                    if self._idle:  # nobody is waiting on this worker: end it
                        self._idle -= 1
                        return
                continue
            try:
                job()
            except BaseException:  # a tool's SystemExit must not take a counted worker away
                log.exception("a tool call's worker caught what its job raised")
            with self._lock:
                self._idle += 1  # free again before the caller hears of it, so its next call reuses this one
            done.set()


WORKERS = ToolWorkers()


class ToolRegistry:
    """Tools by name, filled by the ``register_tools`` hook; clashes are kept under distinct names."""

    def __init__(self) -> None:
        self.tools: dict[str, Tool] = {}
        self.problems: list[str] = []

    def register_for(self, plugin: str) -> Callable[..., Tool]:
        def register(
            fn_or_tool: Callable[..., Any] | Tool,
            name: str | None = None,
            side_effects: tuple[str, ...] | list[str] = (),
            timeout_s: float | None = None,
            description: str | None = None,
            goal_phrases: tuple[str, ...] | list[str] = (),
        ) -> Tool:
            tool = (
                fn_or_tool
                if isinstance(fn_or_tool, Tool)
                else Tool.from_function(
                    fn_or_tool, name=name, side_effects=side_effects, timeout_s=timeout_s, description=description,
                    goal_phrases=goal_phrases,
                )
            )
            tool.plugin = plugin
            if goal_phrases and isinstance(fn_or_tool, Tool):
                tool.goal_phrases = tuple(goal_phrases)
            if tool.name in self.tools:
                taken = tool.name
                tool.name = f"{plugin}_{tool.name}".replace("-", "_")
                self.problems.append(
                    f"tool {taken!r} from plugin {plugin!r} clashes with plugin "
                    f"{self.tools[taken].plugin!r}; registered as {tool.name!r}"
                )
            self.tools[tool.name] = tool
            return tool

        return register

    def __contains__(self, name: str) -> bool:
        return name in self.tools

    def __getitem__(self, name: str) -> Tool:
        return self.tools[name]

    def names(self) -> list[str]:
        return list(self.tools)

    def requested_in(self, goal: str) -> list[str]:
        """The tools the goal asks for by one of their goal phrases, in registration order."""
        return [name for name, tool in self.tools.items() if tool.requested_in(goal)]

    def subset(self, allowed: list[str] | None) -> ToolRegistry:
        if allowed is None:
            return self
        sub = ToolRegistry()
        sub.tools = {n: t for n, t in self.tools.items() if n in allowed}
        return sub
