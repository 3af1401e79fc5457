"""The daemon's scheduler: schedules fire by only *enqueueing* a run, never by running the loop inline.

APScheduler 3 (BackgroundScheduler, SQLAlchemyJobStore in ``agentd.db``) is the timer. Each timer tick calls
``Scheduler.tick(name)``, which reconciles the schedule with the clock from its own fire records: every trigger
time between the last recorded fire (or the schedule's creation/resume) and now is either on time (within the
grace time: enqueued) or missed (recorded as ``missed``, then the misfire policy skip/once/all decides which
of them still run). The same reconciliation runs for every schedule on start, which is how fires missed while
the daemon was down are found: APScheduler's own misfire handling would coalesce or drop them silently.

A fire is recorded (UNIQUE id ``name@time``) in the transaction that creates its run, so it can never enqueue
twice, even with several daemons ticking the same schedule on one shared journal (PostgreSQL; there each daemon
keeps APScheduler's jobs in memory, rebuilt from the schedules table on start, as APScheduler 3 cannot share a
job store). A fire left ``pending`` (its enqueue failed) is finished on the next start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import AgentdError, ConfigError
from ..records import Goal
from .spec import Misfire, Schedule, fire_id, fire_times, make_trigger, next_fire
from .store import Fire, FireStatus, ScheduleStore

log = logging.getLogger(__name__)
Submit = Callable[[Goal, str], str]
_ACTIVE: dict[str, Scheduler] = {}  # AGENTD_HOME -> the started scheduler (persisted jobs name their home)


class SchedulerSettings(BaseModel):
    """``[plugins.scheduler]`` in configs/agentd.toml."""

    model_config = ConfigDict(extra="forbid")

    sync_interval_s: float = Field(2.0, gt=0)  # how often the daemon picks up schedules changed by the CLI
    jobstore_table: str = "sched_apscheduler_jobs"
    threads: int = Field(4, ge=1)  # timer threads (a tick only records and enqueues)

    @classmethod
    def from_config(cls, config: Any) -> SchedulerSettings:
        try:
            return cls.model_validate(config.plugin_settings("scheduler"))
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"])
            raise ConfigError(f"plugins.scheduler.{key}: {err['msg']} (got {err.get('input')!r})") from None


def _timer_fired(home: str, name: str) -> None:
    """The persisted APScheduler job: a textual reference, so it survives restarts."""
    scheduler = _ACTIVE.get(home)
    if scheduler is not None:
        scheduler.tick(name)


def goal_for(schedule: Schedule, config: Any, since: float | None = None) -> Goal:
    """The unattended Goal a fire enqueues: the schedule's allowlist, budgets, model and attached folders
    (checked again: a folder may be gone); ``since``: the previous fire's time, for "the new files"."""
    from ..folders import attach

    budgets = config.loop.budgets(
        max_steps=schedule.max_steps, max_tokens=schedule.max_tokens, max_seconds=schedule.max_seconds
    )
    return Goal(
        text=schedule.goal,
        model=schedule.model,
        budgets=budgets,
        memory=schedule.memory,
        schedule=schedule.name,
        allowed_tools=list(schedule.allowed_tools),
        notify=list(schedule.notify),
        dirs=attach(list(schedule.dirs), config) if schedule.dirs else [],
        no_undo=schedule.no_undo,
        since=since,
    )


