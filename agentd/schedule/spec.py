"""What a schedule is: its record, its trigger (cron, every, at) and the fire times it yields.

Everything here is pure: parsing and validation raise ConfigError with a message saying what to fix, before
anything is stored. APScheduler is imported lazily (only when a trigger is built).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any

from ..errors import ConfigError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# Standard crontab numbers Sunday 0 (or 7); APScheduler 3 numbers Monday 0, so numbers become names.
_CRON_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun"]
MAX_FIRES_PER_CATCH_UP = 1000  # a week down with `--every 2s` must not write 300k rows


class Misfire(str, Enum):
    """What happens to fires missed while the daemon was down (each miss is recorded either way)."""

    skip = "skip"  # run none of them
    once = "once"  # run the latest one
    all = "all"  # run every one


@dataclass
class Schedule:
    """A named goal on a trigger; exactly one of cron / every / at is set."""

    name: str
    goal: str
    cron: str = ""
    every: str = ""
    at: str = ""
    timezone: str = "UTC"
    misfire: Misfire = Misfire.once
    grace_s: float = 300.0
    allowed_tools: list[str] = field(default_factory=list)
    notify: list[str] = field(default_factory=list)  # Apprise URLs told when a run needs its owner
    model: str | None = None
    max_steps: int | None = None
    max_tokens: int | None = None
    max_seconds: float | None = None
    memory: bool = True
    dirs: list[str] = field(default_factory=list)  # attached folders, "PATH[:ro|:rw]" (agentd/folders.py)
    no_undo: bool = False
    paused: bool = False
    source: str = "cli"  # cli | file (declared in configs/schedules.toml)
    created_at: float = 0.0
    anchor_at: float = 0.0  # fire times before this are not misses (creation, resume)

    def __post_init__(self) -> None:
        self.misfire = Misfire(self.misfire)

    @property
    def trigger_text(self) -> str:
        """The trigger as a user typed it, e.g. ``cron 0 2 * * * (Europe/Paris)``."""
        kind, value = ("cron", self.cron) if self.cron else ("every", self.every) if self.every else ("at", self.at)
        return f"{kind} {value}" + (f" ({self.timezone})" if self.timezone != "UTC" else "")

    def spec(self) -> dict[str, Any]:
        """The declarative part (what the TOML file holds): no state, no empty optional keys."""
        data = asdict(self)
        data["misfire"] = self.misfire.value
        for key in ("paused", "source", "created_at", "anchor_at", "name"):
            data.pop(key)
        return {k: v for k, v in data.items() if v not in ("", None)}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"misfire": self.misfire.value, "trigger": self.trigger_text}


def parse_duration(text: str, what: str = "duration") -> float:
    """``"30m"``, ``"1h30m"``, ``"2s"``, ``"90"`` (seconds) -> seconds."""
    text = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = _DURATION_RE.findall(text)
    if not parts or _DURATION_RE.sub("", text).strip():
        raise ConfigError(f"{what} {text!r} is not a duration: write e.g. 30s, 30m, 2h, 1d or 1h30m")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def zone(name: str) -> Any:
    """A ZoneInfo for an IANA name, or a ConfigError naming it."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown timezone {name!r}: use an IANA name such as UTC or Europe/Paris") from None


def _cron_fields(expr: str) -> dict[str, str]:
    fields = expr.split()
    if len(fields) == 5:
        names = ["minute", "hour", "day", "month", "day_of_week"]
    elif len(fields) == 6:  # an agentd extension: seconds first, e.g. "*/2 * * * * *"
        names = ["second", "minute", "hour", "day", "month", "day_of_week"]
    else:
        raise ConfigError(
            f'cron {expr!r} needs 5 fields "minute hour day month weekday" (e.g. "0 2 * * *"), '
            f"or 6 with seconds first; it has {len(fields)}"
        )
    values = dict(zip(names, fields, strict=True))
    values["day_of_week"] = re.sub(r"\d+", lambda m: _day_name(m.group(), expr), values["day_of_week"])
    return values


def _day_name(number: str, expr: str) -> str:
    if int(number) > 7:
        raise ConfigError(f"cron {expr!r}: weekday {number} is out of range 0-7 (0 and 7 are Sunday)")
    return _CRON_DAYS[int(number)]


def make_trigger(schedule: Schedule) -> Any:
    """The APScheduler 3 trigger for a schedule; ConfigError for any bad expression."""
    tz = zone(schedule.timezone)
    kinds = [k for k in ("cron", "every", "at") if getattr(schedule, k)]
    if len(kinds) != 1:
        raise ConfigError(f"schedule {schedule.name!r} needs exactly one of --cron, --every, --at (got {kinds or 'none'})")
    if schedule.cron:
        from apscheduler.triggers.cron import CronTrigger

        try:
            return CronTrigger(timezone=tz, **_cron_fields(schedule.cron))
        except ValueError as exc:
            raise ConfigError(f"cron {schedule.cron!r} is not valid: {exc}") from None
    if schedule.every:
        from apscheduler.triggers.interval import IntervalTrigger

        seconds = parse_duration(schedule.every, "--every")
        if seconds < 1:
            raise ConfigError(f"--every {schedule.every!r} is shorter than one second")
        start = datetime.fromtimestamp(schedule.created_at or 0, tz)
        return IntervalTrigger(seconds=seconds, start_date=start, timezone=tz)
    from apscheduler.triggers.date import DateTrigger

    return DateTrigger(run_date=parse_at(schedule.at, tz), timezone=tz)


