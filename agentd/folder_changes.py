"""Changes to attached folders: what a tool call may write there, the copies `agentd runs undo` restores from,
and the journal of every write.

A write to a ``:rw`` folder first keeps the file's original (its content before the run's first write to it,
or "did not exist") under ``$AGENTD_HOME/undo/<run-id>/`` (owner-only), bounded by ``[workspace] undo_max_mb``
per run: a write that would need more is refused, unless the goal was started with ``--no-undo``. Each write
is journaled (own table, migration ``m_folders_001_changes``): folder, path, size, sha256 before and after.
Writes by the workspace tools go through ``FolderAccess.write``; code in the sandbox is judged by snapshots
before and after each call (``code_started``/``code_finished``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import AgentdError
from .folders import AttachedFolder, folders_of, split_target
from .home import write_private
from .tools import ToolError, WorkspaceWalk, open_beneath, replace_in_workspace, workspace_error

WALK_LIMIT = 20_000  # entries of one rw folder snapshotted per code call
_CHUNK = 1 << 20


def m_folders_001_changes(db: sqlite3.Connection) -> None:
    """Every write to an attached folder: where, how big, the content hash before and after."""
    db.execute(
        """CREATE TABLE folder_changes (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL,
            folder TEXT NOT NULL,
            root TEXT NOT NULL,
            path TEXT NOT NULL,
            size BIGINT,
            sha_before TEXT,
            sha_after TEXT,
            tool TEXT NOT NULL DEFAULT '',
            undoable INTEGER NOT NULL DEFAULT 1,
            ts REAL NOT NULL
        )"""
    )
    db.execute("CREATE INDEX folder_changes_run ON folder_changes(run_id, id)")


MIGRATIONS = [m_folders_001_changes]


def undo_dir(home: Path, run_id: str) -> Path:
    return Path(home) / "undo" / run_id


@dataclass
class FolderAccess:
    """A tool call's view of its run's attached folders: ``find`` a path, ``write`` to a rw folder; the writes
    made (``changes``) are journaled by the engine after the call."""

    folders: list[AttachedFolder]
    undo: Path  # $AGENTD_HOME/undo/<run-id>
    undo_max_bytes: int
    keep_undo: bool = True  # False: started with --no-undo
    changes: list[dict[str, Any]] = field(default_factory=list)
    _originals: dict[str, Any] | None = None

    @classmethod
    def for_goal(cls, goal: Any, config: Any, run_id: str) -> FolderAccess | None:
        folders = folders_of(goal)
        if not folders:
            return None
        limit = int(config.workspace.undo_max_mb * 1024 * 1024)
        return cls(folders, undo_dir(config.home, run_id), limit, not getattr(goal, "no_undo", False))

    def find(self, relative: str) -> tuple[AttachedFolder | None, str]:
        return split_target(self.folders, relative)

    def write(self, folder: AttachedFolder, relative: str, data: bytes, tool: str = "write_file") -> None:
        """Replace ``relative`` in a rw folder (never through a symlink), keeping the original first."""
        if not folder.writable:
            raise ToolError(f"{folder.name}/ is attached read-only: nothing was written; write the file in the "
                            f"workspace instead (a path not starting with {folder.name}/)")
        before = _read_beneath(Path(folder.path), relative)
        self._keep_original(folder, relative, before)
        replace_in_workspace(Path(folder.path), relative, data)
        self._record(folder, relative, _sha(before), hashlib.sha256(data).hexdigest(), len(data), tool)

    # -- the code sandbox: snapshots around one call ---------------------------------------------------------
    def code_started(self) -> tuple[dict[str, dict[str, tuple]], list[str]]:
        """Before a code call: each rw folder's files (stat key and hash), originals kept for undo. Returns the
        snapshot and the names of rw folders too big to keep (bound read-only for this call, with a note)."""
        shots: dict[str, dict[str, tuple]] = {}
        too_big: list[str] = []
        for folder in self.folders:
            if not folder.writable:
                continue
            shot = _snapshot(Path(folder.path))
            try:
                for relative in shot:
                    self._keep_original(folder, relative, b"", lazy=True, save=False)
            except ToolError:
                too_big.append(folder.name)
                continue
            finally:
                self._save()
            shots[folder.name] = shot
        return shots, too_big

    def code_finished(self, shots: dict[str, dict[str, tuple]], tool: str) -> None:
        """After a code call: journal what changed in each rw folder since ``code_started``."""
        for folder in self.folders:
            if folder.name not in shots:
                continue
            before, after = shots[folder.name], _snapshot(Path(folder.path))
            for relative in sorted(set(before) | set(after)):
                old, new = before.get(relative), after.get(relative)
                if old is not None and new is not None and old[:3] == new[:3]:
                    continue
                if old is None:  # a new file: it did not exist before the run's first write
                    self._keep_original(folder, relative, None)
                sha_before, sha_after = old[3] if old else None, new[3] if new else None
                if sha_before != sha_after:
                    self._record(folder, relative, sha_before, sha_after, new[0] if new else 0, tool)

    # -- originals and records -------------------------------------------------------------------------------
    def _manifest(self) -> dict[str, Any]:
        if self._originals is None:
            path = self.undo / "originals.json"
            self._originals = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        return self._originals

    def _save(self) -> None:
        if self._originals is not None and self.keep_undo:
            write_manifest(self.undo, self._originals)

    def _keep_original(self, folder: AttachedFolder, relative: str, before: bytes | None, lazy: bool = False,
                       save: bool = True) -> None:
        """Copy the file's content before the run's first write to it (None: it did not exist). ``lazy``: read
        it here (the sandbox snapshot). ToolError when the copies would pass the run's undo limit."""
        if not self.keep_undo:
            return
        manifest = self._manifest()
        key = f"{folder.name}/{relative}"
        if key in manifest:
            return
        if lazy and before is not None:
            before = _read_beneath(Path(folder.path), relative)
        used = sum(entry.get("size", 0) for entry in manifest.values())
        if before is not None and used + len(before) > self.undo_max_bytes:
            raise ToolError(
                f"{key}: keeping a copy for `agentd runs undo` would pass [workspace] undo_max_mb "
                f"({self.undo_max_bytes // (1024 * 1024)} MB for this run); nothing was written. Start the goal "
                "with --no-undo to change large files without copies")
        self.undo.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.undo, 0o700)
        entry: dict[str, Any] = {"folder": folder.name, "root": folder.path, "path": relative, "copy": None,
                                 "size": 0, "sha256": None}
        if before is not None:
            copy = self.undo / f"{len(manifest):06d}.orig"
            fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(before)
            entry |= {"copy": copy.name, "size": len(before), "sha256": _sha(before)}
        manifest[key] = entry
        if save:
            self._save()

    def _record(self, folder: AttachedFolder, relative: str, sha_before: str | None, sha_after: str | None,
                size: int, tool: str) -> None:
        self.changes.append({"folder": folder.name, "root": folder.path, "path": relative, "size": size,
                             "sha_before": sha_before, "sha_after": sha_after, "tool": tool,
                             "undoable": self.keep_undo})


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """The originals' index, replaced whole (owner-only)."""
    write_private(folder / "originals.json", [json.dumps(manifest, indent=1).encode("utf-8")])


