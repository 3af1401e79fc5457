"""Ctrl-C on `agentd goal` while a real daemon runs the goal: the run is cancelled and the terminal shows the
daemon's summary of it (steps, calls, tokens, time), not just a one-line notice."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from terminal import run_in_pty

from agentd.testing import call, feedback, plan

pytestmark = pytest.mark.integration


def test_ctrl_c_through_the_daemon_shows_the_real_summary(tmp_path):
    home = tmp_path / "home"
    (home / "configs").mkdir(parents=True)
    script = home / "script.json"
    replies = [plan(("write notes", "write_file")), call("write_file", path="n.md", content="x"), feedback("done")]
    script.write_text(json.dumps({"replies": replies, "delay_s": 1.0}))
    (home / "configs" / "agentd.toml").write_text(
        f'[models.local]\nprovider = "scripted"\nscript = "{script}"\n\n[plugins]\nload = ["workspace"]\n\n'
        "[plugins.daemon]\nworkers = 1\ndrain_timeout_s = 1.0\n"
    )
    env = os.environ | {"AGENTD_HOME": str(home)}
    agentd = [sys.executable, "-m", "agentd"]
    assert subprocess.run([*agentd, "daemon", "start"], env=env, capture_output=True, timeout=120).returncode == 0
    try:
        code, out, pressed = run_in_pty(["goal", "Write n.md", "--no-memory"], env, cols=100,
                                        ctrl_c_after="(run ", ctrl_c_delay_s=1.5)
    finally:
        subprocess.run([*agentd, "daemon", "stop"], env=env, capture_output=True, timeout=120)
    assert code == 130 and pressed is not None, out
    assert "cancelling run" in out
    summary = re.search(r"cancelled \(cancelled\) in \d+ steps, (\d+) model calls, \d+\+\d+ tokens, ([\d.]+)s", out)
    assert summary and int(summary.group(1)) >= 1 and float(summary.group(2)) > 0, out