class Scheduler:
    """Fires schedules into the daemon's queue. ``clock`` is injectable so tests control time."""

    def __init__(
        self,
        config: Any,
        journal: Any,
        submit: Submit,
        *,
        tools: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.journal = journal
        self.submit = submit
        self.clock = clock
        self.settings = SchedulerSettings.from_config(config)
        self.store = ScheduleStore(journal)
        self._tools = tools
        self._locks: dict[str, threading.Lock] = {}  # per schedule: ticks (timer threads) vs run_now (API)
        self._locks_guard = threading.Lock()
        # Held while calling into APScheduler, never together with a schedule's lock: APScheduler calls back (listeners,
        # jobs) while holding its own locks, so nesting ours around its calls could deadlock.
        self._sync_lock = threading.Lock()
        self._aps: Any = None
        self._synced: dict[str, str] = {}
        self._revision: Any = None
        self.import_report: dict[str, list[str]] = {}
        self.started_at: float | None = None

    # -- life cycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Import the schedules file, finish pending fires, catch up missed ones, then start the timer."""
        from apscheduler.events import EVENT_JOB_MISSED
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.jobstores.memory import MemoryJobStore
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
        from apscheduler.schedulers.background import BackgroundScheduler

        try:
            self.import_file()
        except Exception as exc:  # noqa: BLE001 - a broken plugin or file must not stop stored schedules firing
            log.exception("schedules file not imported")
            self.import_report = {"errors": [f"schedules file not imported: {exc}"]}
        self.catch_up()
        jobstore: Any = MemoryJobStore()  # a shared journal: APScheduler's store is one scheduler's (see below)
        if self.journal.dialect == "sqlite":
            url = f"sqlite:///{self.journal.path}"
            jobstore = SQLAlchemyJobStore(
                url=url, tablename=self.settings.jobstore_table, engine_options={"connect_args": {"timeout": 30}}
            )
        self._aps = BackgroundScheduler(
            jobstores={"default": jobstore, "internal": MemoryJobStore()},
            executors={"default": ThreadPoolExecutor(self.settings.threads)},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=timezone.utc,
        )
        self._aps.add_listener(self._on_missed, EVENT_JOB_MISSED)
        _ACTIVE[str(self.config.home)] = self
        self._aps.start(paused=True)  # persisted jobs carry stale run times: re-time them before anything runs
        self.sync_jobs()
        self._aps.resume()
        self._aps.add_job(
            self.poll, "interval", seconds=self.settings.sync_interval_s, id="sched-sync", jobstore="internal"
        )
        self.started_at = self.clock()
        log.info("scheduler started with %d schedule(s)", len(self._synced))

    def shutdown(self) -> None:
        """Stop the timer (a tick in progress finishes its record and enqueue first)."""
        if _ACTIVE.get(str(self.config.home)) is self:
            del _ACTIVE[str(self.config.home)]
        if self._aps is not None and self._aps.running:
            self._aps.shutdown(wait=True)
        self._aps = None

    @property
    def tools(self) -> Any:
        """The tool registry, for validating allowlists (built on first use when the daemon gave none)."""
        if self._tools is None:
            from ..app import build_tools
            from ..plugins import get_plugin_manager

            self._tools = build_tools(self.config, get_plugin_manager(self.config))
        return self._tools

    def import_file(self) -> dict[str, list[str]]:
        """Bring ``configs/schedules.toml`` into the store; conflicts and errors are kept for status()."""
        from .file import import_file

        self.import_report = import_file(self.store, self.config, self.tools, now=self.clock()).to_dict()
        return self.import_report

    # -- the timer --------------------------------------------------------------------------------
    def sync_jobs(self) -> None:
        """Make APScheduler's persisted jobs match the store (added, changed, paused, removed schedules)."""
        if self._aps is None:
            return
        with self._sync_lock:
            self._revision = self.store.revision()
            wanted = {s.name: s for s in self.store.all() if not s.paused}
            for job in self._aps.get_jobs(jobstore="default"):
                name = job.id.removeprefix("schedule:")
                if name not in wanted:
                    self._aps.remove_job(job.id, jobstore="default")
                    self._synced.pop(name, None)
            now = self.clock()
            for name, schedule in wanted.items():
                trigger = make_trigger(schedule)
                key = repr(sorted(schedule.spec().items())) + f"{schedule.anchor_at}"
                if self._synced.get(name) == key:
                    continue
                self._synced[name] = key
                if next_fire(trigger, now) is None:  # an --at time that has passed: nothing left to time
                    continue
                self._aps.add_job(
                    _timer_fired, trigger=trigger, args=[str(self.config.home), name], id=f"schedule:{name}",
                    name=name, jobstore="default", replace_existing=True, coalesce=True, max_instances=1,
                    misfire_grace_time=max(1, int(schedule.grace_s)),
                )

    def poll(self) -> None:
        """Pick up schedules the CLI changed while the daemon runs."""
        if self.store.revision() != self._revision:
            self.sync_jobs()

    def _on_missed(self, event: Any) -> None:
        """APScheduler found a run time past its grace (the process was stalled): record it and apply the policy."""
        name = event.job_id.removeprefix("schedule:")
        # Listeners run inside APScheduler's locks: tick on a thread of our own.
        threading.Thread(target=self.tick, args=(name,), name=f"sched-missed-{name}", daemon=True).start()

    # -- firing -----------------------------------------------------------------------------------
    def _lock_for(self, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(name, threading.Lock())

    def catch_up(self) -> dict[str, list[Fire]]:
        """On start: finish pending fires, then reconcile every schedule with the clock."""
        self._finish_pending()
        return {s.name: self.tick(s.name) for s in self.store.all() if not s.paused}

    def tick(self, name: str) -> list[Fire]:
        """Record (and enqueue per policy) every fire of ``name`` due since its last recorded one.

        The fires found in one tick are one batch. All but the latest are late (a later one is already due),
        as is any past the grace time; the misfire policy picks which run: ``all`` every one, ``once`` the
        latest, ``skip`` the latest if it is on time. A fire overlaps only with a run from before its batch,
        never with one of its own batch.
        """
        with self._lock_for(name):
            schedule = self.store.get(name)
            if schedule is None or schedule.paused:
                return []
            now = self.clock()
            last = self.store.last_fire(name)
            anchor = max(schedule.anchor_at, last.scheduled_at if last else 0.0)
            due = fire_times(make_trigger(schedule), anchor, now)
            if not due:
                return []
            late = {t for t in due[:-1]} | {t for t in due[-1:] if now - t.timestamp() > schedule.grace_s}
            run = self._policy_picks(schedule, due, late)
            before = self.store.active_runs(name)  # looked up once: the batch's own runs are not overlaps
            fires: list[Fire] = []
            for t in due:
                kind = "catch_up" if t in late else "timer"
                if t not in run:
                    detail = f"missed (policy {schedule.misfire.value})"
                    fire = self._record(schedule, t, FireStatus.missed, kind, t in late, detail)
                else:
                    fire = self._fire(schedule, t, kind, missed=t in late, active=before)
                if fire is not None:
                    fires.append(fire)
            return fires

    @staticmethod
    def _policy_picks(schedule: Schedule, due: list[datetime], late: set[datetime]) -> set[datetime]:
        if schedule.misfire == Misfire.all:
            return set(due)
        if schedule.misfire == Misfire.once:
            return {due[-1]}
        return {due[-1]} - late  # skip

    def _record(
        self, schedule: Schedule, when: datetime, status: FireStatus, kind: str, missed: bool, detail: str = "",
        fid: str | None = None,
    ) -> Fire | None:
        fire = Fire(
            id=fid or fire_id(schedule.name, when), schedule=schedule.name, scheduled_at=when.timestamp(),
            status=status, kind=kind, missed=missed, run_id=None, detail=detail, recorded_at=self.clock(),
        )
        return fire if self.store.record_fire(fire) else None

    def _fire(
        self, schedule: Schedule, when: datetime, kind: str, missed: bool = False,
        active: list[dict[str, Any]] | None = None, fid: str | None = None,
    ) -> Fire | None:
        """Record then enqueue one fire, unless a run of the schedule (``active``) is still going."""
        if active:
            detail = f"run {active[0]['id']} was still {active[0]['status']}"
            return self._record(schedule, when, FireStatus.skipped_overlap, kind, missed, detail, fid)
        with self.journal._tx():  # the fire's record and its run commit together: daemons sharing the journal
            fire = self._record(schedule, when, FireStatus.pending, kind, missed, "", fid)
            if fire is None:
                return None  # this fire was handled before (here or by another daemon)
            return self._enqueue(schedule, fire)

    def _enqueue(self, schedule: Schedule, fire: Fire) -> Fire:
        try:
            goal = goal_for(schedule, self.config, self._previous_fire(fire))
        except ConfigError as exc:  # an attached folder gone or no longer allowed: this fire cannot run; say why
            fire.status, fire.detail = FireStatus.missed, f"not run: {exc}"
            self.store.update_fire(fire.id, FireStatus.missed, None, fire.detail)
            return fire
        try:
            fire.run_id = self.submit(goal, fire.id)
        except Exception:  # noqa: BLE001 - the fire stays pending and is retried on the next start
            log.exception("schedule %s: could not enqueue fire %s", schedule.name, fire.id)
            return fire
        fire.status = FireStatus.enqueued
        self.store.update_fire(fire.id, FireStatus.enqueued, fire.run_id, fire.detail)
        return fire

    def _previous_fire(self, fire: Fire) -> float | None:
        """When the schedule last fired a run before ``fire`` (None: never): its "since last run"."""
        earlier = [f.scheduled_at for f in self.store.fires(fire.schedule, status=FireStatus.enqueued.value)
                   if f.scheduled_at < fire.scheduled_at and f.id != fire.id]
        return max(earlier, default=None)

    def _finish_pending(self) -> None:
        """Fires recorded but not enqueued (a crash in between): link the run if it was made, else enqueue."""
        for fire in self.store.fires(status=FireStatus.pending.value):
            schedule = self.store.get(fire.schedule)
            orphan = self.store.orphan_run(fire.schedule)
            if orphan is not None:
                self.store.update_fire(fire.id, FireStatus.enqueued, orphan, "linked after a restart")
            elif schedule is None:
                self.store.update_fire(fire.id, FireStatus.missed, None, "schedule removed before it was enqueued")
            else:
                self._enqueue(schedule, fire)

    def run_now(self, name: str) -> str:
        """Enqueue a run of ``name`` now (``agentd schedule run``); refused while its previous run is going."""
        with self._lock_for(name):
            schedule = self.store.require(name)
            active = self.store.active_runs(name)
            if active:
                raise AgentdError(
                    f"schedule {name!r} already has run {active[0]['id']} {active[0]['status']}: wait for it, "
                    f"or `agentd runs cancel` / `approve` / `deny` it"
                )
            now = datetime.fromtimestamp(self.clock(), timezone.utc)
            fid = f"{name}@manual-{now.isoformat(timespec='microseconds')}"
            fire = self._fire(schedule, now, "manual", fid=fid)
            if fire is None or fire.run_id is None:
                raise AgentdError(f"schedule {name!r}: the run could not be queued; see the daemon log")
            return fire.run_id

    # -- status -----------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """For ``agentd daemon status`` and ``schedule list``: every schedule with its next and last fire."""
        now = self.clock()
        return {
            "running": self._aps is not None and self._aps.running,
            "started_at": self.started_at,
            "schedules": [describe(self.store, s, now) for s in self.store.all()],
            "file": self.import_report,
        }


def describe(store: ScheduleStore, schedule: Schedule, now: float) -> dict[str, Any]:
    """One schedule as `schedule list` shows it: trigger, next run, last run and outcome, missed count."""
    nxt = None if schedule.paused else next_fire(make_trigger(schedule), max(now, schedule.anchor_at))
    last = store.last_run_fire(schedule.name)
    outcome = store.run_status(last.run_id) if last and last.run_id else None
    return schedule.to_dict() | {
        "next_run": nxt.isoformat() if nxt else None,
        "last_run": {"fire": last.id, "run_id": last.run_id, "at": last.recorded_at, "status": outcome} if last else None,
        "missed": store.missed_count(schedule.name),
        "overlaps": len(store.fires(schedule.name, status=FireStatus.skipped_overlap.value)),
    }
