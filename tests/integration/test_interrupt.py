"""Ctrl-C during an in-process run: the run is recorded as cancelled, exit code 130, the journal consistent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from agentd.testing import call, feedback, plan

pytestmark = pytest.mark.integration


def test_ctrl_c_records_the_run_as_cancelled(tmp_path):
    script = tmp_path / "script.json"
    replies = [plan(("write", "write_file"), ("again", "write_file")), call("write_file", path="a.txt", content="x"),
               feedback("continue"), call("write_file", path="b.txt", content="y"), feedback("done")]
    script.write_text(json.dumps({"replies": replies, "delay_s": 1.0}))
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "agentd.toml").write_text(f'[models.local]\nprovider = "scripted"\nscript = "{script}"\n')
    env = dict(os.environ, AGENTD_HOME=str(tmp_path), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-c", "from agentd.cli import main; main()", "goal", "x", "--json"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the run is under way (its plan is out)
        line = proc.stdout.readline()
        lines.append(line)
        if '"type": "plan"' in line:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    lines += out.splitlines()
    assert proc.returncode == 130, err[-2000:]
    outcome = json.loads([x for x in lines if x.strip()][-1])
    assert outcome["status"] == "cancelled" and outcome["stop_reason"] == "cancelled"
    shown = subprocess.run([sys.executable, "-c", "from agentd.cli import main; main()", "runs", "show",
                            outcome["run_id"], "--json"], env=env, capture_output=True, text=True, check=True)
    record = json.loads(shown.stdout)
    assert record["run"]["status"] == "cancelled"
    assert [p["kind"] for p in record["phases"]][-1] == "stop"
    assert all(c["status"] != "started" for c in record["tool_calls"])  # nothing left half-done
