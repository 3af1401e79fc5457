"""Memory plugin: recalled memories in every plan, ``recall``/``remember`` tools, and an episode per run.

* ``extend_context`` searches memory with the goal's text and hands the planner the closest memories, each with
  its provenance (``[episode 2026-05-01 run R: goal ...]``, ``[doc notes.md#3]``, ``[note ...]``).
* ``recall(query, k)`` searches mid-run; ``remember(note)`` stores a note for later runs.
* ``run_finished`` writes an episode: goal, plan, outcome and lessons derived from the run's own record (no
  extra model call: a small local model would add cost and noise, while failures, replan reasons and the files
  a run made are facts already in the state).

Memory is off for a goal with ``Goal.memory = False`` (no context, no episode, and the tools refuse) and for
everyone with ``[plugins.memory] enabled = false`` (no tools registered either). The core work lives in
``agentd_memory.store``; it, chromadb and the embedding model load on first use, once per process.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

from agentd import ToolContext, ToolError, ToolResult, hookimpl

log = logging.getLogger(__name__)

TOOL_NAMES = ("recall", "remember")
# Run id -> the scopes it may recall, learnt from the hooks that see its goal.
_RUN_SCOPES: dict[str, list[str]] = {}
# Run id -> its config, kept by extend_context for run_finished (which is given none).
_RUN_CONFIG: dict[str, Any] = {}
# Run id -> the document sources its plan was given, named in its episode so `forget --source` finds it.
_RUN_SOURCES: dict[str, list[str]] = {}
# Runs that ended for these reasons failed because of the machinery (model unreachable, daemon crash), not the
# approach: their episodes would teach later runs nothing true, so they are neither written nor recalled.
INFRASTRUCTURE_STOPS = frozenset({"model_error", "daemon_crash"})


def worth_recalling(hit: Any) -> bool:
    """False for episodes of runs that failed for infrastructure reasons (kept by older versions)."""
    return not (hit.kind == "episode" and hit.meta.get("stop_reason") in INFRASTRUCTURE_STOPS)


def _settings(config: Any) -> Any:
    from agentd_memory.store import MemorySettings

    return MemorySettings.from_config(config)


def _memory(config: Any) -> Any:
    from agentd_memory.store import get_memory

    return get_memory(config)


def _scopes(run_id: str, goal: Any = None) -> list[str]:
    from agentd_memory.store import visible_scopes

    if goal is not None:
        _RUN_SCOPES[run_id] = visible_scopes(run_id, getattr(goal, "schedule", None))
    return _RUN_SCOPES.get(run_id) or visible_scopes(run_id)


def snippet(hit: Any, limit: int = 360, query: str = "") -> str:
    """One memory as a prompt line that says where it came from; a long text shows the part ``query`` matched."""
    m = hit.meta
    if hit.kind == "document":
        page = f" p.{m['page']}" if m.get("page") else ""
        head = f"[doc {Path(str(m.get('source', '?'))).name}#{m.get('chunk', 0)}{page}]"
        body = focus(hit.text, query, limit - len(head) - 1)
    elif hit.kind == "episode":
        head = f"[{hit.provenance}: goal {m.get('goal', '')[:80]!r} -> {m.get('status', '?')}]"
        lessons = _loads(m.get("lessons"))
        body = "; ".join(
            ([f"answer: {m['answer']}"] if m.get("answer") else [])
            + ([f"lessons: {' '.join(lessons)}"] if lessons else [])
        )
    else:
        head = f"[{hit.provenance}]"
        body = focus(hit.text, query, limit - len(head) - 1)
    text = f"{head} {' '.join(body.split())}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n?")
_WORD = re.compile(r"\w+")
_COMMON = frozenset(["the", "and", "for", "are", "was", "were", "what", "which", "who", "how", "with", "that", "this", "from", "into", "about", "does", "did", "has", "have"])


def focus(text: str, query: str, room: int) -> str:
    """A text that fits ``room`` whole, else from the sentence sharing most words with ``query`` on (marked
    with "…"), so a recalled line shows the fact that matched, not a prefix that stops before it."""
    flat = " ".join(text.split())
    words = {w for w in _WORD.findall(query.lower()) if len(w) > 2 and w not in _COMMON}
    if len(flat) <= room or not words:
        return flat
    sentences = [s for s in _SENTENCE_END.split(text) if s and s.strip()]
    shared = [len(words & set(_WORD.findall(s.lower()))) for s in sentences]
    best = max(range(len(sentences)), key=lambda i: (shared[i], -i))
    if best == 0 or shared[best] == 0:
        return flat
    return "… " + " ".join(" ".join(sentences[best:]).split())


def _loads(value: Any) -> list[str]:
    import json

    try:
        data = json.loads(value or "[]")
    except (TypeError, ValueError):
        return []
    return [str(x) for x in data] if isinstance(data, list) else []


def make_tools(config: Any) -> tuple[Any, Any]:
    """The two tools, bound to this config (a ToolContext carries no config, and memory is per home)."""

    def recall(query: str, ctx: ToolContext, k: int = 5) -> ToolResult:
        """Search long-term memory (past runs, notes, documents) by meaning; each hit says where it is from."""
        from agentd_memory.store import MemoryStoreError

        try:
            hits = _memory(config).search(query, k=max(1, min(int(k), 20)), scopes=_scopes(ctx.run_id))
        except MemoryStoreError as exc:
            raise ToolError(f"memory is unavailable: {exc}") from None
        hits = [h for h in hits if worth_recalling(h)]
        if not hits:
            return ToolResult(output="no memories match that query; try other words", data={"hits": []})
        lines = [f"{i}. ({h.score:.2f}) {snippet(h, 600, query)}" for i, h in enumerate(hits, 1)]
        return ToolResult(output="\n".join(lines), data={"hits": [h.to_dict() for h in hits]})

    def remember(note: str, ctx: ToolContext) -> ToolResult:
        """Store a short fact or preference in long-term memory so that later runs can recall it."""
        from agentd_memory.store import MemoryStoreError

        if not note.strip():
            raise ToolError("the note is empty; pass the fact to remember as `note`")
        try:
            note_id = _memory(config).remember(note[:2000], run_id=ctx.run_id)
        except MemoryStoreError as exc:
            raise ToolError(f"memory is unavailable: {exc}") from None
        return ToolResult(output=f"remembered ({note_id})", data={"id": note_id})

    return recall, remember


@hookimpl
def register_settings(register):
    """``[plugins.memory]`` is validated when the config loads."""
    from .store import MemorySettings

    register(MemorySettings)


@hookimpl
def register_tools(register, config):
    if config is None or not _settings(config).enabled:
        return
    recall, remember = make_tools(config)
    register(recall, side_effects=["reads_files"],
             goal_phrases=("what do you remember", "do you remember", "search your memory"))
    register(remember, side_effects=["writes_files"], goal_phrases=("remember that", "remember this", "memorize"))


@hookimpl
def extend_context(goal, run_id, config):
    _RUN_CONFIG[run_id] = config
    settings = _settings(config)
    if not settings.enabled or not goal.memory or settings.recall_k == 0:
        return []
    from agentd_memory.store import MemoryStoreError

    try:
        hits = _memory(config).search(
            goal.text, k=settings.recall_k, scopes=_scopes(run_id, goal), min_score=settings.min_score
        )
    except MemoryStoreError as exc:  # the run goes on without memories; the log says why
        log.warning("memory not consulted for run %s: %s", run_id, exc)
        return []
    hits = [h for h in hits if worth_recalling(h)]
    _RUN_SOURCES[run_id] = list(dict.fromkeys(str(h.meta["source"]) for h in hits if h.meta.get("source")))
    snippets = [snippet(h, settings.snippet_chars, goal.text) for h in hits]
    return list(dict.fromkeys(snippets))  # identical memories (the same goal run twice) once


@hookimpl
def rank_tools(goal, tools, config):
    """Tools by embedding similarity of the goal and their name and description (the memory's embedder)."""
    if config is None or not _settings(config).enabled:
        return None
    from agentd_memory.embeddings import EmbeddingError

    try:
        embed = _embedder(config)
        texts = [f"{t.name.replace('_', ' ')}: {t.description}" for t in tools]
        missing = [t for t in texts if t not in _TOOL_VECTORS]
        for text, vector in zip(missing, embed(missing) if missing else [], strict=True):
            _TOOL_VECTORS[text] = vector
        query = embed([goal])[0]
    except (EmbeddingError, OSError, RuntimeError, ValueError) as exc:  # the core falls back to word overlap
        log.warning("tools not ranked by meaning: %s", exc)
        return None
    return {t.name: _cosine(query, _TOOL_VECTORS[text]) for t, text in zip(tools, texts, strict=True)}


# Tool description -> its vector: descriptions rarely change, and a process ranks tools for every run.
_TOOL_VECTORS: dict[str, list[float]] = {}
_EMBEDDERS: dict[str, Any] = {}


def _embedder(config: Any) -> Any:
    from agentd_memory.embeddings import EmbeddingSettings, make_embedder

    settings = _settings(config).embedding
    key = json.dumps(settings, sort_keys=True, default=str)
    if key not in _EMBEDDERS:
        _EMBEDDERS[key] = make_embedder(EmbeddingSettings.parse(settings), config.home / "cache")
    return _EMBEDDERS[key]


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = (sum(x * x for x in a) * sum(y * y for y in b)) ** 0.5
    return dot / norm if norm else 0.0


@hookimpl
def before_tool_call(call, tool, run_id, goal):
    _scopes(run_id, goal)
    if call.tool in TOOL_NAMES and getattr(tool, "plugin", "") == "memory" and not goal.memory:
        return "memory is switched off for this goal"
    return None


@hookimpl
def run_finished(run_id, goal, outcome, state):
    _RUN_SCOPES.pop(run_id, None)
    sources = _RUN_SOURCES.pop(run_id, [])
    config = _RUN_CONFIG.pop(run_id, None)
    if not goal.memory or outcome.get("stop_reason") in INFRASTRUCTURE_STOPS:
        return  # before loading a config: a run without memory must not pay for reading and validating one
    config = config or _config_for(outcome)
    if config is None:
        return
    settings = _settings(config)
    if not (settings.enabled and settings.episodes and goal.memory):
        return
    from agentd_memory.store import MemoryStoreError

    plan = [
        f"{s.intent} [{s.tool}]" if s.tool else s.intent for s in (state.plan.steps if state.plan else [])
    ]
    try:
        _memory(config).add_episode(
            run_id,
            goal.text,
            plan,
            status=str(outcome.get("status", "")),
            stop_reason=str(outcome.get("stop_reason") or ""),
            answer=str(outcome.get("final_answer") or "")[:500],
            lessons=lessons_from(state, outcome),
            schedule=goal.schedule,
            sources=sources,
        )
    except MemoryStoreError as exc:
        log.warning("no episode written for run %s: %s", run_id, exc)


def _config_for(outcome: dict) -> Any:
    """A resumed run's context phase is replayed, not re-run, so extend_context never saw its config: load it
    from the home that holds the run's workspace (HOME/workspaces/RUN)."""
    from agentd.config import load_config

    workspace = outcome.get("workspace")
    if not workspace:
        return None
    return load_config(home=Path(workspace).parent.parent)


def _call_text(call: Any) -> str:
    args = json.dumps(call.args, ensure_ascii=False)
    return f"{call.tool}({args if len(args) <= 160 else args[:160] + '...'})"


def lessons_from(state: Any, outcome: dict, limit: int = 6) -> list[str]:
    """Deterministic lessons from a finished run: what failed and why, why it replanned, what it made, what worked.

    Failures come first (they are what the next run must avoid), then replan reasons, then the files made and
    the sequence of tools that reached the goal.
    """
    lessons: list[str] = []
    observations = list(getattr(state, "observations", []) or [])
    for obs in observations:
        if obs.result.error:
            args = ", ".join(f"{k}={str(v)[:40]!r}" for k, v in list(obs.call.args.items())[:3])
            lessons.append(f"{obs.call.tool}({args}) failed: {' '.join(obs.result.error.split())[:160]}")
    for note in getattr(state, "notes", []) or []:
        lessons.append(f"Replanned because: {' '.join(str(note).split())[:160]}")
    made = sorted({a for obs in observations if obs.result.ok for a in obs.result.artifacts})
    if made:
        lessons.append("Files made: " + ", ".join(made[:8]))
    status, reason = outcome.get("status"), outcome.get("stop_reason") or ""
    # The calls that reached the goal, arguments included: the most reusable thing a run can teach the next.
    tools = [_call_text(obs.call) for obs in observations if obs.result.ok]
    if status == "succeeded" and tools:
        lessons.append("What worked: " + " -> ".join(tools[:8]))
    elif status != "succeeded":
        detail = " ".join(str(outcome.get("detail") or "").split())[:160]
        lessons.append(
            f"Did not succeed ({reason or status}): {detail}"
            if detail
            else f"Did not succeed ({reason or status})"
        )
    unique = list(dict.fromkeys(lessons))
    return unique[:limit]


@hookimpl
def app_closing(config):
    """Close this home's Chroma client; a process that never used memory has nothing to close (no import)."""
    store = sys.modules.get("agentd_memory.store")
    if store is not None and config is not None:
        store.close_memories(config.home)


@hookimpl
def memory_store(config):
    """The dashboard's Memory page searches and forgets through the same store the tools use."""
    if config is None or not _settings(config).enabled:
        return None
    from agentd_memory.store import get_memory

    return get_memory(config)


@hookimpl
def unavailable_tools(config):
    from agentd.errors import AgentdError
    from agentd_memory.embeddings import EmbeddingError, EmbeddingSettings, check_available

    try:
        settings = _settings(config)
        problem = check_available(EmbeddingSettings.parse(settings.embedding)) if settings.enabled else None
    except (EmbeddingError, AgentdError) as exc:
        problem = str(exc)
    return [f"recall, remember: {problem}"] if problem else []


@hookimpl
def doctor_checks(config):
    """Health checks for `agentd doctor`: (name, ok, what to do)."""
    from agentd.errors import AgentdError
    from agentd_memory.embeddings import EmbeddingError

    try:
        settings = _settings(config)
    except AgentdError as exc:
        return [("memory settings", False, str(exc))]
    if not settings.enabled:
        return [("memory", True, "disabled by [plugins.memory] enabled = false")]
    checks = []
    try:
        memory = _memory(config)
        memory.embedder(["agentd doctor"])
        checks.append(("memory embedding", True, memory.embedder.model_id))
        stats = memory.stats()
        checks.append(("memory store", True, f"{stats['items']} items at {stats['location']}"))
    except (AgentdError, EmbeddingError) as exc:
        checks.append(("memory", False, str(exc)))
    return checks


@hookimpl
def register_routes(router, config):
    """``POST /memory/ingest`` {paths, scope}: while a daemon runs, its process writes the store it holds."""

    @router.post("/memory/ingest")
    def ingest(body: dict[str, Any]) -> dict[str, Any]:
        from agentd.errors import ConfigError

        if not _settings(config).enabled:
            raise ConfigError("memory is disabled ([plugins.memory] enabled = false); enable it to ingest")
        paths, scope = body.get("paths"), body.get("scope", "global")
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
            raise ConfigError('send {"paths": ["/absolute/path", ...], "scope": "global"}')
        if not all(Path(p).is_absolute() for p in paths):
            raise ConfigError("paths must be absolute: the daemon does not share your working folder")
        report: dict[str, Any] = _memory(config).ingest(paths, scope=str(scope)).to_dict()
        return report

    @router.post("/memory/search")
    def search(body: dict[str, Any]) -> list[dict[str, Any]]:
        """``agentd memory search`` with a daemon up: its warm store and embedding model answer."""
        from agentd.errors import ConfigError

        if not _settings(config).enabled:
            raise ConfigError("memory is disabled ([plugins.memory] enabled = false); enable it to search")
        query, k, kind, scopes = body.get("query"), body.get("k", 5), body.get("kind"), body.get("scopes")
        if not isinstance(query, str) or not isinstance(k, int) or not (scopes is None or isinstance(scopes, list)):
            raise ConfigError('send {"query": "text", "k": 5, "kind": null, "scopes": null}')
        hits = _memory(config).search(query, k=k, kind=kind, scopes=scopes or None)
        return [hit.to_dict() for hit in hits]


@hookimpl
def register_commands(cli: Any) -> None:
    """``agentd memory ...``: the commands live with the store they drive."""
    from .commands import memory

    cli.add_command(memory)
