"""AGENTD_HOME on disk: owner-only whatever the umask, and writable before anything is served from it.

Everything agentd keeps (the journal and its WAL, logs, workspaces and the files tools write there, memory,
configs with API keys) holds the user's goals and answers, so it is owner-only: 0700 folders, files without
group or other bits. A process that opens a home sets its umask to 0077, so files created later (by SQLite, the
log handler, sandboxed code) are private too; a home made loose by an older agentd is tightened once, with a
warning, on the next start. ``loose_entries`` is what `agentd doctor` flags.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError

PRIVATE_UMASK = 0o077
DEFAULT_HOME = Path("~/.local/share/agentd")
SUBFOLDERS = ("configs", "workspaces", "memory", "logs")
# Top-level entries agentd owns; a home can be a source checkout, whose other files are left alone.
OWNED = (*SUBFOLDERS, "plugins", "cache", "agentd.db", "agentd.db-wal", "agentd.db-shm", "agentd.db-journal",
         "agentd.lock", "agentd.pid", "agentd.sock")


class HomeError(ConfigError):
    """AGENTD_HOME cannot be used: not writable, full, or its journal is read-only (exit 2)."""


def resolve_home(env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Path:
    """AGENTD_HOME, else the current folder when it is an agentd checkout, else ~/.local/share/agentd."""
    values: Mapping[str, str] = os.environ if env is None else env
    if values.get("AGENTD_HOME"):
        return Path(values["AGENTD_HOME"]).expanduser().resolve()
    cwd = cwd or Path.cwd()
    if (cwd / "configs" / "agentd.toml").is_file() and (cwd / "workspaces").is_dir():
        return cwd.resolve()
    return DEFAULT_HOME.expanduser()


def config_mtime_ns(home: Path) -> int:
    """The newest modification time of configs/agentd.toml and configs/schedules.toml (0 when neither exists)."""
    times = []
    for name in ("agentd.toml", "schedules.toml"):
        with contextlib.suppress(OSError):
            times.append((Path(home) / "configs" / name).stat().st_mtime_ns)
    return max(times, default=0)


def prepare_home(home: Path) -> list[Path]:
    """Create the home owner-only, set this process's umask to 0077, tighten what is loose; returns what was."""
    os.umask(PRIVATE_UMASK)
    try:
        for folder in (home, *(home / sub for sub in SUBFOLDERS)):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        tightened = [path for path in loose_entries(home) if _tighten(path)]
    except OSError as exc:
        raise HomeError(f"cannot set up AGENTD_HOME {home}: {exc.strerror or exc}; {_what_to_do(home)}") from None
    if tightened:
        _log().warning(
            "AGENTD_HOME %s was readable by other users: removed group/other permissions from %d entr%s "
            "(e.g. %s); from now on everything in it is owner-only",
            home, len(tightened), "y" if len(tightened) == 1 else "ies", tightened[0],
        )
    return tightened


def loose_entries(home: Path) -> list[Path]:
    """The home and every agentd entry in it that group or other users may read, write or enter."""
    found = [home] if _loose(home) else []
    folders: list[str] = []
    for name in OWNED:
        top = home / name
        if top.is_symlink() or not top.exists():
            continue  # a link's target is not ours to change
        found += [top] if _loose(top) else []
        if top.is_dir():
            folders.append(str(top))
    while folders:  # os.scandir: one syscall per entry (lstat cached on the DirEntry), never following links
        with os.scandir(folders.pop()) as entries:
            for entry in entries:
                if entry.is_symlink():
                    continue
                if entry.stat(follow_symlinks=False).st_mode & 0o077:
                    found.append(Path(entry.path))
                if entry.is_dir(follow_symlinks=False):
                    folders.append(entry.path)
    return found