def parse_at(text: str, tz: Any) -> datetime:
    """``"2030-06-01 09:00"`` (in the schedule's timezone) or a full ISO time with an offset."""
    try:
        when = datetime.fromisoformat(text.strip().replace("T", " "))
    except ValueError:
        raise ConfigError(f'--at {text!r} is not a date and time: write e.g. "2030-06-01 09:00"') from None
    return when if when.tzinfo else when.replace(tzinfo=tz)


def fire_times(trigger: Any, after: float, until: float, limit: int = MAX_FIRES_PER_CATCH_UP) -> list[datetime]:
    """The trigger's fire times t with after < t <= until (epoch seconds), oldest first, at most ``limit``."""
    start = datetime.fromtimestamp(after, timezone.utc)
    end = datetime.fromtimestamp(until, timezone.utc)
    out: list[datetime] = []
    prev, now = None, start + timedelta(microseconds=1)
    while len(out) < limit:
        t = trigger.get_next_fire_time(prev, now)
        if t is None or t > end:
            break
        if t > start:
            out.append(t)
        prev, now = t, t + timedelta(microseconds=1)
    return out


def next_fire(trigger: Any, now: float) -> datetime | None:
    """The first fire time after ``now``."""
    times = fire_times(trigger, now, now + 366 * 86400 * 5, limit=1)
    return times[0] if times else None


def fire_id(name: str, when: datetime) -> str:
    """Unique per fire: the schedule name and the scheduled time in UTC."""
    return f"{name}@{when.astimezone(timezone.utc).isoformat(timespec='seconds')}"


def validate(schedule: Schedule, tools: Any = None, config: Any = None) -> Schedule:
    """Check everything a schedule names against the tool registry and config; ConfigError before storing."""
    found = problems(schedule, tools, config)
    if found:
        raise ConfigError(f"schedule {schedule.name!r}: {'; '.join(found)}")
    return schedule


def problems(schedule: Schedule, tools: Any = None, config: Any = None) -> list[str]:
    """Every problem with a schedule (not only the first), each saying what to fix; [] when it is valid."""
    found = []
    if not NAME_RE.match(schedule.name):
        found.append(f"schedule name {schedule.name!r}: use letters, digits, '-', '_' or '.', starting with a letter or digit")
    if not schedule.goal.strip():
        found.append("`goal` (the text to run) is missing or empty")
    try:
        make_trigger(schedule)
    except ConfigError as exc:
        found.append(str(exc))
    if schedule.grace_s < 0:
        found.append("grace must not be negative")
    for key in ("max_steps", "max_tokens", "max_seconds"):
        value = getattr(schedule, key)
        if value is not None and value <= 0:
            found.append(f"{key} must be positive (got {value})")
    if tools is not None:
        found.extend(allowlist_problems(schedule.allowed_tools, tools))
    if config is not None and schedule.model:
        try:
            config.model_config_for(schedule.model)
        except ConfigError as exc:
            found.append(str(exc))
    if config is not None and schedule.dirs:
        from ..folders import attach

        try:
            attach(list(schedule.dirs), config)
        except ConfigError as exc:
            found.append(f"dirs: {exc}")
    if schedule.notify:
        from ..notify import check_urls

        try:
            check_urls(schedule.notify, f"schedule {schedule.name!r}")
        except ConfigError as exc:
            found.append(str(exc))
    return found


def allowlist_problems(allowlist: list[str], tools: Any) -> list[str]:
    """Entries naming no registered tool (or plugin); ``effect:``/``plugin:`` entries when agentd.policy has them."""
    if not allowlist:  # most goals: nothing to check (this runs on every POST /runs)
        return []
    try:
        from .. import policy
    except ImportError:  # no policy module: every entry is a tool name
        policy = None  # type: ignore[assignment]
    names = set(tools.tools)
    plugins = {t.plugin for t in tools.tools.values()}
    problems = policy.allowlist_problems(allowlist) if policy is not None else []
    unknown = [e for e in allowlist if (policy is None or policy.is_name_entry(e)) and e not in names]
    if unknown:
        problems.append(
            f"allows tools that are not registered: {', '.join(sorted(unknown))}; registered: "
            f"{', '.join(sorted(names)) or 'none'} (see `agentd tools list`)"
        )
    no_plugin = [e for e in allowlist if e.startswith("plugin:") and e[len("plugin:"):].strip() not in plugins]
    if policy is not None and no_plugin:
        problems.append(f"no tools come from {', '.join(no_plugin)}; plugins with tools: {', '.join(sorted(plugins))}")
    return problems


def from_spec(name: str, data: dict[str, Any], source: str = "file") -> Schedule:
    """A Schedule from a TOML table; unknown keys and bad values are a ConfigError naming every one."""
    schedule, found = parse_spec(name, data, source)
    if found or schedule is None:
        raise ConfigError(f"schedule {name!r}: {'; '.join(found)}")
    return schedule


def parse_spec(name: str, data: dict[str, Any], source: str = "file") -> tuple[Schedule | None, list[str]]:
    """A Schedule from a TOML table (unknown keys left out) and every problem met parsing it."""
    known = set(Schedule.__dataclass_fields__) - {"name", "paused", "source", "created_at", "anchor_at"} | {"grace"}
    found = []
    unknown = sorted(set(data) - known)
    if unknown:
        found.append(f"unknown keys {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
    values = {k: v for k, v in data.items() if k in known}
    values.setdefault("goal", "")  # a missing goal is reported by problems()
    if "grace" in values:
        try:
            values["grace_s"] = parse_duration(values.pop("grace"), "grace")
        except ConfigError as exc:
            found.append(str(exc))
    try:
        return Schedule(name=name, source=source, **values), found
    except (TypeError, ValueError) as exc:
        return None, [*found, str(exc)]