def _sha(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def _read_beneath(root: Path, relative: str) -> bytes | None:
    """The file's bytes (None when there is none), opened beneath ``root`` without following a symlink."""
    try:
        dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise ToolError(f"attached folder {root} cannot be opened: {exc.strerror}") from None
    try:
        fd = open_beneath(dir_fd, relative, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise workspace_error(relative, exc) from None
    finally:
        os.close(dir_fd)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise ToolError(f"{relative!r} is not a regular file")
        return fh.read()


def _snapshot(root: Path) -> dict[str, tuple]:
    """relative path -> (size, mtime_ns, inode, sha256) of a folder's regular files, walked by fds."""
    shot: dict[str, tuple] = {}
    for entry in WorkspaceWalk(root, max_entries=WALK_LIMIT):
        st = entry.stat
        if not stat.S_ISREG(st.st_mode):
            continue
        digest = hashlib.sha256()
        try:
            fd = os.open(entry.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=entry.dir_fd)
        except OSError:
            continue
        with os.fdopen(fd, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
        shot[entry.path] = (st.st_size, st.st_mtime_ns, st.st_ino, digest.hexdigest())
    return shot


# -- the journal -------------------------------------------------------------------------------------------------
class FolderChanges:
    """The ``folder_changes`` table, through the journal's connection."""

    def __init__(self, journal: Any) -> None:
        self.journal = journal
        journal.apply_migrations(MIGRATIONS)

    def record(self, run_id: str, changes: list[dict[str, Any]], lease: Any = None) -> None:
        if not changes:
            return
        with self.journal._tx(run_id, lease) as db:  # one transaction; row by row, as both databases take it
            for c in changes:
                db.execute(
                    "INSERT INTO folder_changes (run_id, folder, root, path, size, sha_before, sha_after, tool,"
                    " undoable, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, c["folder"], c["root"], c["path"], c["size"], c["sha_before"], c["sha_after"], c["tool"],
                     int(c["undoable"]), time.time()),
                )

    def of_run(self, run_id: str) -> list[dict[str, Any]]:
        return [dict(r) for r in self.journal._query(
            "SELECT * FROM folder_changes WHERE run_id = ? ORDER BY id", (run_id,))]

    def changed_files(self, run_id: str) -> list[dict[str, Any]]:
        """One entry per file the run changed: its first hash before, last hash after, last size, writes."""
        files: dict[str, dict[str, Any]] = {}
        for row in self.of_run(run_id):
            key = f"{row['folder']}/{row['path']}"
            entry = files.setdefault(key, {"file": key, "root": row["root"], "path": row["path"], "writes": 0,
                                           "sha_before": row["sha_before"], "undoable": bool(row["undoable"])})
            entry |= {"size": row["size"], "sha_after": row["sha_after"], "writes": entry["writes"] + 1}
        return list(files.values())


def describe(change: dict[str, Any]) -> str:
    """One line for `runs show` and the report: ``inbox/a.txt  created, 12 bytes``."""
    what = ("created" if change["sha_before"] is None else "deleted" if change["sha_after"] is None
            else "changed")
    size = "" if change["sha_after"] is None else f", {change['size']} bytes"
    return f"{change['file']}  {what}{size}" + ("" if change["undoable"] else " (no undo copy: --no-undo)")


def undo_run(config: Any, journal: Any, run_id: str) -> list[str]:
    """Put back every file the run changed in its rw folders, from the originals kept before its first write;
    a file changed again since the run is left as it is. Returns one line per file."""
    changed = FolderChanges(journal).changed_files(run_id)
    if not changed:
        raise AgentdError(f"run {run_id} changed no file in an attached folder; nothing to undo")
    folder = undo_dir(config.home, run_id)
    manifest_path = folder / "originals.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    lines = []
    for change in changed:
        original = manifest.get(change["file"])
        root, relative = Path(change["root"]), change["path"]
        if original is None:
            lines.append(f"{change['file']}: no copy was kept (the goal ran with --no-undo); left as it is")
            continue
        if original.get("undone"):
            lines.append(f"{change['file']}: already undone")
            continue
        try:
            current = _sha(_read_beneath(root, relative))
        except ToolError as exc:
            lines.append(f"{change['file']}: {exc}; left as it is")
            continue
        if current != change["sha_after"]:
            lines.append(f"{change['file']}: changed again since the run; left as it is")
            continue
        if original["copy"] is None:
            _remove_beneath(root, relative)
            lines.append(f"{change['file']}: removed (the run created it)")
        else:
            replace_in_workspace(root, relative, (folder / original["copy"]).read_bytes())
            lines.append(f"{change['file']}: restored ({original['size']} bytes)")
        original["undone"] = True
    if manifest:
        write_manifest(folder, manifest)
    return lines


def _remove_beneath(root: Path, relative: str) -> None:
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        parent = open_beneath(dir_fd, "/".join(parts[:-1]) or ".", os.O_RDONLY | os.O_DIRECTORY)
    finally:
        os.close(dir_fd)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(parts[-1], dir_fd=parent)
    finally:
        os.close(parent)
