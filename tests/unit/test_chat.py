"""`agentd chat` (#18) on a real pseudo-terminal with the scripted model: each line is a goal in one thread,
streamed live; Ctrl-C cancels the running goal and the session goes on; Ctrl-D ends it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from terminal import converse_in_pty

from agentd.journal import Journal


def _rules(*goals: tuple[str, str, dict]) -> list:
    """For each (goal, intent, call): the plan of that goal, and the call of its one step; every decision: done."""
    rules: list = []
    for goal, intent, call in goals:
        rules.append([f"Goal: {goal}.*Write the plan", {"steps": [{"intent": intent, "tool": call["tool"]}]}])
        rules.append([f"Write the call for step 1: {intent}$", call])
    return rules + [["Write the decision", {"decision": "done", "summary": "ok", "final_answer": "finished"}]]


def _home(tmp_path, delay_s: float) -> tuple:
    home = tmp_path / "home"
    (home / "configs").mkdir(parents=True)
    rules = _rules(
        ("Create a.txt", "write a", {"tool": "write_file", "args": {"path": "a.txt", "content": "alpha"}}),
        ("Create b.txt", "write b", {"tool": "write_file", "args": {"path": "b.txt", "content": "beta"}}),
        ("What is in a.txt", "read a", {"tool": "read_file", "args": {"path": "a.txt"}}),
    )
    (home / "script.json").write_text(json.dumps({"rules": rules, "delay_s": delay_s}))
    (home / "configs" / "agentd.toml").write_text(
        f'[models.local]\nprovider = "scripted"\nscript = "{home / "script.json"}"\n\n[plugins]\nload = ["workspace"]\n'
    )
    return home, os.environ | {"AGENTD_HOME": str(home)}


def test_chat_two_goals_a_ctrl_c_and_ctrl_d_in_one_thread(tmp_path):
    home, env = _home(tmp_path, delay_s=0.5)
    code, out = converse_in_pty(["chat", "--no-memory"], env, [
        ("chat> ", 1, b"Create a.txt\r"),
        ("chat> ", 2, b"Create b.txt\r"),
        ("critique", 2, b"\x03"),  # the second goal is under way: cancel it
        ("chat> ", 3, b"What is in a.txt?\r"),
        ("chat> ", 4, b"\x04"),
    ])
    assert code == 0, out
    assert "answer: finished" in out and "cancelled (cancelled)" in out
    journal = Journal(home / "agentd.db")
    runs = list(reversed(journal.list_runs()))
    assert [r["status"] for r in runs] == ["succeeded", "cancelled", "succeeded"], out
    assert {r["thread_id"] for r in runs} == {runs[0]["id"]} and len({r["workspace"] for r in runs}) == 1
    assert [r["goal_spec"]["continues"] for r in runs] == [None, runs[0]["id"], runs[1]["id"]]
    assert journal.tool_calls(runs[2]["id"])[0]["result"]["output"] == "alpha"  # the first goal's file
    plan_prompt = next(p for p in journal.phases(runs[2]["id"]) if p["kind"] == "plan")["prompt"][-1][1]
    assert plan_prompt.startswith("Previous goal: Create b.txt\n")
    journal.close()


def test_chat_reads_goals_from_a_pipe_and_continues_a_run(tmp_path):
    home, env = _home(tmp_path, delay_s=0.0)
    first = subprocess.run([sys.executable, "-m", "agentd", "goal", "Create a.txt", "--no-memory"], env=env,
                           capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    piped = subprocess.run([sys.executable, "-m", "agentd", "chat", "--continue", "--no-memory"], env=env,
                           input="What is in a.txt?\n", capture_output=True, text=True, timeout=120)
    # The script answers "finished", which says nothing: the answer is what read_file read (verify.py).
    assert piped.returncode == 0 and "continuing run" in piped.stdout and "answer: alpha" in piped.stdout
    assert "chat> " not in piped.stdout  # no prompt when nobody types
