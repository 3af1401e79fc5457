"""Notifications through Apprise to a real HTTP receiver on loopback: who is told, when, and with what."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from receivers import JsonReceiver

from agentd.cli import cli
from agentd.config import load_config
from agentd.errors import ConfigError
from agentd.notify import check_urls, notify_outcome
from agentd.records import Goal


def _outcome(status: str, **extra: object) -> dict:
    return {"run_id": "r-123", "status": status, "stop_reason": "gave_up", "detail": "the page was gone"} | extra


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (_outcome("failed"), "failed"),
        (_outcome("stopped", stop_reason="max_steps"), "stopped by a budget"),
        (_outcome("awaiting_approval", stop_reason=None), "waits for your approval"),
        (_outcome("succeeded", verified=False), "could not be verified"),
    ],
)
def test_scheduled_run_needing_its_owner_is_delivered(home, outcome, expected):
    config = load_config()
    with JsonReceiver() as receiver:
        goal = Goal(text="Summarise the feed", schedule="nightly", notify=[receiver.url])
        sent = notify_outcome(config, goal, outcome)
        assert receiver.arrived.wait(10)
    assert sent == [receiver.url]
    (body,) = receiver.bodies
    assert "schedule nightly" in body["title"] and expected in body["title"]
    assert "r-123" in body["message"] and "Summarise the feed" in body["message"]
    if outcome["status"] == "awaiting_approval":
        assert "agentd runs approve r-123" in body["message"]


def test_global_and_schedule_urls_are_both_told_once(home):
    with JsonReceiver() as a, JsonReceiver() as b:
        config = load_config(overrides={"notify": [a.url, b.url]})
        goal = Goal(text="g", schedule="s", notify=[b.url])  # b is in both lists: told once
        assert notify_outcome(config, goal, _outcome("failed")) == [a.url, b.url]
        assert a.arrived.wait(10) and b.arrived.wait(10)
    assert len(a.bodies) == 1 and len(b.bodies) == 1


@pytest.mark.parametrize(
    ("goal", "outcome"),
    [
        (Goal(text="g", schedule="s"), _outcome("succeeded")),  # fine
        (Goal(text="g", schedule="s"), _outcome("succeeded", verified=True)),
        (Goal(text="g", schedule="s"), _outcome("cancelled")),  # the user's own decision
        (Goal(text="g"), _outcome("failed")),  # not scheduled: the user watched it
    ],
)
def test_runs_that_need_nobody_send_nothing(home, goal, outcome):
    with JsonReceiver() as receiver:
        config = load_config(overrides={"notify": [receiver.url]})
        goal.notify = [receiver.url]
        assert notify_outcome(config, goal, outcome) == []
    assert receiver.bodies == []


def test_unreachable_receiver_is_reported_not_raised(home, caplog):
    config = load_config(overrides={"notify": ["json://127.0.0.1:9/nothing-listens"]})
    assert notify_outcome(config, Goal(text="g", schedule="s"), _outcome("failed")) == []
    assert "not delivered" in caplog.text and "127.0.0.1:9" in caplog.text


def test_config_show_masks_credentials_in_notify_urls(home):
    (home / "configs").mkdir()
    (home / "configs" / "agentd.toml").write_text('notify = ["mailto://me:s3cret@example.com", "ntfys://topic"]\n')
    shown = CliRunner().invoke(cli, ["config", "show", "--json"]).output
    assert "s3cret" not in shown and json.loads(shown)["notify"] == ["mailto://***@example.com", "ntfys://topic"]


def test_doctor_checks_the_global_urls(home):
    from agentd.cli.commands.system import run_checks

    (home / "configs").mkdir()
    (home / "configs" / "agentd.toml").write_text('notify = ["ntfys://my-topic", "nonsense"]\n[plugins]\nload = []\n')
    checks = {name: (ok, detail) for name, ok, detail in run_checks()}
    assert checks["notify"] == (False, checks["notify"][1]) and "notify URL 'nonsense'" in checks["notify"][1]


def test_bad_urls_are_config_errors_before_anything_is_stored(home):
    with pytest.raises(ConfigError, match="notify URL 'nonsense'"):
        check_urls(["nonsense"], "notify")
    result = CliRunner().invoke(cli, ["schedule", "add", "n", "Write x", "--every", "1h", "--notify", "nonsense"])
    assert result.exit_code == 2
    assert "notify URL 'nonsense' is not one Apprise understands" in result.output
    listed = json.loads(CliRunner().invoke(cli, ["schedule", "list", "--json"]).output)
    assert listed["schedules"] == []
