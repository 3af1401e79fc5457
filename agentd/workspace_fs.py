"""Opening and walking workspace files without following symlinks.

Sandboxed code owns the workspace and may swap any folder for a symlink between a check and a use, so the
daemon never opens a workspace path as a whole: it opens each path relative to a workspace folder fd, with
no symlink allowed in any component (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS where the kernel has it,
else one O_NOFOLLOW open per component), and walks the tree by fds too. ``agentd.tools`` re-exports the public
names for plugins.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from .errors import ToolError

_SYS_OPENAT2 = 437  # the same on every architecture
_RESOLVE = 0x02 | 0x04 | 0x08  # RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH
_openat2_works: bool | None = None
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _openat2(dir_fd: int, relative: str, flags: int, mode: int) -> int | None:
    """openat2 beneath ``dir_fd`` without symlinks; None where the kernel lacks it. Raises OSError."""
    global _openat2_works
    if _openat2_works is False:
        return None
    import ctypes

    class OpenHow(ctypes.Structure):
        _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]

    how = OpenHow(flags | os.O_CLOEXEC, mode if flags & os.O_CREAT else 0, _RESOLVE)
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(_SYS_OPENAT2, dir_fd, relative.encode(), ctypes.byref(how), ctypes.sizeof(how))
    if fd >= 0:
        _openat2_works = True
        return int(fd)
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EPERM) and _openat2_works is None:  # no openat2 (or a seccomp filter)
        _openat2_works = False
        return None
    raise OSError(err, os.strerror(err), relative)


def _split(relative: str) -> list[str]:
    if not isinstance(relative, str) or not relative.strip():
        raise ToolError("path must be a non-empty relative path inside the workspace")
    if relative.startswith("/"):
        raise ToolError(f"absolute paths are not allowed ({relative!r}); use a path relative to the workspace")
    if "\0" in relative:
        raise ToolError(f"invalid path {relative[:80]!r}: it contains a NUL character")
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ToolError(f"path {relative!r} leaves the workspace (..); use a path inside it")
    return parts


def open_beneath(dir_fd: int, relative: str, flags: int, mode: int = 0o644, *, use_openat2: bool = True) -> int:
    """Open ``relative`` under the folder ``dir_fd`` following no symlink on any component; raises OSError
    (ELOOP or ENOTDIR for a symlink on the way, EXDEV for an escape)."""
    parts = _split(relative) or ["."]
    if use_openat2:
        fd = _openat2(dir_fd, "/".join(parts), flags, mode)
        if fd is not None:
            return fd
    current = os.dup(dir_fd)
    try:
        for part in parts[:-1]:
            following = os.open(part, _DIR_FLAGS, dir_fd=current)
            os.close(current)
            current = following
        return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=current)
    finally:
        os.close(current)


def workspace_error(relative: str, exc: OSError) -> ToolError:
    """The one-line tool error for a workspace path the file system refused."""
    if exc.errno in (errno.ELOOP, errno.EXDEV):
        return ToolError(f"path {relative!r} goes through a symlink; symlinks in the workspace are not followed")
    if exc.errno == errno.ENOENT:
        return ToolError(f"no file {relative!r} in the workspace; list_files shows what is there")
    if exc.errno == errno.ENOTDIR:
        return ToolError(f"path {relative!r}: a part of it is not a folder (a symlink is not followed)")
    return ToolError(f"path {relative!r}: {exc.strerror or exc}")


def _open_folder(workspace: Path, parts: list[str], create: bool) -> int:
    """The fd of the workspace folder ``parts``, one O_NOFOLLOW open per component (creating missing ones)."""
    current = os.open(workspace, _DIR_FLAGS)
    try:
        for part in parts:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=current)
            following = os.open(part, _DIR_FLAGS, dir_fd=current)
            os.close(current)
            current = following
    except BaseException:
        os.close(current)
        raise
    return current


def open_in_workspace(workspace: Path, relative: str, flags: int = os.O_RDONLY, mode: int = 0o644,
                      *, make_parents: bool = False) -> int:
    """An fd for ``relative`` inside the workspace, opened without following symlinks; ToolError otherwise.
    ``make_parents`` creates the missing folders on the way (each one relative to its parent's fd)."""
    parts = _split(relative) or ["."]
    try:
        parent = _open_folder(workspace, parts[:-1] if make_parents else [], make_parents)
        try:
            return open_beneath(parent, parts[-1] if make_parents else "/".join(parts), flags, mode)
        finally:
            os.close(parent)
    except OSError as exc:
        raise workspace_error(relative, exc) from None


def replace_in_workspace(workspace: Path, relative: str, data: bytes) -> None:
    """Write ``data`` to a new file beside ``relative`` and rename it over: never through a link (symbolic or
    hard) to a file outside, and a reader never sees half a file."""
    parts = _split(relative)
    if not parts:
        raise ToolError("path must name a file inside the workspace")
    name, temp = parts[-1], f".{parts[-1]}.agentd-{os.getpid()}-{threading.get_ident()}.tmp"
    try:
        workspace.mkdir(parents=True, exist_ok=True)
        parent = _open_folder(workspace, parts[:-1], create=True)
    except OSError as exc:
        raise workspace_error(relative, exc) from None
    try:
        kept = None  # else a new file gets what the process's umask allows (owner-only in a home): the kernel's
        with contextlib.suppress(FileNotFoundError):
            old = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if stat.S_ISDIR(old.st_mode):
                raise ToolError(f"{relative!r} is a folder; choose a file name")
            if stat.S_ISREG(old.st_mode) and old.st_nlink == 1:
                kept = stat.S_IMODE(old.st_mode) & 0o777  # an executable script stays executable
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temp, flags, 0o666 if kept is None else 0o600, dir_fd=parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                if kept is not None:
                    os.fchmod(fh.fileno(), kept)
                fh.write(data)
            os.rename(temp, name, src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=parent)
            raise
    except OSError as exc:
        raise workspace_error(relative, exc) from None
    finally:
        os.close(parent)


@dataclass
class WorkspaceEntry:
    """One entry of a workspace walk; ``dir_fd`` (its folder) is open only while the walk is at it."""

    dir_fd: int
    name: str
    path: str  # relative to the workspace
    stat: os.stat_result

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.stat.st_mode)


