"""Issue 15 (4–6): an owner-only home whatever the umask, a way out of a damaged journal, bad homes refused."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from agentd.cli import cli
from agentd.home import HomeError, check_writable, loose_entries, prepare_home
from agentd.journal import Journal
from agentd.journal_recovery import RecoveryError, check_journal, recover_journal
from agentd.records import Goal
from agentd.testing import call, feedback, make_test_app, plan


@pytest.fixture
def loose_umask():
    """The most permissive umask a user might have; restored afterwards (agentd sets 0077 when it opens a home)."""
    old = os.umask(0o000)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_a_new_home_and_everything_a_run_writes_are_owner_only_whatever_the_umask(tmp_path, loose_umask):
    home = tmp_path / "home"
    app, _ = make_test_app(
        home, [plan(("write", "write_file")), call("write_file", path="a.txt", content="secret"), feedback("done")]
    )
    try:
        run_id = app.engine.submit(Goal(text="Create a.txt"))
        app.engine.run(run_id)
        (home / "logs" / "daemon.log").write_text("x")  # any file this process creates later
    finally:
        app.close()
    assert (home / "workspaces" / run_id / "a.txt").read_text() == "secret"
    entries = [home, *home.rglob("*")]
    assert {p.name for p in entries} >= {"agentd.db", "workspaces", run_id, "a.txt", "logs", "daemon.log"}
    assert [p for p in entries if mode(p) & 0o077] == []
    assert mode(home) == mode(home / "workspaces" / run_id) == 0o700


def test_a_loose_home_is_tightened_once_and_says_so_once(tmp_path, caplog):
    home = tmp_path / "home"
    (home / "workspaces" / "r1").mkdir(parents=True)
    for path in (home, home / "workspaces", home / "workspaces" / "r1"):
        path.chmod(0o755)
    script = home / "workspaces" / "r1" / "run.sh"
    script.write_text("echo hi")
    script.chmod(0o755)
    (home / "agentd.db").write_bytes(b"")
    (home / "agentd.db").chmod(0o644)
    unrelated = home / "README.md"  # a home can be a source checkout: its own files are not agentd's to change
    unrelated.write_text("x")
    unrelated.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="agentd.home"):
        tightened = prepare_home(home)
        again = prepare_home(home)
    assert set(tightened) == {home, home / "workspaces", home / "workspaces" / "r1", script, home / "agentd.db"}
    assert again == [] and len(caplog.records) == 1 and "readable by other users" in caplog.records[0].message
    assert mode(script) == 0o700 and mode(home / "agentd.db") == 0o600  # owner bits (exec) kept
    assert mode(unrelated) == 0o644


def test_doctor_flags_group_or_world_readable_files_before_tightening_them(home, loose_umask):
    (home / "workspaces" / "r1").mkdir(parents=True)
    (home / "workspaces" / "r1" / "notes.txt").write_text("x")
    home.chmod(0o700)
    (home / "workspaces").chmod(0o700)
    (home / "workspaces" / "r1").chmod(0o700)
    (home / "workspaces" / "r1" / "notes.txt").chmod(0o640)
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 1
    line = next(ln for ln in result.output.splitlines() if "home private" in ln)
    assert "FAIL" in line and "notes.txt" in line and "chmod -R go-rwx" in line
    assert loose_entries(home) == []  # the doctor's own app start then tightened it
    assert "home private: owner-only" in CliRunner().invoke(cli, ["doctor"]).output


# -- a damaged journal ---------------------------------------------------------------------------------------
def journal_with_runs(home: Path, count: int = 30) -> list[str]:
    app, _ = make_test_app(home, [])
    try:
        ids = [app.engine.submit(Goal(text=f"goal {i} " + "x" * 3000)) for i in range(count)]
    finally:
        app.close()
    with sqlite3.connect(home / "agentd.db") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return ids


def damage(path: Path, how: str) -> None:
    size = path.stat().st_size
    if how == "truncated":
        os.truncate(path, size // 3)
    elif how == "garbage pages":
        with open(path, "r+b") as f:
            f.seek(size // 2)
            f.write(b"\xff" * 8192)
    else:  # not a database at all
        path.write_bytes(os.urandom(5000))


@pytest.mark.parametrize("how, some_saved", [("truncated", True), ("garbage pages", True), ("garbage", False)])
def test_check_names_the_damage_and_recover_keeps_the_file_and_saves_what_is_readable(home, how, some_saved):
    ids = journal_with_runs(home)
    db = home / "agentd.db"
    damage(db, how)
    damaged_bytes = db.read_bytes()
    with pytest.raises(Exception, match="journal recover"):  # the error that used to be a dead end now says what to do
        Journal(db).list_runs(limit=100)
    runner = CliRunner()
    checked = runner.invoke(cli, ["journal", "check"])
    assert checked.exit_code == 1 and "agentd journal recover" in checked.output
    doctor = runner.invoke(cli, ["doctor"])
    assert doctor.exit_code == 1 and "journal recover" in doctor.output and "damaged" in doctor.output
    result = runner.invoke(cli, ["journal", "recover"])
    assert result.exit_code == 0, result.output
    kept = sorted(home.glob("agentd.db.corrupt-*"))
    assert kept and kept[0].read_bytes() == damaged_bytes  # moved aside, never deleted
    saved = Journal(db).list_runs(limit=100)
    assert f"runs saved: {len(saved)}" in result.output
    assert {r["id"] for r in saved} <= set(ids)
    assert (len(saved) > 0) == some_saved
    lost = len(ids) - len(saved)
    assert (f"{lost} workspace(s)" in result.output) == (lost > 0)  # runs lost, files kept and reported
    assert runner.invoke(cli, ["journal", "check"]).exit_code == (1 if lost else 0)


def test_a_deleted_wal_leaves_workspaces_no_run_owns_and_check_reports_them(home):
    import subprocess
    import sys

    kept = journal_with_runs(home, 1)[0]
    crash = (  # a process that journals a run, then dies before any checkpoint: the WAL holds the only copy
        "import os, sys\nfrom agentd.testing import make_test_app\nfrom agentd.records import Goal\n"
        "app, _ = make_test_app(sys.argv[1], [])\nprint(app.engine.submit(Goal(text='only in the WAL')))\n"
        "os._exit(0)\n"
    )
    lost = subprocess.run([sys.executable, "-c", crash, str(home)], capture_output=True, text=True, check=True)
    lost_id = lost.stdout.strip()
    (home / "agentd.db-wal").unlink()
    (home / "agentd.db-shm").unlink()
    report = check_journal(home / "agentd.db", home / "workspaces")
    assert report.ok and report.runs == 1 and report.orphans == [lost_id], report
    # A separate process, as a user would run it: one that still held the deleted WAL open would see its rows.
    result = subprocess.run([sys.executable, "-m", "agentd", "journal", "check"], capture_output=True, text=True,
                            env={**os.environ, "AGENTD_HOME": str(home)})
    result.output, result.exit_code = result.stdout + result.stderr, result.returncode
    assert result.exit_code == 1 and lost_id in result.output and kept not in result.output


def test_recover_refuses_while_a_daemon_holds_the_home(home):
    import fcntl

    journal_with_runs(home, 2)
    fd = os.open(home / "agentd.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(RecoveryError, match="daemon stop"):
            recover_journal(home / "agentd.db", home / "workspaces")
    finally:
        os.close(fd)
    assert not list(home.glob("agentd.db.corrupt-*"))


# -- homes that cannot be written ----------------------------------------------------------------------------
def test_check_writable_refuses_a_read_only_home_and_an_immutable_journal(tmp_path):
    import shutil
    import subprocess

    home = tmp_path / "home"
    prepare_home(home)
    Journal(home / "agentd.db").close()
    check_writable(home, home / "agentd.db")
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(home / "agentd.db")]).returncode:
        pytest.skip("chattr +i is not available here (needs root and a file system with attributes)")
    try:
        with pytest.raises(HomeError, match="cannot be written.*chattr -i"):
            check_writable(home, home / "agentd.db")
    finally:
        subprocess.run(["chattr", "-i", str(home / "agentd.db")], check=True)
    ro = tmp_path / "ro"
    ro.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], check=True)
    try:
        with pytest.raises(HomeError, match="not writable"):
            check_writable(ro, ro / "agentd.db")
    finally:
        subprocess.run(["umount", str(ro)], check=True)


def test_checked_cache_files_are_trusted_only_for_their_key_and_whole_and_the_newest_are_kept(tmp_path, caplog):
    import time

    from agentd.home import keep_newest, read_checked, write_checked

    def payload(f, header):
        data = f.read()
        if len(data) != header["bytes"]:
            raise ValueError("truncated or too long")
        return data

    path = tmp_path / "a.bin"
    write_checked(path, b"MAGIC\n", {"key": "k1", "bytes": 5}, (b"hel", b"lo"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_checked(path, b"MAGIC\n", "k1", payload, "test cache") == b"hello"
    assert read_checked(tmp_path / "none.bin", b"MAGIC\n", "k1", payload, "test cache") is None
    with caplog.at_level(logging.WARNING):
        assert read_checked(path, b"MAGIC\n", "k2", payload, "test cache") is None  # made for another key
    assert "ignoring the test cache" in caplog.text and not path.exists()  # removed, to be rebuilt
    write_checked(path, b"MAGIC\n", {"key": "k1", "bytes": 5}, (b"hel",))
    assert read_checked(path, b"MAGIC\n", "k1", payload, "test cache") is None and not path.exists()

    for name in ("1.bin", "2.bin", "3.bin"):
        write_checked(tmp_path / name, b"MAGIC\n", {"key": name, "bytes": 1}, (b"x",))
        time.sleep(0.01)
    read_checked(tmp_path / "1.bin", b"MAGIC\n", "1.bin", payload, "test cache")  # used last: kept
    keep_newest(tmp_path, "*.bin", 2)
    assert sorted(p.name for p in tmp_path.glob("*.bin")) == ["1.bin", "3.bin"]
