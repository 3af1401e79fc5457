"""Attached folders with the real bundled model (SmolLM2-135M, llama.cpp, temperature 0), through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def agentd(home: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agentd", *args], env={**os.environ, "AGENTD_HOME": str(home),
                          **(env or {})}, capture_output=True, text=True, timeout=600)


def test_the_bundled_model_answers_from_a_file_in_a_read_only_folder(tmp_path):
    inbox = tmp_path / "user" / "inbox"
    inbox.mkdir(parents=True)
    (inbox / "notes.txt").write_text("The secret code word is PELICAN.\n")
    home = tmp_path / "home"
    allow = {"AGENTD_WORKSPACE__ALLOWED_DIRS": json.dumps([str(tmp_path / "user")])}
    result = agentd(home, "goal", "Read the file inbox/notes.txt and tell me the secret code word.",
                    "--dir", str(inbox), "--json", env=allow)
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    seen = [json.loads(line) for line in result.stdout.splitlines() if '"observation"' in line]
    # read_file read the attached file (judged from what the tool returned, not from the model's words)...
    reads = [o for o in seen if o["tool"] == "read_file" and o["ok"] and "PELICAN" in o["output"]]
    assert reads, result.stdout[-3000:] + result.stderr[-2000:]
    # ... and the answer carries the word it read.
    assert outcome["status"] == "succeeded" and "PELICAN" in outcome["final_answer"].upper(), outcome
    assert (inbox / "notes.txt").read_text() == "The secret code word is PELICAN.\n"
