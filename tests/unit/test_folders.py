"""Attached folders (agentd/folders.py, agentd/folder_changes.py): which may be attached, how the workspace
tools reach them, every write journaled and undoable, the planner's listing, and a schedule's "since"."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from agentd import Goal
from agentd.config import load_config
from agentd.errors import ConfigError
from agentd.folder_changes import FolderChanges, undo_run
from agentd.folders import attach, parse_dir
from agentd.testing import call, feedback, plan


@pytest.fixture
def user(tmp_path):
    """A user's folders: inbox/ with one note, reports/ with one report, and a secret outside both."""
    root = tmp_path / "user"
    (root / "inbox").mkdir(parents=True)
    (root / "inbox" / "notes.txt").write_text("The meeting is on Tuesday.")
    (root / "reports").mkdir()
    (root / "reports" / "week.txt").write_text("old report")
    (tmp_path / "secret.txt").write_text("top secret")
    return root


@pytest.fixture
def folders_app(scripted, user):
    def factory(replies, **settings):
        return scripted(replies, settings={"workspace.allowed_dirs": [str(user)], **settings})
    return factory


def run_goal(app, text, specs, **kw):
    goal = Goal(text=text, dirs=attach(specs, app.config), **kw)
    run_id = app.engine.submit(goal)
    return run_id, app.engine.run(run_id)


def plan_request(app, run_id):
    return next(p["request"] for p in app.journal.phases(run_id) if p["kind"] == "plan")


def observations(app, run_id):
    return [c["result"] for c in app.journal.tool_calls(run_id)]


# -- attaching -----------------------------------------------------------------------------------------------------
def test_dir_specs_are_read_only_unless_rw():
    assert parse_dir("~/inbox") == ("~/inbox", "ro")
    assert parse_dir("/a/b:rw") == ("/a/b", "rw")
    assert parse_dir("/a/b:ro") == ("/a/b", "ro")
    with pytest.raises(ConfigError, match="give a folder"):
        parse_dir(":rw")


def test_only_allowed_roots_may_be_attached(home, user, tmp_path):
    config = load_config(home=home, env={}, overrides={"workspace.allowed_dirs": [str(user)]})
    [inbox, reports] = attach([f"{user}/inbox", f"{user}/reports:rw"], config)
    assert inbox == {"name": "inbox", "path": str((user / "inbox").resolve()), "mode": "ro"}
    assert reports["mode"] == "rw"
    other = tmp_path / "elsewhere"
    other.mkdir()
    with pytest.raises(ConfigError, match=r"not under \[workspace\] allowed_dirs"):
        attach([str(other)], config)
    with pytest.raises(ConfigError, match="does not exist"):
        attach([f"{user}/missing"], config)
    with pytest.raises(ConfigError, match="absolute path"):
        attach(["inbox"], config)


def test_agentd_home_is_never_attached(home, tmp_path):
    config = load_config(home=home, env={}, overrides={"workspace.allowed_dirs": [str(tmp_path)]})
    (home / "workspaces").mkdir(exist_ok=True)
    for folder, where in ((home, "is AGENTD_HOME"), (home / "workspaces", "is inside AGENTD_HOME"),
                          (tmp_path, "contains AGENTD_HOME")):
        with pytest.raises(ConfigError, match=where):
            attach([str(folder)], config)


def test_default_allows_the_home_without_dot_folders(home, tmp_path, monkeypatch):
    fake_home = tmp_path / "me"
    (fake_home / ".ssh").mkdir(parents=True)
    (fake_home / "docs").mkdir()
    monkeypatch.setenv("HOME", str(fake_home))
    config = load_config(home=home, env={})
    assert attach([str(fake_home / "docs")], config)[0]["name"] == "docs"
    with pytest.raises(ConfigError, match=r"dot-folder \.ssh.*\[workspace\] allowed_dirs"):
        attach([str(fake_home / ".ssh")], config)
    with pytest.raises(ConfigError, match="holds dot-folders"):
        attach([str(fake_home)], config)


def test_two_folders_with_one_name_get_distinct_names(home, tmp_path):
    for part in ("a/inbox", "b/inbox"):
        (tmp_path / part).mkdir(parents=True)
    config = load_config(home=home, env={}, overrides={"workspace.allowed_dirs": [str(tmp_path)]})
    names = [f["name"] for f in attach([str(tmp_path / "a/inbox"), str(tmp_path / "b/inbox")], config)]
    assert names == ["inbox", "inbox-2"]


