"""`agentd goal --continue last` with the real bundled model (SmolLM2-135M, llama.cpp): the follow-up works in
the earlier run's workspace, sees its file among the workspace's files, and reads what the first run wrote.
The real counterpart of tests/unit/test_threads.py's scripted runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_real_model import agentd, outcome_of

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(1200)  # two real runs; slow, shared CI machines included
def test_continue_last_sees_the_previous_runs_file(tmp_path):
    first = agentd(tmp_path, "goal", "Create a file named hello.txt containing the word hello",
                   "--no-memory", "--json")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    written = outcome_of(first)
    assert (Path(written["workspace"]) / "hello.txt").read_text().split() == ["hello"]
    # The follow-up never names the file: only the earlier run's workspace and its listing lead to it (no memory:
    # a recalled episode of the first run must not be what finds it).
    second = agentd(tmp_path, "goal", "--continue", "last", "Read the file and tell me what it says",
                    "--no-memory", "--json")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    outcome = outcome_of(second)
    assert outcome["workspace"] == written["workspace"]
    shown = json.loads(agentd(tmp_path, "runs", "show", "last", "--json").stdout)
    assert shown["run"]["thread_id"] == written["run_id"] and shown["run_id"] == outcome["run_id"]
    plan = next(p for p in shown["phases"] if p["kind"] == "plan")
    assert "Files in the workspace: hello.txt" in plan["prompt"][-1][1]
    reads = [c for c in shown["tool_calls"] if c["tool"] == "read_file"]
    assert reads and reads[0]["args"]["path"] == "hello.txt" and reads[0]["result"]["output"].strip() == "hello"
