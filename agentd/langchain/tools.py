"""LangChain tools as agentd tools: ``register(from_langchain(SomeLangChainTool()), ...)``.

The LangChain tool's model-facing args schema becomes the agentd tool's JSON schema, its pydantic model
validates the arguments, and a call runs ``tool.invoke(args)``. Tools that work on files (they have a
``root_dir`` field, like ``langchain_community.tools.file_management``) are confined to the run's workspace:
each call uses a copy of the tool whose ``root_dir`` is that workspace, unless a ``root_dir`` was set on
purpose. LangChain is imported only when a tool is converted, never at agentd import time.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from ..tools import Tool, ToolContext, ToolError


def from_langchain(
    tool: Any, side_effects: Iterable[str] = (), *, name: str | None = None, timeout_s: float | None = None
) -> Tool:
    """An agentd Tool running the LangChain ``BaseTool`` ``tool``; declare its ``side_effects`` yourself."""
    from langchain_core.tools import BaseTool

    if not isinstance(tool, BaseTool):
        raise TypeError(f"from_langchain needs a langchain_core BaseTool, got {type(tool).__name__}")
    parameters, validator = _schema(tool)
    confine = "root_dir" in type(tool).model_fields and getattr(tool, "root_dir", None) is None

    def run(ctx: ToolContext, **args: Any) -> Any:
        target = tool.model_copy(update={"root_dir": str(ctx.workspace)}) if confine else tool
        return _invoke(target, args)

    agentd_tool = Tool.from_function(
        run, name=name or tool.name, description=tool.description or tool.name, side_effects=tuple(side_effects),
        timeout_s=timeout_s,
    )
    agentd_tool.parameters = parameters
    agentd_tool._validator = validator
    return agentd_tool


def _schema(tool: Any) -> tuple[dict[str, Any], Any]:
    """(JSON schema for the model, pydantic model validating arguments or None) from the tool's args schema."""
    from pydantic import BaseModel

    source = tool.tool_call_schema  # the args the model fills (injected arguments left out)
    if isinstance(source, type) and issubclass(source, BaseModel):
        schema = source.model_json_schema()
        validator: Any = source
    elif isinstance(source, dict):  # a tool described by a JSON schema: passed through unvalidated
        schema, validator = copy.deepcopy(source), None
    else:
        schema, validator = tool.get_input_schema().model_json_schema(), tool.get_input_schema()
    for key in ("title", "description"):
        schema.pop(key, None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    schema.setdefault("type", "object")
    schema.setdefault("properties", {})
    return schema, validator


def _invoke(tool: Any, args: dict[str, Any]) -> Any:
    """Run the tool; its exceptions and its ``"Error: ..."`` replies (a LangChain habit) become ToolErrors."""
    try:
        value = tool.invoke(args)
    except ToolError:
        raise
    except Exception as exc:  # whatever a third-party tool raises is something the model should read
        raise ToolError(f"{tool.name} failed: {type(exc).__name__}: {exc}") from None
    content = getattr(value, "content", value)  # a ToolMessage when the tool returns content and artifact
    if isinstance(content, str) and content.startswith("Error:"):
        raise ToolError(f"{tool.name}: {content[len('Error:'):].strip()}")
    return content