# -- the workspace tools ---------------------------------------------------------------------------------------
def test_tools_read_an_attached_folder_and_the_goal_keeps_it(folders_app, user):
    app, _ = folders_app([plan(("read the note", "read_file")), call("read_file", path="inbox/notes.txt"),
                          feedback("done", final_answer="Tuesday")])
    run_id, out = run_goal(app, "When is the meeting? Read inbox/notes.txt", [f"{user}/inbox"])
    assert out["status"] == "succeeded"
    assert observations(app, run_id)[0]["output"] == "The meeting is on Tuesday."
    # journaled with the goal: a resumed run has the same folders
    assert app.journal.get_run(run_id)["goal_spec"]["dirs"][0]["path"] == str((user / "inbox").resolve())


def test_a_follow_up_keeps_the_folders_of_the_run_before(folders_app, user):
    """`goal --continue` works on the same attached folders unless it names its own."""
    read = [plan(("read the note", "read_file")), call("read_file", path="inbox/notes.txt"),
            feedback("done", final_answer="Tuesday")]
    app, _ = folders_app(read * 2)
    first, _ = run_goal(app, "When is the meeting? Read inbox/notes.txt", [f"{user}/inbox"])
    second = app.engine.submit(Goal(text="Read inbox/notes.txt again", continues=first))
    out = app.engine.run(second)
    assert out["status"] == "succeeded"
    assert observations(app, second)[0]["output"] == "The meeting is on Tuesday."
    assert app.journal.get_run(second)["goal_spec"]["dirs"] == app.journal.get_run(first)["goal_spec"]["dirs"]


def test_a_write_to_a_read_only_folder_is_a_tool_error(folders_app, user):
    app, _ = folders_app([plan(("write", "write_file")), call("write_file", path="inbox/notes.txt", content="x"),
                          feedback("give_up")])
    run_id, _ = run_goal(app, "overwrite inbox/notes.txt", [f"{user}/inbox"])
    assert "attached read-only" in observations(app, run_id)[0]["error"]
    assert (user / "inbox" / "notes.txt").read_text() == "The meeting is on Tuesday."
    assert FolderChanges(app.journal).of_run(run_id) == []


def test_symlinks_pointing_outside_an_attached_folder_are_not_followed(folders_app, user, tmp_path):
    os.symlink(tmp_path / "secret.txt", user / "inbox" / "link.txt")
    os.symlink(tmp_path, user / "reports" / "out")
    app, _ = folders_app([plan(("read", "read_file"), ("write", "write_file")),
                          call("read_file", path="inbox/link.txt"), feedback("continue"),
                          call("write_file", path="reports/out/secret.txt", content="pwned"), feedback("give_up")])
    run_id, _ = run_goal(app, "read inbox/link.txt", [f"{user}/inbox", f"{user}/reports:rw"])
    read, write = observations(app, run_id)
    assert "symlink" in read["error"] and "top secret" not in read["output"]
    assert write["error"] and (tmp_path / "secret.txt").read_text() == "top secret"


def test_list_files_shows_the_attached_folders(folders_app, user):
    app, _ = folders_app([plan(("list", "list_files"), ("list inbox", "list_files")), call("list_files"),
                          feedback("continue"),
                          call("list_files", path="inbox"), feedback("done", final_answer="ok")])
    run_id, _ = run_goal(app, "list the files", [f"{user}/inbox"])
    top, inbox = observations(app, run_id)
    assert "inbox/ (attached folder, read-only)" in top["output"]
    assert inbox["output"] == "inbox/notes.txt"


# -- writes journaled, listed, undone ----------------------------------------------------------------------------
def test_rw_writes_are_journaled_and_undone(folders_app, user):
    app, _ = folders_app([plan(("change", "write_file"), ("add", "write_file")),
                          call("write_file", path="reports/week.txt", content="new report"), feedback("continue"),
                          call("write_file", path="reports/extra.txt", content="added"), feedback("done")])
    run_id, out = run_goal(app, "update reports/week.txt", [f"{user}/reports:rw"])
    assert out["status"] == "succeeded"
    assert (user / "reports" / "week.txt").read_text() == "new report"
    files = {c["file"]: c for c in FolderChanges(app.journal).changed_files(run_id)}
    assert set(files) == {"reports/week.txt", "reports/extra.txt"}
    assert files["reports/extra.txt"]["sha_before"] is None and files["reports/week.txt"]["size"] == 10
    undo = app.config.home / "undo" / run_id
    assert oct(undo.stat().st_mode & 0o777) == "0o700"
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in undo.iterdir())
    lines = undo_run(app.config, app.journal, run_id)
    assert (user / "reports" / "week.txt").read_text() == "old report"
    assert not (user / "reports" / "extra.txt").exists()
    assert any("restored" in line for line in lines) and any("removed" in line for line in lines)
    assert all("already undone" in line for line in undo_run(app.config, app.journal, run_id))


