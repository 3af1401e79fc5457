"""Settings tables of core parts that are not plugins (``[plugins.daemon]``, ``[plugins.scheduler]``), declared
through the same ``register_settings`` hook plugins use, so they are validated when the config loads."""

from __future__ import annotations

from .hookspecs import hookimpl

PLUGIN_NAME = "core"


@hookimpl
def register_settings(register):
    """The daemon's and the scheduler's tables; both modules import only pydantic at the top."""
    from .daemon.setup import DaemonSettings
    from .schedule.scheduler import SchedulerSettings

    register(DaemonSettings, name="daemon")
    register(SchedulerSettings, name="scheduler")
