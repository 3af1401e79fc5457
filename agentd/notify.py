"""Notifications: a scheduled run that needs its owner (failed, unverified, waiting for approval) tells them.

Delivery is Apprise: one URL per destination (``ntfys://topic``, ``mailto://...``, ``slack://...``,
``json://host/path`` for any webhook). URLs come from the config's top-level ``notify = [...]`` (every schedule)
and from each schedule's own ``notify`` list; the goal carries the schedule's list so a run notifies the
destinations its schedule had when it fired. Apprise is imported only when something is validated or sent.
"""

from __future__ import annotations

import logging
from typing import Any

from .errors import ConfigError

log = logging.getLogger(__name__)

# Outcomes the owner of an unattended run must hear about. A cancelled run was someone's own decision.
NOTIFY_STATUSES = {
    "failed": "failed",
    "stopped": "stopped by a budget",
    "awaiting_approval": "waits for your approval",
}


def check_urls(urls: list[str], where: str) -> None:
    """ConfigError naming the first URL Apprise does not understand (before anything is stored)."""
    import apprise

    for url in urls:
        if not isinstance(url, str) or apprise.Apprise.instantiate(url) is None:
            raise ConfigError(
                f"{where}: notify URL {url!r} is not one Apprise understands; write e.g. "
                f'"ntfys://my-topic", "mailto://user:pass@example.com" or "json://host/path"'
            )


def reason_to_notify(outcome: dict[str, Any]) -> str | None:
    """Why this outcome needs its owner, or None when it does not."""
    if outcome.get("status") in NOTIFY_STATUSES:
        return NOTIFY_STATUSES[outcome["status"]]
    if outcome.get("verified") is False:
        return "finished, but its result could not be verified"
    return None


def message(goal: Any, outcome: dict[str, Any], reason: str) -> tuple[str, str]:
    """Title and body: which schedule and run, what happened, and the command that shows or continues it."""
    run_id = outcome.get("run_id", "?")
    title = f"agentd: schedule {goal.schedule} {reason}"
    lines = [f"goal: {goal.text}", f"run {run_id}: {outcome.get('status')} ({outcome.get('stop_reason') or '-'})"]
    if outcome.get("detail"):
        lines.append(str(outcome["detail"]))
    if outcome.get("status") == "awaiting_approval":
        lines.append(f"approve: agentd runs approve {run_id}   deny: agentd runs deny {run_id}")
    lines.append(f"details: agentd runs show {run_id}")
    return title, "\n".join(lines)


def send(urls: list[str], title: str, body: str) -> dict[str, str]:
    """Deliver to every URL; returns what went wrong per URL that failed (never raises)."""
    import apprise

    problems = {}
    for url in urls:
        sender = apprise.Apprise()
        if not sender.add(url):
            problems[url] = "not a valid Apprise URL"
        elif not sender.notify(title=title, body=body):
            problems[url] = "delivery failed (Apprise logged why)"
    return problems


def notify_outcome(config: Any, goal: Any, outcome: dict[str, Any]) -> list[str]:
    """Tell a scheduled run's owner when it needs them; returns the URLs notified (empty: nothing sent)."""
    reason = reason_to_notify(outcome)
    if reason is None or not goal.schedule:
        return []
    urls = list(dict.fromkeys([*config.notify, *(goal.notify or [])]))
    if not urls:
        return []
    title, body = message(goal, outcome, reason)
    problems = send(urls, title, body)
    for url, problem in problems.items():
        log.warning("run %s: notification to %s not delivered: %s", outcome.get("run_id"), _redact(url), problem)
    sent = [u for u in urls if u not in problems]
    if sent:
        log.info("run %s (%s): notified %s", outcome.get("run_id"), reason, ", ".join(map(_redact, sent)))
    return sent


def _redact(url: str) -> str:
    """A URL fit for a log line: the scheme and host, never credentials or tokens in the path."""
    scheme, _, rest = url.partition("://")
    host = rest.split("@")[-1].split("/")[0].split("?")[0]
    return f"{scheme}://{host}"
