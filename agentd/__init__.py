"""agentd: a plugin-based agent automation daemon.

This is the public API for plugins; it stays light to import (no langchain, llama_cpp, chromadb or torch).
"""

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
