"""`agentd memory ingest` and `memory search` while a real daemon runs: the daemon's process writes the store it
holds, the next goal it runs recalls the new document, and a search is answered by the daemon's loaded store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

PLAN = {"steps": [{"intent": "write the answer", "tool": "write_file"}]}
CALL = {"tool": "write_file", "args": {"path": "answer.txt", "content": "Tuesday"}}
DONE = {"decision": "done", "summary": "ok", "final_answer": "Tuesday"}
FACT = "The staging database password rotates every Tuesday at noon."


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agentd", *args], env=os.environ | {"AGENTD_HOME": str(home)},
                          capture_output=True, text=True, timeout=180)


def _context(goal_output: str) -> list[str]:
    events = [json.loads(line) for line in goal_output.splitlines() if line.startswith("{")]
    return next((e["memories"] for e in events if e["type"] == "context"), [])  # no event: nothing recalled


def test_ingest_goes_through_the_running_daemon(tmp_path):
    home = tmp_path / "home"
    (home / "configs").mkdir(parents=True)
    script = home / "script.json"
    # The plan request reads "Else write the plan" where no tool shares a word with the goal (direct answers).
    rules = [["(?i)write the plan", PLAN], ["Write the call for step", CALL], ["Write the decision", DONE]]
    script.write_text(json.dumps({"rules": rules}))
    (home / "configs" / "agentd.toml").write_text(
        f'[models.local]\nprovider = "scripted"\nscript = "{script}"\n\n[plugins]\nload = ["workspace", "memory"]\n\n'
        '[plugins.memory]\nmin_score = 0.0\n\n[plugins.memory.embedding]\nprovider = "hash"\n\n'
        "[plugins.daemon]\nworkers = 1\ndrain_timeout_s = 1.0\n"
    )
    doc = tmp_path / "handbook.md"
    doc.write_text(f"# Ops handbook\n\n{FACT}\n")
    assert _cli(home, "daemon", "start").returncode == 0
    try:
        first = _cli(home, "goal", "When does the staging database password rotate?", "--json")
        assert first.returncode == 0, first.stdout + first.stderr
        assert not any(FACT in m for m in _context(first.stdout))  # the daemon's store is open, and empty
        ingested = _cli(home, "memory", "ingest", str(doc))
        assert ingested.returncode == 0, ingested.stderr
        assert "ingesting in the running daemon" in ingested.stderr and "1 added" in ingested.stdout
        second = _cli(home, "goal", "When does the staging database password rotate?", "--json")
        assert any(FACT in m for m in _context(second.stdout)), second.stdout

        # A search is answered by the daemon's loaded store and model too. The config now names an embedding
        # model nobody can load: a CLI that opened the store itself would fail, the daemon (which loaded the
        # config before) answers.
        config = home / "configs" / "agentd.toml"
        config.write_text(config.read_text().replace('provider = "hash"', 'provider = "python:no_such_module:make"'))
        found = _cli(home, "memory", "search", "staging database password", "--json", "-k", "1")
        assert found.returncode == 0, found.stderr
        assert FACT in json.loads(found.stdout.splitlines()[0])["text"]
    finally:
        _cli(home, "daemon", "stop")
    alone = _cli(home, "memory", "search", "staging database password", "--json", "-k", "1")
    assert alone.returncode != 0 and "no_such_module" in alone.stderr  # without the daemon: the CLI's own, broken