def test_undo_leaves_a_file_changed_again_since(folders_app, user):
    app, _ = folders_app([plan(("change", "write_file")),
                          call("write_file", path="reports/week.txt", content="new report"), feedback("done")])
    run_id, _ = run_goal(app, "update reports/week.txt", [f"{user}/reports:rw"])
    (user / "reports" / "week.txt").write_text("the user's own edit")
    assert "changed again" in undo_run(app.config, app.journal, run_id)[0]
    assert (user / "reports" / "week.txt").read_text() == "the user's own edit"


def test_a_write_past_the_undo_limit_is_refused_unless_no_undo(folders_app, user):
    (user / "reports" / "big.bin").write_bytes(b"x" * 300_000)
    replies = [plan(("change", "write_file")), call("write_file", path="reports/big.bin", content="y"),
               feedback("give_up")]
    app, _ = folders_app(replies * 2, **{"workspace.undo_max_mb": 0.1})
    run_id, _ = run_goal(app, "change reports/big.bin", [f"{user}/reports:rw"])
    assert "undo_max_mb" in observations(app, run_id)[0]["error"]
    assert (user / "reports" / "big.bin").stat().st_size == 300_000
    run_id, _ = run_goal(app, "change reports/big.bin", [f"{user}/reports:rw"], no_undo=True)
    assert observations(app, run_id)[0]["error"] is None
    assert (user / "reports" / "big.bin").read_text() == "y"
    [change] = FolderChanges(app.journal).changed_files(run_id)
    assert not change["undoable"]
    assert "--no-undo" in undo_run(app.config, app.journal, run_id)[0]


# -- what the planner sees -----------------------------------------------------------------------------------------
def test_the_planner_sees_the_folders_newest_first_and_what_is_new(folders_app, user):
    old = time.time() - 3600
    os.utime(user / "inbox" / "notes.txt", (old, old))
    (user / "inbox" / "fresh.txt").write_text("new")
    app, model = folders_app([plan(("answer", "final_answer")), call("final_answer", answer="fresh.txt")])
    run_id, _ = run_goal(app, "Which files in inbox/ are new?", [f"{user}/inbox"], since=time.time() - 60)
    prompt = plan_request(app, run_id)
    assert "folder inbox/ (read-only" in prompt
    assert prompt.index("inbox/fresh.txt") < prompt.index("inbox/notes.txt")
    assert "inbox/fresh.txt (3 bytes" in prompt and "NEW since last run" in prompt.split("inbox/notes.txt")[0]
    assert "NEW" not in prompt.split("inbox/notes.txt")[1].split("\n")[0]


def test_a_schedule_with_dirs_sees_files_added_since_its_previous_fire(scripted, user):
    from agentd.schedule.scheduler import Scheduler
    from agentd.schedule.spec import Schedule

    app, model = scripted([], settings={"workspace.allowed_dirs": [str(user)]})
    now = [time.time()]
    scheduler = Scheduler(app.config, app.journal, lambda goal, fire_id: app.engine.submit(goal),
                          tools=app.tools, clock=lambda: now[0])
    scheduler.store.add(Schedule(name="digest", goal="Summarise the new files in inbox/", every="10s",
                                 dirs=[f"{user}/inbox"]), now=now[0])
    now[0] += 10.5
    [first] = scheduler.tick("digest")
    assert app.journal.get_run(first.run_id)["goal_spec"]["since"] is None
    from agentd.records import RunStatus

    app.journal.set_status(first.run_id, RunStatus.succeeded)
    (user / "inbox" / "arrived.txt").write_text("added after the first fire")
    os.utime(user / "inbox" / "arrived.txt", (first.scheduled_at + 5, first.scheduled_at + 5))
    os.utime(user / "inbox" / "notes.txt", (first.scheduled_at - 100, first.scheduled_at - 100))
    now[0] += 10
    [second] = scheduler.tick("digest")
    spec = app.journal.get_run(second.run_id)["goal_spec"]
    assert spec["since"] == first.scheduled_at and spec["dirs"][0]["name"] == "inbox"
    model.enqueue([plan(("answer", "final_answer")), call("final_answer", answer="arrived.txt")])
    app.engine.run(second.run_id)
    prompt = plan_request(app, second.run_id)
    assert "inbox/arrived.txt" in prompt and "NEW since last run" in prompt.split("inbox/notes.txt")[0]


def test_a_schedule_refuses_dirs_outside_the_allowed_roots(scripted, tmp_path):
    from agentd.schedule.spec import Schedule, problems

    app, _ = scripted([], settings={"workspace.allowed_dirs": [str(tmp_path / "nowhere")]})
    found = problems(Schedule(name="d", goal="g", every="1h", dirs=["/usr"]), config=app.config)
    assert any("allowed_dirs" in p for p in found)