class WorkspaceWalk:
    """An iterative walk of a workspace by folder fds (no symlink is followed, no path re-resolved), bounded in
    entries and depth: ``truncated`` says it stopped at ``max_entries``, ``too_deep`` that it left folders
    below ``max_depth`` out (one fd per level is held). Folders come before what they hold.
    ``workspace`` is a path or an open folder fd (the walk uses a copy of it)."""

    def __init__(self, workspace: Path | int, max_entries: int = 20_000, max_depth: int = 128,
                 skip_top: tuple[str, ...] = ()) -> None:
        self.workspace, self.max_entries, self.max_depth, self.skip_top = workspace, max_entries, max_depth, skip_top
        self.truncated = self.too_deep = False
        self.count = 0

    def __iter__(self):
        try:
            root = os.dup(self.workspace) if isinstance(self.workspace, int) else os.open(self.workspace, _DIR_FLAGS)
        except OSError:
            return
        stack = [(root, "", os.scandir(root))]
        try:
            while stack:
                fd, rel, entries = stack[-1]
                entry = next(entries, None)
                if entry is None:
                    entries.close()
                    os.close(fd)
                    stack.pop()
                    continue
                if not rel and entry.name in self.skip_top:
                    continue
                if self.count >= self.max_entries:
                    self.truncated = True
                    return
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                self.count += 1
                item = WorkspaceEntry(fd, entry.name, f"{rel}{entry.name}", st)
                yield item
                if item.is_dir:
                    if len(stack) >= self.max_depth:
                        self.too_deep = True
                        continue
                    try:
                        child = os.open(entry.name, _DIR_FLAGS, dir_fd=fd)
                    except OSError:
                        continue  # swapped for a symlink or removed meanwhile: not followed
                    stack.append((child, item.path + "/", os.scandir(child)))
        finally:
            for fd, _, entries in stack:
                entries.close()
                os.close(fd)
