"""Workspace tools: read, write and list files inside the run's workspace, and give the final answer.

Paths are relative to the workspace; absolute paths and escapes (``..``, symlinks out) are refused with a tool
error the model can act on.
"""

from __future__ import annotations

from agentd import ToolContext, ToolError, ToolResult, hookimpl

MAX_READ = 20_000


def write_file(path: str, content: str, ctx: ToolContext) -> ToolResult:
    """Write text to a file in the workspace, replacing it if it exists."""
    target = ctx.resolve(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        target.write_text(content, encoding="utf-8")
    except OSError as exc:
        raise ToolError(f"could not write {path}: {exc.strerror or exc}") from None
    relative = str(target.relative_to(ctx.workspace.resolve()))
    return ToolResult(output=f"wrote {len(content)} characters to {relative}", artifacts=[relative])


def read_file(path: str, ctx: ToolContext) -> str:
    """Read a text file from the workspace."""
    target = ctx.resolve(path)
    if not target.is_file():
        raise ToolError(f"no file {path!r} in the workspace; list_files shows what is there")
    data = target.read_bytes()
    if b"\0" in data[:4096]:
        raise ToolError(f"{path} is a binary file; only text files can be read")
    text = data.decode("utf-8", errors="replace")
    if len(text) > MAX_READ:
        return text[:MAX_READ] + f"\n[... cut: {len(text) - MAX_READ} more characters]"
    return text


def list_files(ctx: ToolContext, path: str = ".") -> str:
    """List the files in the workspace (or in one of its folders)."""
    root = ctx.resolve(path)
    if not root.is_dir():
        raise ToolError(f"{path!r} is not a folder in the workspace")
    base = ctx.workspace.resolve()
    names = sorted(str(p.relative_to(base)) + ("/" if p.is_dir() else "") for p in root.rglob("*"))
    return "\n".join(names[:500]) if names else "(the workspace is empty)"


def final_answer(answer: str) -> ToolResult:
    """Finish the goal and give the answer to the user."""
    if not answer.strip():
        raise ToolError("the answer is empty; give the answer itself, using what the earlier steps found")
    return ToolResult(output=answer, data={"final_answer": answer})


@hookimpl
def register_tools(register):
    register(write_file, side_effects=["writes_files"])
    register(read_file, side_effects=["reads_files"], goal_phrases=("read the file",))
    register(list_files, side_effects=["reads_files"], goal_phrases=("list the files", "which files"))
    register(final_answer)