def test_the_api_checks_dirs_against_the_daemons_config(home, user, tmp_path):
    from agentd.daemon.api import GoalIn

    config = load_config(home=home, env={}, overrides={"workspace.allowed_dirs": [str(user)]})
    goal = GoalIn(text="read", dirs=[f"{user}/inbox", {"path": f"{user}/reports", "mode": "rw"}]).to_goal(
        config.loop, config)
    assert [(d["name"], d["mode"]) for d in goal.dirs] == [("inbox", "ro"), ("reports", "rw")]
    with pytest.raises(ConfigError, match="allowed_dirs"):
        GoalIn(text="read", dirs=["/usr"]).to_goal(config.loop, config)
    # what the CLI sends (Goal.to_dict) comes back as the same goal
    assert GoalIn(**{k: v for k, v in goal.to_dict().items() if k in GoalIn.model_fields}).to_goal(
        config.loop, config).dirs == goal.dirs


def test_cli_refuses_a_folder_outside_the_allowed_roots(home, tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "AGENTD_HOME": str(home), "AGENTD_WORKSPACE__ALLOWED_DIRS": f'["{tmp_path}/user"]'}
    done = subprocess.run([sys.executable, "-m", "agentd", "goal", "--dir", str(Path("/usr")), "read it"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2
    assert "[workspace] allowed_dirs" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_runs_show_lists_changed_files_and_runs_undo_puts_them_back(folders_app, user, home):
    import subprocess
    import sys

    app, _ = folders_app([plan(("change", "write_file")),
                          call("write_file", path="reports/week.txt", content="new report"), feedback("done")])
    run_id, _ = run_goal(app, "update reports/week.txt", [f"{user}/reports:rw"])
    env = {**os.environ, "AGENTD_HOME": str(home)}

    def agentd(*args):
        return subprocess.run([sys.executable, "-m", "agentd", *args], capture_output=True, text=True, env=env,
                              timeout=60)

    shown = agentd("runs", "show", run_id)
    assert "reports/week.txt  changed, 10 bytes" in shown.stdout and "attached: reports/" in shown.stdout
    undone = agentd("runs", "undo", run_id)
    assert undone.returncode == 0 and "reports/week.txt: restored" in undone.stdout, undone.stderr
    assert (user / "reports" / "week.txt").read_text() == "old report"


def test_the_schedule_report_lists_the_files_a_run_changed(scripted, user):
    from agentd.schedule.report import build_report, render_text
    from agentd.schedule.scheduler import Scheduler
    from agentd.schedule.spec import Schedule

    app, model = scripted([plan(("change", "write_file")),
                           call("write_file", path="reports/week.txt", content="new report"), feedback("done")],
                          settings={"workspace.allowed_dirs": [str(user)]})
    now = [time.time()]
    scheduler = Scheduler(app.config, app.journal, lambda goal, fire_id: app.engine.submit(goal),
                          tools=app.tools, clock=lambda: now[0])
    scheduler.store.add(Schedule(name="weekly", goal="update reports/week.txt", every="10s",
                                 dirs=[f"{user}/reports:rw"], allowed_tools=["write_file"]), now=now[0])
    now[0] += 10.5
    [fire] = scheduler.tick("weekly")
    app.engine.run(fire.run_id)
    report = build_report(app.journal, since=now[0] - 60, now=now[0])
    assert report["runs"][0]["changed_files"] == ["reports/week.txt  changed, 10 bytes"]
    assert "changed in attached folders: reports/week.txt" in render_text(report)


def test_a_file_the_goal_names_in_a_rw_folder_is_verified_there(folders_app, user):
    app, _ = folders_app([plan(("write", "write_file")), call("write_file", path="reports/new.txt", content="kiwi"),
                          feedback("done", final_answer="wrote reports/new.txt")])
    run_id, out = run_goal(app, "Write kiwi to reports/new.txt", [f"{user}/reports:rw"])
    assert out["status"] == "succeeded" and out["verified"] is True, out
    assert (user / "reports" / "new.txt").read_text() == "kiwi"


def test_a_fire_whose_folder_is_gone_is_recorded_with_the_reason(scripted, user):
    import shutil

    from agentd.schedule.scheduler import Scheduler
    from agentd.schedule.spec import Schedule
    from agentd.schedule.store import FireStatus

    app, _ = scripted([], settings={"workspace.allowed_dirs": [str(user)]})
    now = [time.time()]
    scheduler = Scheduler(app.config, app.journal, lambda goal, fire_id: app.engine.submit(goal),
                          tools=app.tools, clock=lambda: now[0])
    scheduler.store.add(Schedule(name="digest", goal="g", every="10s", dirs=[f"{user}/inbox"]), now=now[0])
    shutil.rmtree(user / "inbox")
    now[0] += 10.5
    [fire] = scheduler.tick("digest")
    assert fire.status == FireStatus.missed and "does not exist" in fire.detail and fire.run_id is None
    [stored] = scheduler.store.fires("digest")
    assert stored.status == FireStatus.missed and "inbox" in stored.detail
