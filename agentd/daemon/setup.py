"""The daemon's setup: its settings (``[plugins.daemon]``), the runtime files it keeps in AGENTD_HOME (lock, pid,
socket, log), the systemd unit that starts it, and what `agentd doctor` checks of it. The CLI's daemon commands
use these without loading the daemon itself (server.py)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import AgentdError, ConfigError


class DaemonSettings(BaseModel):
    """``[plugins.daemon]``: how the daemon serves and works its queue."""

    model_config = ConfigDict(extra="forbid")

    workers: int = Field(2, ge=1, le=64)  # runs driven at the same time
    # Where runs execute: "threads" of the daemon (models loaded once, shared) or "processes", one per worker
    # (each its own core and its own models; memory must then be a Chroma server). agentd.daemon.hosts says more.
    run_in: Literal["threads", "processes"] = "threads"
    drain_timeout_s: float = Field(30.0, ge=0)  # on SIGTERM: how long running runs may go on before cancel
    resume: bool = True  # after a crash: resume unfinished runs (true) or fail them with daemon_crash
    tcp_host: str = ""  # "" = no TCP listener; e.g. "127.0.0.1"
    tcp_port: int = Field(0, ge=0, le=65535)
    token_env: str = "AGENTD_TOKEN"  # variable holding the bearer token the TCP listener requires
    ui_port: int = Field(0, ge=0, le=65535)  # the dashboard's loopback port (`agentd ui`); 0 = any free port
    log_level: str = Field("info", pattern="^(debug|info|warning|error|critical)$")
    # How long `agentd goal` waits for a daemon that went away to come back before exiting 5 ("lost").
    reconnect_s: float = Field(30.0, gt=0, le=3600)


def load_settings(config: Any) -> DaemonSettings:
    """Validate ``[plugins.daemon]``; a bad key or value is a ConfigError naming it."""
    try:
        return DaemonSettings.model_validate(config.plugin_settings("daemon"))
    except ValidationError as exc:
        problems = "; ".join(
            f"plugins.daemon.{'.'.join(str(p) for p in e['loc'])}: "
            + ("unknown key" if e["type"] == "extra_forbidden" else f"{e['msg']} (got {e.get('input')!r})")
            for e in exc.errors()
        )
        raise ConfigError(f"invalid daemon settings: {problems}") from None


@dataclass(frozen=True)
class Paths:
    """Where the daemon keeps its runtime files inside AGENTD_HOME."""

    home: Path

    @property
    def socket(self) -> Path:
        return self.home / "agentd.sock"

    @property
    def lock(self) -> Path:
        return self.home / "agentd.lock"

    @property
    def pid(self) -> Path:
        return self.home / "agentd.pid"

    @property
    def log(self) -> Path:
        return self.home / "logs" / "daemon.log"


class AlreadyRunning(AgentdError):
    """Another daemon holds this AGENTD_HOME's lock."""


def acquire_lock(paths: Paths) -> int:
    """Hold the home's lock for the life of the process (the kernel drops it if the process dies)."""
    paths.home.mkdir(parents=True, exist_ok=True)
    fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AlreadyRunning(
            f"a daemon is already running for {paths.home} (pid {read_pid(paths) or '?'}); "
            "`agentd daemon status` shows it, `agentd daemon stop` stops it"
        ) from None
    return fd


def read_pid(paths: Paths) -> int | None:
    try:
        return int(paths.pid.read_text().strip())
    except (OSError, ValueError):
        return None


def bind_unix_socket(path: Path) -> socket.socket:
    """A listening socket only this user can connect to: 0600 from the moment it exists (umask at bind)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # we hold the lock, so any socket file here is stale
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(128)
    return sock


def systemd_unit(config: Any) -> str:
    """A systemd user unit that starts the daemon at login (or at boot with `loginctl enable-linger`).

    No ``After=network-online.target``: the user manager cannot see that system target, so it only misleads;
    API models and web tools report an unreachable network per run instead.
    """
    return (
        "[Unit]\nDescription=agentd agent daemon\n\n"
        "[Service]\nType=simple\n"
        f"Environment=AGENTD_HOME={config.home}\n"
        f"ExecStart={sys.executable} -m agentd daemon run\n"
        "ExecReload=/bin/kill -HUP $MAINPID\n"  # `systemctl --user reload agentd` = `agentd daemon reload`
        f"KillSignal=SIGTERM\nTimeoutStopSec={int(load_settings(config).drain_timeout_s) + 30}\n"
        "Restart=on-failure\nRestartSec=5\n\n"
        "[Install]\nWantedBy=default.target\n"
    )


def doctor_checks(config: Any) -> list[tuple[str, bool, str]]:
    """For `agentd doctor`: the daemon's settings, whether one is up, and the web stack it needs."""
    checks: list[tuple[str, bool, str]] = []
    try:
        settings = load_settings(config)
        kind = "worker processes" if settings.run_in == "processes" else "workers"
        checks.append(("daemon settings", True, f"{settings.workers} {kind}, resume={settings.resume}"))
    except ConfigError as exc:
        checks.append(("daemon settings", False, str(exc)))
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        checks.append(("daemon API", False, f"{exc}; run `pip install fastapi uvicorn`"))
    from .client import daemon_running

    up = daemon_running(config)
    advice = f"up on {Paths(config.home).socket}" if up else "not running: `agentd daemon start` (optional)"
    checks.append(("daemon", True, advice))
    return checks
