"""Attached folders with the real bundled model (SmolLM2-135M, llama.cpp, temperature 0), through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FIXED_MTIME = 1767225600  # 2026-01-01 00:00:00 UTC


def agentd(home: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agentd", *args], env={**os.environ, "AGENTD_HOME": str(home),
                          **(env or {})}, capture_output=True, text=True, timeout=600)


def user_folder(tmp_path: Path, name: str, file: str, text: str) -> tuple[Path, Path, dict]:
    """(the folder holding ``file``, AGENTD_HOME, the environment allowing the user's folders)."""
    folder = tmp_path / "user" / name
    folder.mkdir(parents=True)
    (folder / file).write_text(text)
    # The prompt lists each attached file with its modification time: a fixed one makes the prompt, and so the
    # model's greedy replies, the same on every run (the wall clock's made this test pass or fail by the minute).
    os.utime(folder / file, (FIXED_MTIME, FIXED_MTIME))
    return folder, tmp_path / "home", {"AGENTD_WORKSPACE__ALLOWED_DIRS": json.dumps([str(tmp_path / "user")])}


def test_the_bundled_model_answers_from_a_file_in_a_read_only_folder(tmp_path):
    inbox, home, allow = user_folder(tmp_path, "inbox", "notes.txt", "The secret code word is PELICAN.\n")
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


def test_the_bundled_model_changes_a_rw_folder_and_runs_undo_puts_it_back(tmp_path):
    reports, home, allow = user_folder(tmp_path, "reports", "hello.txt", "old\n")
    result = agentd(home, "goal", "Write the word hello into the file reports/hello.txt",
                    "--dir", f"{reports}:rw", "--json", env=allow)
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert (reports / "hello.txt").read_text().strip().lower() == "hello", result.stdout[-3000:]
    assert not (Path(outcome["workspace"]) / "hello.txt").exists()
    shown = agentd(home, "runs", "show", outcome["run_id"], env=allow)
    assert "reports/hello.txt  changed" in shown.stdout, shown.stdout
    undone = agentd(home, "runs", "undo", outcome["run_id"], env=allow)
    assert "restored" in undone.stdout, undone.stdout + undone.stderr
    assert (reports / "hello.txt").read_text() == "old\n"
