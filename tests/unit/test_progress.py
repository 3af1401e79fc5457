"""Live progress while the model works (issue 22, item 2): a status line on a terminal (through a pty), quiet
when piped, ``progress`` events in --json at a bounded rate; tokens counted as the model generates them."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from agentd import Goal
from agentd.engine.progress import ProgressReporter
from agentd.models.registry import ModelHandle
from agentd.testing import ScriptedChatModel, call, feedback, plan

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def configure(home, delay_s=0.8):
    """A scripted model that takes ``delay_s`` per reply, reporting its reply as tokens meanwhile."""
    script = home / "script.json"
    replies = [plan(("write", "write_file")), call("write_file", path="a.txt", content="x"),
               feedback("done", final_answer="wrote a.txt")]
    script.write_text(json.dumps({"replies": replies, "delay_s": delay_s}))
    (home / "configs").mkdir(exist_ok=True)
    (home / "configs" / "agentd.toml").write_text(
        f'[models.local]\nprovider = "scripted"\nscript = "{script}"\n[plugins]\nload = ["workspace"]\n'
        '[loop]\nfeedback = "model"\n')  # every turn is the model's here: the scripted feedback is one of them


def test_a_terminal_shows_phase_elapsed_tokens_and_calls_while_the_model_works(home, pty_run):
    configure(home)
    code, output = pty_run(["goal", "Create a.txt"])
    assert code == 0, output
    plain = ANSI.sub("", output)
    assert re.search(r"planning · \d+s · [1-9]\d* tokens · 1 model call\b", plain), plain
    assert re.search(r"judging the result · \d+s · [1-9]\d* tokens · 3 model calls", plain), plain
    assert "running write_file" in plain
    assert "answer: wrote a.txt" in plain


def run_piped(home, *args):
    return subprocess.run([sys.executable, "-m", "agentd", "goal", "Create a.txt", *args], capture_output=True,
                          text=True, timeout=120)


def test_piped_output_has_no_status_line(home):
    configure(home)
    done = run_piped(home)
    assert done.returncode == 0, done.stderr
    assert "answer: wrote a.txt" in done.stdout
    assert "tokens ·" not in done.stdout + done.stderr and "\x1b[" not in done.stdout


def test_json_has_progress_events_with_growing_counts(home):
    configure(home)
    done = run_piped(home, "--json")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    progress = [e for e in events if e["type"] == "progress"]
    assert {e["phase"] for e in progress} == {"plan", "act", "feedback"}
    assert [e["model_calls"] for e in progress] == sorted(e["model_calls"] for e in progress)
    assert [e["tokens"] for e in progress] == sorted(e["tokens"] for e in progress)
    assert progress[-1]["model_calls"] == 3 and progress[-1]["tokens"] > 0
    assert all(e["run_id"] == events[-1]["run_id"] for e in progress)
    assert events[-1]["type"] == "run_finished"


def test_progress_events_are_rate_bounded():
    sent, now = [], [0.0]
    report = ProgressReporter(lambda t, d: sent.append(d), clock=lambda: now[0]).watch("plan", 2, 100)
    report(0)  # a call starts: always reported
    for n in range(1, 1001):  # 1000 tokens in one second
        now[0] = n / 1000
        report(n)
    assert len(sent) == 1 + 4  # the start, then one every 0.25 s
    assert sent[0] == {"phase": "plan", "model_calls": 3, "tokens": 100, "call_tokens": 0}
    report(0)  # a retry in the same phase: its tokens add to the run's
    assert sent[-1]["model_calls"] == 4 and sent[-1]["tokens"] == 1100
    report.watch("act", 4, 1090)(0)  # the next phase starts from the recorded usage, a little lower ...
    assert sent[-1] == {"phase": "act", "model_calls": 5, "tokens": 1100, "call_tokens": 0}  # ... never shown lower


def test_model_handle_reports_tokens_as_they_come_and_keeps_usage():
    chat = ScriptedChatModel(replies=['{"steps": [{"intent": "write a file", "tool": "write_file"}]}'])
    seen = []
    text, usage = ModelHandle(name="m", chat=chat, structured="prompt").complete([("user", "hi")], on_token=seen.append)
    assert seen[0] == 0 and seen[1:] == list(range(1, len(seen)))  # 0 at the start, then one per token
    assert seen[-1] == (len(text) + 3) // 4
    assert usage.completion_tokens == max(1, len(text) // 4) and usage.model_calls == 1  # the model's own usage


def test_a_run_nobody_watches_reports_no_progress_and_one_watched_again_does(scripted):
    """``live`` (a daemon: is an event stream open?) is asked before each model call; unwatched, the call reports
    no tokens, so the provider streams nothing for nobody. Journaled events go to ``on_event`` either way."""
    replies = [plan(("write", "write_file")), call("write_file", path="a.txt", content="x"),
               feedback("done", final_answer="wrote a.txt")]
    app, _ = scripted(replies + replies)
    watched = iter([False, False, True])  # the plan and act calls unwatched; a stream opens before feedback
    seen: list[tuple[str, dict]] = []
    run_id = app.engine.submit(Goal(text="make a.txt", memory=False))
    outcome = app.engine.run(run_id, on_event=lambda t, d: seen.append((t, d)), live=lambda: next(watched))
    assert outcome["status"] == "succeeded"
    assert {d["phase"] for t, d in seen if t == "progress"} == {"feedback"}
    assert [t for t, _ in seen if t != "progress"] == [e["type"] for e in app.journal.events(run_id)]
    seen.clear()
    run_id = app.engine.submit(Goal(text="make a.txt", memory=False))
    app.engine.run(run_id, on_event=lambda t, d: seen.append((t, d)))  # no ``live``: watched whenever told
    assert {d["phase"] for t, d in seen if t == "progress"} == {"plan", "act", "feedback"}
