"""Schedules: specs (cron/every/at, misfire policy), their store and fires, the APScheduler driver, the report and
``schedules.toml``. A fire only enqueues a run.
"""

from .._lazy import exports

__all__ = ["Schedule", "ScheduleStore", "Scheduler", "build_report"]
__getattr__ = exports(
    __name__, {"Schedule": "spec", "ScheduleStore": "store", "Scheduler": "scheduler", "build_report": "report"}
)
