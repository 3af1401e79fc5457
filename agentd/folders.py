"""Attached folders: the user's own folders a goal works on (``agentd goal --dir PATH[:ro|:rw]``, a schedule's
``dirs``), beside the run's workspace.

A folder is attached when the goal is built: its path resolved, checked against ``[workspace] allowed_dirs``
(default: the user's home, without dot-folders) and never AGENTD_HOME, nor inside it, nor above it. The goal
carries the result (``Goal.dirs``: name, real path, mode), so a resumed run has the same folders.

Addressing: tools and code reach a folder by its name as the first part of a path (``inbox/notes.txt``); inside
the code sandbox it is bound at ``/workspace/<name>`` (read-only unless ``:rw``), so the same relative path
works in ``read_file`` and in ``open()``. Two folders with one name get ``-2``, ``-3``... The run's workspace
stays the place for new files.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .records import Record

MODES = ("ro", "rw")
LISTING_WALK_LIMIT = 5_000  # entries walked per folder for the planner's listing


@dataclass
class AttachedFolder(Record):
    """One attached folder: the name tools address it by, its real path, ``ro`` or ``rw``."""

    name: str
    path: str
    mode: str = "ro"

    @property
    def writable(self) -> bool:
        return self.mode == "rw"


def parse_dir(spec: str) -> tuple[str, str]:
    """``"~/inbox:rw"`` -> (``"~/inbox"``, ``"rw"``); read-only when no mode is given."""
    text, mode = str(spec).strip(), "ro"
    for candidate in MODES:
        if text.endswith(":" + candidate):
            text, mode = text[: -len(candidate) - 1], candidate
    if not text:
        raise ConfigError(f"--dir {spec!r}: give a folder, e.g. --dir ~/inbox or --dir ~/reports:rw")
    return text, mode


def absolute_dirs(specs: list[str] | tuple[str, ...], base: Path) -> list[str]:
    """The CLI's ``--dir`` values with relative folders made absolute from ``base`` (the shell's folder)."""
    made = []
    for spec in specs:
        text, mode = parse_dir(spec)
        path = Path(text).expanduser()
        made.append(f"{path if path.is_absolute() else base / path}:{mode}")
    return made


def attach(specs: list[str], config: Any) -> list[dict[str, Any]]:
    """Check every ``PATH[:ro|:rw]`` and return the folders as the goal carries them; ConfigError naming the
    folder and the config key on the first one that may not be attached."""
    folders: list[dict[str, Any]] = []
    names: set[str] = set()
    for spec in specs:
        text, mode = parse_dir(spec)
        path = Path(text).expanduser()
        if not path.is_absolute():
            raise ConfigError(f"folder {text!r}: use an absolute path or one starting with ~/")
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):
            raise ConfigError(f"folder {text!r} does not exist; create it or fix the path") from None
        if not real.is_dir():
            raise ConfigError(f"{text!r} is not a folder; attach the folder that holds it")
        check_allowed(real, config)
        name = base = real.name or "root"
        n = 2
        while name in names:
            name, n = f"{base}-{n}", n + 1
        names.add(name)
        folders.append(AttachedFolder(name, str(real), mode).to_dict())
    return folders


def allowed_roots(config: Any) -> list[Path]:
    """The folders under which attaching is allowed (``[workspace] allowed_dirs``, default: the home)."""
    given = config.workspace.allowed_dirs
    entries = [str(Path.home())] if given is None else given
    return [Path(entry).expanduser().resolve() for entry in entries]


def check_allowed(path: Path, config: Any) -> None:
    """ConfigError unless ``path`` (resolved) lies under an allowed root and is clear of AGENTD_HOME."""
    home = Path(config.home).expanduser().resolve()
    if path == home or home in path.parents or path in home.parents:
        where = "is" if path == home else "is inside" if home in path.parents else "contains"
        raise ConfigError(f"{path} {where} AGENTD_HOME ({home}): agentd's own files are never attached; "
                          "attach another folder")
    default = config.workspace.allowed_dirs is None
    for root in allowed_roots(config):
        if path != root and root not in path.parents:
            continue
        dotted = [p for p in path.relative_to(root).parts if p.startswith(".")]
        if default and (path == root or dotted):
            why = "holds dot-folders" if path == root else f"is inside the dot-folder {dotted[0]}"
            raise ConfigError(f"{path} {why}, which the default [workspace] allowed_dirs leaves out; attach a "
                              f"folder below it, or list it in [workspace] allowed_dirs in {config.config_file}")
        return
    roots = ", ".join(map(str, allowed_roots(config))) or "none"
    raise ConfigError(f"{path} is not under [workspace] allowed_dirs ({roots}); add it (or a folder above it) "
                      f"to [workspace] allowed_dirs in {config.config_file}")


def folders_of(goal: Any) -> list[AttachedFolder]:
    """The goal's attached folders (none for a goal journaled before folders existed)."""
    return [AttachedFolder.from_dict(d) for d in (getattr(goal, "dirs", None) or [])]


def split_target(folders: list[AttachedFolder], relative: str) -> tuple[AttachedFolder | None, str]:
    """(the folder, the path inside it) when ``relative`` starts with a folder's name, else (None, relative)."""
    if not isinstance(relative, str):
        return None, relative
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    for folder in folders:
        if parts and parts[0] == folder.name:
            return folder, "/".join(parts[1:])
    return None, relative


def folder_files(folder: AttachedFolder, limit: int = LISTING_WALK_LIMIT) -> list[tuple[str, int, float]]:
    """(path with the folder's name in front, size, mtime) of the folder's regular files, walked by fds
    without following a symlink; bounded by ``limit`` entries."""
    from .tools import WorkspaceWalk

    try:
        fd = os.open(folder.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        return [(f"{folder.name}/{e.path}", e.stat.st_size, e.stat.st_mtime)
                for e in WorkspaceWalk(fd, max_entries=limit) if stat.S_ISREG(e.stat.st_mode)]
    finally:
        os.close(fd)


def listing(folders: list[AttachedFolder], since: float | None, limit: int) -> list[str]:
    """What the planner sees: one line per folder, then its files newest first (name, size, modified), at
    most ``limit`` files in all; files modified after ``since`` (the schedule's previous fire) marked new."""
    if not folders:
        return []
    lines = []
    files = []
    for folder in folders:
        access = "read-write" if folder.writable else "read-only"
        lines.append(f"folder {folder.name}/ ({access}; in code: /workspace/{folder.name})")
        files += folder_files(folder)
    files.sort(key=lambda f: (-f[2], f[0]))
    for name, size, mtime in files[:limit]:
        new = " NEW since last run" if since is not None and mtime > since else ""
        lines.append(f"{name} ({size} bytes, modified {_when(mtime)}){new}")
    if len(files) > limit:
        lines.append(f"[... {len(files) - limit} older files not listed]")
    if since is not None:
        lines.append(f"last run: {_when(since)}")
    return lines


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
