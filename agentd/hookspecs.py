"""The hooks agentd calls. Specs only ever gain arguments; callers always pass keywords.

Each hook is documented with an example in docs/plugins.md and has a `test_hook_<name>` test.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("agentd")
hookimpl = pluggy.HookimplMarker("agentd")


@hookspec
def register_tools(register, config):
    """Register tools: call ``register(fn_or_tool, name=None, side_effects=(), timeout_s=None, goal_phrases=())``.

    ``goal_phrases`` are phrases that, found in a goal, mean the user asked for this tool (``"use python"``);
    with ``loop.tool_requests = "first_step"`` the first plan's first step must then use one of those tools.
    """


@hookspec
def register_models(register, config):
    """Register chat-model providers: call ``register(provider_name, factory)``; factory(ModelConfig) -> ModelHandle."""


@hookspec
def register_settings(register):
    """Declare a settings table: call ``register(pydantic_model, name=None)``; ``[plugins.NAME]`` (NAME defaults to
    the plugin's name) is validated against the model when the config loads, and ``config show`` lists its defaults.
    """


@hookspec
def register_commands(cli):
    """Add click commands or groups to the ``agentd`` CLI group."""


@hookspec
def register_routes(router, config):
    """Add HTTP routes to the daemon's API (``router`` is a FastAPI APIRouter); work that must happen in the
    daemon's process, e.g. writing a store only the daemon may write while it runs."""


@hookspec
def extend_context(goal, run_id, config):
    """Return a list of strings (or None) added to the planning prompt, e.g. recalled memories."""


@hookspec
def critique_plan(goal, plan, tools, config):
    """Return a Critique of the plan, or None to abstain. Every critic is asked; any reject wins, then revise."""


@hookspec
def rank_tools(goal, tools, config):
    """Return ``{tool name: relevance}`` (higher is more relevant) for the goal's text, or None to abstain."""


@hookspec
def verify_outcome(goal, state, answer, workspace, tools):
    """Check a run's claim to be done before it may succeed: return a list of ``Finding`` (empty: it holds)."""


@hookspec
def before_tool_call(call, tool, run_id, goal):
    """Return None to allow the call, or a string saying why it must not run (a veto the model is told about)."""


@hookspec
def after_tool_call(call, result, run_id):
    """Observe a finished tool call (its ToolResult); the return value is ignored."""


@hookspec
def run_finished(run_id, goal, outcome, state):
    """Called once when a run ends, with its outcome dict and final loop state; the return value is ignored."""


@hookspec
def doctor_checks(config):
    """Return a list of (check name, ok, advice) tuples shown by ``agentd doctor``."""


@hookspec
def unavailable_tools(config):
    """Return a list of strings naming tools this plugin cannot offer right now and why (missing extras...)."""


@hookspec
def memory_store(config):
    """Return this plugin's long-term memory for the dashboard (``search(query, k)``, ``forget(id=...)``), or None."""


@hookspec
def daemon_starting(config):
    """Called once when the daemon starts, before it takes any run: clean up what a previous daemon that died
    left behind (the code plugin kills sandbox processes that outlived it). The return value is ignored."""


@hookspec
def app_closing(config):
    """Called when an App closes (a CLI command ends, the daemon stops, a test's app is torn down): release what
    this plugin opened for ``config.home`` (the memory plugin closes its Chroma client). A later use in the same
    process may open it again. The return value is ignored."""
