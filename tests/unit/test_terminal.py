"""The CLI on a real pseudo-terminal 40 columns wide, and through a pipe: ids and paths stay whole, piped output
is plain text, `runs show` reads well, JSON says `run_id`, and Ctrl-C's summary has the real figures."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from terminal import run_in_pty

from agentd.testing import call, feedback, plan

LONG = "Summarise /srv/projects/quarterly-reports/2026/finance-department-overview.md into notes"


def _home(tmp_path: Path, replies: list | None = None, delay_s: float = 0.0) -> tuple[Path, dict[str, str]]:
    home = tmp_path / "a-rather-long-agentd-home-folder-name"
    (home / "configs").mkdir(parents=True)
    script = home / "script.json"
    script.write_text(json.dumps({"replies": replies or [], "delay_s": delay_s}))
    (home / "configs" / "agentd.toml").write_text(
        f'[models.local]\nprovider = "scripted"\nscript = "{script}"\n\n[plugins]\nload = ["workspace"]\n'
    )
    return home, os.environ | {"AGENTD_HOME": str(home)}


def _piped(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agentd", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def _one_run(env: dict[str, str]) -> dict:
    done = _piped(env, "goal", LONG, "--no-memory", "--json")
    return json.loads(done.stdout.strip().splitlines()[-1])


REPLIES = [plan(("write notes", "write_file")), call("write_file", path="notes.md", content="x"),
           feedback("done", final_answer="wrote notes.md")]


def test_goal_footer_and_runs_list_keep_ids_and_paths_whole_at_40_columns(tmp_path):
    home, env = _home(tmp_path, REPLIES)
    code, out, _ = run_in_pty(["goal", LONG, "--no-memory"], env, cols=40)
    assert code == 0, out
    run_id = re.search(r"run (\d{8}-\d{6}-[0-9a-f]{6})", out).group(1)
    workspace = str(home / "workspaces" / run_id)
    assert len(workspace) > 40 and f"run {run_id}  workspace {workspace}" in out  # no newline inside
    code, listing, _ = run_in_pty(["runs", "list"], env, cols=40)
    assert code == 0 and run_id in listing.split()
    assert "/srv/projects/quarterly-reports/2026/finance-department-overview.md" in listing.split()
    assert "…" not in listing
    for cols in (110, 200):  # a table when the path in the goal fits its column whole, else the block layout
        code, wide, _ = run_in_pty(["runs", "list"], env, cols=cols)
        assert code == 0 and run_id in wide.split() and "…" not in wide
        assert "/srv/projects/quarterly-reports/2026/finance-department-overview.md" in wide.split()
    assert "┏" in wide


def test_piped_listings_are_plain_whole_lines(tmp_path):
    home, env = _home(tmp_path, REPLIES)
    run_id = _one_run(env)["run_id"]
    listing = _piped(env, "runs", "list")
    assert "\x1b[" not in listing.stdout and "━" not in listing.stdout and "│" not in listing.stdout
    header, row = listing.stdout.splitlines()[:2]
    assert header.split()[:2] == ["run", "status"]
    assert row.split()[0] == run_id and row.endswith(LONG)  # the whole goal, on the run's own line
    _piped(env, "schedule", "add", "quarterly-finance-digest", "--every", "1d", "Write digest.md")
    schedules = _piped(env, "schedule", "list").stdout
    assert "\x1b[" not in schedules
    assert any(line.startswith("quarterly-finance-digest  every 1d") for line in schedules.splitlines())


def test_schedule_list_at_40_columns_keeps_names_whole(tmp_path):
    home, env = _home(tmp_path)
    _piped(env, "schedule", "add", "quarterly-finance-digest", "--cron", "0 2 * * 1", "Write digest.md")
    code, out, _ = run_in_pty(["schedule", "list"], env, cols=40)
    assert code == 0 and "quarterly-finance-digest" in out.split() and "…" not in out


def test_runs_show_prints_usage_readably_and_json_says_run_id(tmp_path):
    home, env = _home(tmp_path, REPLIES)
    run_id = _one_run(env)["run_id"]
    shown = _piped(env, "runs", "show", run_id).stdout
    usage = next(line for line in shown.splitlines() if line.startswith("usage:"))
    assert re.fullmatch(r"usage: 3 model calls, \d+\+\d+ tokens, \d+\.\ds", usage), usage
    assert json.loads(_piped(env, "runs", "show", run_id, "--json").stdout)["run_id"] == run_id
    assert json.loads(_piped(env, "runs", "list", "--json").stdout)[0]["run_id"] == run_id


def test_ctrl_c_summary_counts_the_interrupted_phase(tmp_path):
    home, env = _home(tmp_path, REPLIES, delay_s=1.0)
    code, out, pressed = run_in_pty(["goal", "Write notes.md", "--no-memory"], env, cols=100,
                                    ctrl_c_after="(run ", ctrl_c_delay_s=1.6)
    assert code == 130 and pressed is not None, out
    summary = re.search(r"cancelled \(cancelled\) in (\d+) steps, (\d+) model calls, (\d+)\+(\d+) tokens, "
                        r"([\d.]+)s", out)
    assert summary, out
    steps, calls, prompt, completion, seconds = summary.groups()
    assert int(calls) >= 1 and int(prompt) > 0  # the plan call finished before Ctrl-C
    # The run went on at least as long as the test waited before pressing Ctrl-C, and the summary says so
    # (before, only finished phases counted and the act call cut short by Ctrl-C was missing).
    assert float(seconds) >= pressed - 0.2, (seconds, pressed)


def test_memory_list_at_40_columns_keeps_the_source_path_whole(tmp_path):
    home, env = _home(tmp_path)
    config = home / "configs" / "agentd.toml"
    config.write_text(config.read_text().replace('load = ["workspace"]', 'load = ["workspace", "memory"]')
                      + '\n[plugins.memory.embedding]\nprovider = "hash"\n')
    doc = tmp_path / "quarterly-reports" / "finance-department-overview.md"
    doc.parent.mkdir()
    doc.write_text("Revenue grew in every region this quarter.\n")
    assert _piped(env, "memory", "ingest", str(doc)).returncode == 0
    code, out, _ = run_in_pty(["memory", "list"], env, cols=40)
    assert code == 0 and str(doc) in out.split() and "…" not in out


@pytest.mark.parametrize("args", [["runs", "list"], ["schedule", "list"]])
def test_empty_listings_work_piped(tmp_path, args):
    _, env = _home(tmp_path)
    assert _piped(env, *args).returncode == 0
