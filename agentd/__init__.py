"""agentd: a plugin-based agent automation daemon.

This is the public API for plugins; it stays light to import (no langchain, llama_cpp, chromadb or torch).
"""

from .hookspecs import hookimpl
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
    "__version__",
    "hookimpl",
]
