"""agentd: a plugin-based agent automation daemon.

This is the public API for plugins; it stays light to import (no langchain, llama_cpp, chromadb or torch).
"""

from typing import TYPE_CHECKING

from ._lazy import exports

if TYPE_CHECKING:  # imported on first use (below), so `agentd --help` loads neither pluggy nor the dataclasses
    from .hookspecs import hookimpl
    from .keys import WithStoredKeys
    from .records import (
        Budgets,
        Critique,
        Decision,
        Feedback,
        Finding,
        Goal,
        Observation,
        Plan,
        PlannedStep,
        RunStatus,
        StopReason,
        ToolCall,
        ToolResult,
        Usage,
        Verdict,
    )
    from .tools import SIDE_EFFECTS, Tool, ToolContext, ToolError

_RECORDS = ("Budgets", "Critique", "Decision", "Feedback", "Finding", "Goal", "Observation", "Plan", "PlannedStep",
            "RunStatus", "StopReason", "ToolCall", "ToolResult", "Usage", "Verdict")
__getattr__ = exports(__name__, {
    "hookimpl": "hookspecs",
    "WithStoredKeys": "keys",
    **dict.fromkeys(_RECORDS, "records"),
    **dict.fromkeys(("SIDE_EFFECTS", "Tool", "ToolContext", "ToolError"), "tools"),
})

__version__ = "0.1.0"
# The PyPI distribution name: plugins depend on it (`dependencies = ["agentd-daemon"]`); "agentd" on PyPI is
# an unrelated project.
DISTRIBUTION = "agentd-daemon"

__all__ = [
    "SIDE_EFFECTS",
    "Budgets",
    "Critique",
    "Decision",
    "Feedback",
    "Finding",
    "Goal",
    "Observation",
    "Plan",
    "PlannedStep",
    "RunStatus",
    "StopReason",
    "Tool",
    "ToolCall",
    "ToolContext",
    "ToolError",
    "ToolResult",
    "Usage",
    "Verdict",
    "WithStoredKeys",
    "__version__",
    "hookimpl",
]
