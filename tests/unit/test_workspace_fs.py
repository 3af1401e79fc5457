"""Workspace files opened by fd without following symlinks, writes by rename, and the bounded fd walk."""

from __future__ import annotations

import os

import pytest

import agentd.workspace_fs
from agentd import ToolError
from agentd.tools import WorkspaceWalk, open_in_workspace, replace_in_workspace


@pytest.fixture(params=[True, False], ids=["openat2", "component-by-component"])
def mode(request, monkeypatch):
    if not request.param:
        monkeypatch.setattr(agentd.workspace_fs, "_openat2_works", False)
    return request.param


def test_a_symlink_on_any_component_is_refused(tmp_path, mode):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    ws = tmp_path / "ws"
    (ws / "real").mkdir(parents=True)
    (ws / "real" / "ok.txt").write_text("fine")
    os.symlink(outside, ws / "link")
    os.symlink(outside / "secret.txt", ws / "real" / "filelink")
    fd = open_in_workspace(ws, "real/ok.txt")
    assert os.read(fd, 10) == b"fine"
    os.close(fd)
    for bad in ("link/secret.txt", "real/filelink", "../outside/secret.txt", "/etc/passwd", ""):
        with pytest.raises(ToolError):
            os.close(open_in_workspace(ws, bad))
    with pytest.raises(ToolError, match="symlink"):
        replace_in_workspace(ws, "link/new.txt", b"x")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


def test_replace_never_writes_through_a_hard_link_and_keeps_the_mode(tmp_path, mode):
    victim = tmp_path / "victim.txt"
    victim.write_text("original")
    ws = tmp_path / "ws"
    ws.mkdir()
    os.link(victim, ws / "linked.txt")
    replace_in_workspace(ws, "linked.txt", b"new")
    assert victim.read_text() == "original" and (ws / "linked.txt").read_text() == "new"
    (ws / "run.sh").write_text("echo")
    (ws / "run.sh").chmod(0o755)
    replace_in_workspace(ws, "run.sh", b"echo hi")
    assert (ws / "run.sh").stat().st_mode & 0o777 == 0o755
    replace_in_workspace(ws, "deep/er/file.txt", b"made")
    assert (ws / "deep" / "er" / "file.txt").read_text() == "made"
    with pytest.raises(ToolError, match="folder"):
        replace_in_workspace(ws, "deep", b"x")
    assert not [p for p in ws.rglob(".*.tmp")]


def test_the_walk_is_bounded_follows_no_symlink_and_survives_deep_trees(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "hidden.txt").write_text("x")
    os.symlink(outside, ws / "link")
    for i in range(30):
        (ws / f"f{i}").write_text("x")
    walk = WorkspaceWalk(ws)
    names = {e.path for e in walk}
    assert "link" in names and not any("hidden" in n for n in names) and not walk.truncated
    bounded = WorkspaceWalk(ws, max_entries=10)
    assert len(list(bounded)) == 10 and bounded.truncated
    fd = os.open(ws, os.O_RDONLY)
    for _ in range(300):  # deeper than the recursion limit of os.walk-style walks would allow in places
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(fd)
    deep = WorkspaceWalk(ws, max_depth=50)
    entries = list(deep)
    assert deep.too_deep and not deep.truncated and len(entries) == 31 + 50
    os.system(f"rm -rf {ws / 'd'}")