def check_writable(home: Path, journal: Path) -> None:
    """Raise HomeError unless the home takes a real write and the journal files can be written."""
    probe = home / f".agentd-write-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"\0" * 65536)  # a full disk fails here or at fsync, an empty file would not
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise HomeError(f"AGENTD_HOME {home} is not writable ({exc.strerror or exc}); {_what_to_do(home)}") from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    for path in (journal, journal.with_name(journal.name + "-wal"), journal.with_name(journal.name + "-shm")):
        # access() also refuses an immutable (chattr +i) file, even to root.
        if path.exists() and not os.access(path, os.W_OK):
            raise HomeError(
                f"the journal file {path} cannot be written (read-only or immutable): "
                f"fix its permissions (chmod u+w, chattr -i) or point AGENTD_HOME elsewhere"
            )


def _loose(path: Path) -> bool:
    try:
        return bool(path.lstat().st_mode & 0o077)
    except FileNotFoundError:
        return False


def _tighten(path: Path) -> bool:
    try:
        mode = stat.S_IMODE(path.lstat().st_mode)
        os.chmod(path, mode & 0o700)
    except FileNotFoundError:  # a file a running tool just removed
        return False
    except PermissionError:  # another user's file (placed there by hand): doctor keeps flagging it
        _log().warning("cannot make %s owner-only: it belongs to another user", path)
        return False
    return True


def _what_to_do(home: Path) -> str:
    return f"free some space or fix its permissions, or set AGENTD_HOME to a folder you own (now {home})"


def _log() -> Any:
    import logging  # here: `agentd --help` and `agentd goal` resolve the home and log nothing

    return logging.getLogger(__name__)


def write_private(path: Path, chunks: Iterable[bytes]) -> None:
    """Replace ``path`` whole with ``chunks``, owner-only (0600 whatever the umask): written under a temporary
    name beside it (never through a link there) and renamed over, so a reader sees the old file or the new one,
    never half of one. OSError (a full or read-only disk) leaves no temporary file behind."""
    import threading

    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


# -- checked cache files (a fused embedding model, llama.cpp's prompt state) -----------------------------------
def write_checked(path: Path, magic: bytes, header: Mapping[str, Any], payload: Iterable[bytes]) -> None:
    """A cache file agentd checks before it trusts one: ``magic``, a length-prefixed JSON ``header`` (the
    ``key`` it was made for and its payload's sizes and checksums, which the caller puts there), then
    ``payload``. Written whole and owner-only (write_private); OSError when the disk refuses."""
    import json
    import struct

    head = json.dumps(dict(header)).encode()
    write_private(path, (magic, struct.pack("<I", len(head)), head, *payload))


def read_checked(path: Path, magic: bytes, key: str, read_payload: Any, what: str) -> Any:
    """What ``read_payload(file, header)`` makes of a file write_checked wrote for ``key``; None when there is
    none. One that is not such a file, was made for another key, or whose payload does not check out
    (``read_payload`` raises ValueError) is removed with a warning naming ``what``, so its maker builds it
    again. A file read is touched: the newest-used ones are those keep_newest keeps."""
    import json
    import struct

    try:
        with open(path, "rb") as f:
            if f.read(len(magic)) != magic:
                raise ValueError(f"not a {what} file")
            (size,) = struct.unpack("<I", f.read(4))
            header = json.loads(f.read(size))
            if header.get("key") != key:
                raise ValueError("made for another key (model file, prompt or version)")
            found = read_payload(f, header)
        with contextlib.suppress(OSError):
            os.utime(path)
        return found
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, struct.error) as exc:
        _log().warning("ignoring the %s %s (%s); it will be rebuilt", what, path, exc)
        with contextlib.suppress(OSError):
            path.unlink()
        return None


def keep_newest(directory: Path, pattern: str, keep: int) -> None:
    """Remove all but the ``keep`` most recently used files matching ``pattern`` (a clean-up that may race
    another process doing the same: never raises)."""
    with contextlib.suppress(OSError):
        files = sorted(directory.glob(pattern), key=lambda p: p.stat().st_mtime_ns, reverse=True)
        for old in files[keep:]:
            old.unlink()
