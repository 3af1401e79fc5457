"""The ``[plugins.code]`` settings: one pydantic model, validated at the edge, errors naming the key."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SECTION = "plugins.code"


class CodeSettingsError(ValueError):
    """The ``[plugins.code]`` table is invalid; the message names each offending key."""


class LimitSettings(BaseModel):
    """Per-call resource limits (``[plugins.code.limits]``)."""

    model_config = ConfigDict(extra="forbid")

    cpu_s: float = Field(10.0, gt=0)
    wall_s: float = Field(30.0, gt=0)  # default wall-clock limit; a call may ask for up to max_wall_s
    max_wall_s: float = Field(120.0, gt=0)
    memory_mb: int = Field(1024, ge=64)  # address space (RLIMIT_AS)
    file_size_mb: int = Field(64, ge=1)
    max_procs: int = Field(64, ge=4)  # processes and threads of the sandbox uid
    max_open_files: int = Field(256, ge=16)
    tmp_mb: int = Field(64, ge=1)  # size of each private /tmp, /var/tmp and /dev/shm
    workspace_mb: int = Field(1024, ge=1)  # the workspace's size cap, checked after each call


class CodeSettings(BaseModel):
    """Every knob of the code plugin, with the defaults documented in configs/agentd.toml."""

    model_config = ConfigDict(extra="forbid")

    backend: str = "auto"  # auto | bwrap | subprocess | a registered name | "module:Class"
    require_strong: bool = False  # refuse to run code without bubblewrap
    network: bool = False
    network_schedules: list[str] = Field(default_factory=list)  # schedules whose runs get network
    limits: LimitSettings = Field(default_factory=LimitSettings)
    output_chars: int = Field(8000, ge=200)  # per stream; the middle is cut with a note
    python: str = ""  # interpreter; empty = the daemon's own (its whole prefix is mounted read-only)
    python_packages: list[str] = Field(default_factory=list)  # import names that must be importable inside
    extra_ro_paths: list[str] = Field(default_factory=list)  # more host paths readable inside (bwrap)
    session: bool = False  # keep run_python state between calls of one run
    landlock: bool = True  # add Landlock as a second layer where the kernel has it
    max_artifacts: int = Field(50, ge=0)


def load_settings(table: dict[str, Any] | None) -> CodeSettings:
    """Validate the ``[plugins.code]`` table; raise CodeSettingsError naming each bad key."""
    try:
        settings = CodeSettings.model_validate(table or {})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join([SECTION, *map(str, err["loc"])])
            if err["type"] == "extra_forbidden":
                problems.append(f"{key}: unknown key (see docs/sandbox.md)")
            else:
                problems.append(f"{key}: {err['msg']} (got {err.get('input')!r})")
        raise CodeSettingsError("; ".join(problems)) from None
    if settings.limits.wall_s > settings.limits.max_wall_s:
        raise CodeSettingsError(f"{SECTION}.limits.wall_s must not exceed {SECTION}.limits.max_wall_s")
    return settings
