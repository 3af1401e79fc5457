"""Attached folders inside real sandboxes, on both backends, judged from outside: a read-only folder is readable
at /workspace/<name> and never written, a rw one is written, and a symlink the code leaves where a folder is
mounted is not followed.

The folders are world-writable (0777) on purpose: under a root daemon the code runs as its own uid, and only the
read-only bind (not file permissions) may be what stops the write.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_sandbox import py

pytestmark = pytest.mark.integration  # backend, area and ws come from conftest.py


@pytest.fixture
def folder(area):
    def make(name: str) -> Path:
        path = area / "user" / name
        path.mkdir(parents=True)
        path.chmod(0o777)
        (path / "note.txt").write_text("from the user")
        (path / "note.txt").chmod(0o666)
        return path
    return make


WRITE = """
import pathlib
print(pathlib.Path("{name}/note.txt").read_text())
for target in ("{name}/note.txt", "{name}/new.txt"):
    try:
        pathlib.Path(target).write_text("from the code")
        print("wrote", target)
    except OSError as exc:
        print("refused", target, exc.errno)
"""


def test_a_read_only_folder_is_read_but_never_written(backend, ws, folder):
    inbox = folder("inbox")
    result = py(backend, WRITE.format(name="inbox"), ws, folders=[(inbox, "inbox", False)])
    assert "from the user" in result.stdout, result.stderr
    assert "refused inbox/note.txt" in result.stdout and "refused inbox/new.txt" in result.stdout
    assert (inbox / "note.txt").read_text() == "from the user"
    assert sorted(p.name for p in inbox.iterdir()) == ["note.txt"]


def test_a_rw_folder_is_written(backend, ws, folder):
    reports = folder("reports")
    result = py(backend, WRITE.format(name="reports"), ws, folders=[(reports, "reports", True)])
    assert "wrote reports/note.txt" in result.stdout, result.stdout + result.stderr
    assert (reports / "note.txt").read_text() == "from the code"
    assert (reports / "new.txt").read_text() == "from the code"
    assert not (ws / "reports" / "new.txt").exists()  # the mount point in the workspace stays empty


def test_a_symlink_at_the_mount_point_is_not_followed(backend, area, ws, folder):
    inbox = folder("inbox")
    target = area / "elsewhere"
    target.mkdir()
    target.chmod(0o777)
    os.symlink(target, ws / "inbox")  # what code of an earlier call could leave behind
    result = py(backend, WRITE.format(name="inbox"), ws, folders=[(inbox, "inbox", False)])
    assert "from the user" in result.stdout, result.stderr
    assert list(target.iterdir()) == [] and (ws / "inbox").is_dir() and not (ws / "inbox").is_symlink()


def test_code_writes_to_a_rw_folder_are_journaled_and_undone(scripted, area, folder):
    from agentd import Goal
    from agentd.folder_changes import FolderChanges, undo_run
    from agentd.folders import attach
    from agentd.testing import call, feedback, plan

    reports, inbox = folder("reports"), folder("inbox")
    code = ("import pathlib; pathlib.Path('reports/note.txt').write_text('by code'); "
            "pathlib.Path('reports/made.txt').write_text('new')\ntry:\n    open('inbox/note.txt', 'w')\n"
            "except OSError as e:\n    print('inbox refused', e.errno)")
    app, _ = scripted([plan(("change the report", "run_python")), call("run_python", code=code), feedback("done")],
                      settings={"workspace.allowed_dirs": [str(area / "user")]})
    goal = Goal(text="change reports/note.txt", dirs=attach([f"{reports}:rw", str(inbox)], app.config))
    run_id = app.engine.submit(goal)
    app.engine.run(run_id)
    [result] = [c["result"] for c in app.journal.tool_calls(run_id)]
    assert "inbox refused" in result["output"], result
    assert (reports / "note.txt").read_text() == "by code" and (inbox / "note.txt").read_text() == "from the user"
    changed = {c["file"]: c for c in FolderChanges(app.journal).changed_files(run_id)}
    assert set(changed) == {"reports/note.txt", "reports/made.txt"}
    assert changed["reports/note.txt"]["sha_before"] != changed["reports/note.txt"]["sha_after"]
    undo_run(app.config, app.journal, run_id)
    assert (reports / "note.txt").read_text() == "from the user" and not (reports / "made.txt").exists()


def test_a_rw_folder_too_big_to_keep_is_bound_read_only_for_code(scripted, area, folder):
    from agentd import Goal
    from agentd.folders import attach
    from agentd.testing import call, feedback, plan

    reports = folder("reports")
    (reports / "big.bin").write_bytes(b"x" * 300_000)
    code = ("try:\n    open('reports/note.txt', 'w').write('by code')\nexcept OSError as e:\n"
            "    print('refused', e.errno)")
    app, _ = scripted([plan(("change", "run_python")), call("run_python", code=code), feedback("give_up")],
                      settings={"workspace.allowed_dirs": [str(area / "user")], "workspace.undo_max_mb": 0.1})
    run_id = app.engine.submit(Goal(text="change reports/note.txt", dirs=attach([f"{reports}:rw"], app.config)))
    app.engine.run(run_id)
    [result] = [c["result"] for c in app.journal.tool_calls(run_id)]
    assert "refused" in result["output"] and "undo_max_mb" in result["output"], result
    assert (reports / "note.txt").read_text() == "from the user"
