"""Workspace tools: read, write and list files inside the run's workspace, and give the final answer.

Paths are relative to the workspace; a path starting with an attached folder's name (``inbox/notes.txt``)
is in that folder (agentd/folders.py), where the same rules hold and a write to a read-only folder is refused
(a rw folder's writes are journaled and undoable). Absolute paths and escapes (``..``, symlinks) are refused with a tool
error the model can act on. Every path is opened relative to the workspace folder's fd without following a
symlink on any component, and a write goes to a new file renamed over the old one: sandboxed code that swaps
a folder for a symlink, or hard-links a file from elsewhere, cannot make the daemon write or read outside.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from agentd import ToolContext, ToolError, ToolResult, hookimpl
from agentd.tools import WorkspaceWalk, open_in_workspace, replace_in_workspace

MAX_READ = 20_000
LIST_LIMIT = 500
# A text argument as long as a file may be: no short cap in the output grammar (engine/gbnf.py).
LongText = Annotated[str, Field(max_length=1_000_000)]


def _locate(ctx: ToolContext, path: str) -> tuple[Path, str, Any]:
    """(folder root, path inside it, the attached folder or None): ``inbox/x`` is in the attached ``inbox``."""
    if ctx.folders is not None:
        folder, rest = ctx.folders.find(path)
        if folder is not None:
            return Path(folder.path), rest or ".", folder
    return ctx.workspace, path, None


def write_file(path: str, content: LongText, ctx: ToolContext) -> ToolResult:
    """Write text to a file in the workspace, replacing it if it exists."""
    root, inside, folder = _locate(ctx, path)
    data = content.encode("utf-8")
    if folder is None:
        replace_in_workspace(root, inside, data)
    elif inside == ".":
        raise ToolError(f"{folder.name} is an attached folder; name a file inside it, e.g. {folder.name}/notes.txt")
    else:
        ctx.folders.write(folder, inside, data)  # refuses a read-only folder; journaled, undoable
    relative = "/".join(p for p in path.split("/") if p not in ("", "."))
    return ToolResult(output=f"wrote {len(content)} characters to {relative}", artifacts=[relative])


def read_file(path: str, ctx: ToolContext) -> str:
    """Read a text file from the workspace."""
    root, inside, _ = _locate(ctx, path)
    fd = open_in_workspace(root, inside, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ToolError(f"no file {path!r} in the workspace; list_files shows what is there")
        if st.st_nlink > 1 and st.st_uid != os.stat(root).st_uid:
            # a hard link the code made to a file it does not own: the daemon must not read it on its behalf
            raise ToolError(f"{path} is a hard link to a file outside the workspace's owner; it is not read")
        data = fh.read(MAX_READ * 4 + 1)
    if b"\0" in data[:4096]:
        raise ToolError(f"{path} is a binary file; only text files can be read")
    text = data.decode("utf-8", errors="replace")
    if len(text) > MAX_READ:
        return text[:MAX_READ] + f"\n[... cut: {max(len(text), st.st_size) - MAX_READ} more characters]"
    return text


def list_files(ctx: ToolContext, path: str = ".") -> str:
    """List the files in the workspace (or in one of its folders)."""
    root, inside, folder = _locate(ctx, path)
    fd = open_in_workspace(root, inside, os.O_RDONLY | os.O_DIRECTORY)
    prefix = "/".join(p for p in path.split("/") if p not in ("", "."))
    walk = WorkspaceWalk(fd, max_entries=LIST_LIMIT)
    try:
        names = sorted(f"{prefix}/{e.path}".lstrip("/") + ("/" if e.is_dir else "") for e in walk)
    finally:
        os.close(fd)
    if walk.truncated:
        names.append(f"[... more entries not listed: the listing stops at {LIST_LIMIT}]")
    if folder is None and not prefix and ctx.folders is not None:
        attached = {f"{f.name}/" for f in ctx.folders.folders}
        names = [n for n in names if n not in attached]  # an empty mount point the sandbox left
        names += [f"{f.name}/ (attached folder, {'read-write' if f.writable else 'read-only'})"
                  for f in ctx.folders.folders]
    return "\n".join(names) if names else "(the workspace is empty)"


def final_answer(answer: LongText) -> ToolResult:
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
