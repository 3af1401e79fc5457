"""agentd_code.sandbox without real isolation: command lines, selection, workspace handover, supervision.

Supervision (output, exit status, deadline, cancel) is exercised with a pass-through backend that runs the
command as a plain child process, so these tests need no namespaces and stay fast.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest
from agentd_code import sandbox
from agentd_code.sandbox import (
    Backend,
    BwrapBackend,
    Capture,
    Job,
    Launch,
    Limits,
    SandboxUnavailable,
    SubprocessBackend,
    clean_env,
    run_sandboxed,
    sandbox_uid,
    select_backend,
)


class PassThrough(Backend):
    """No isolation at all: the command runs as it is (for testing the supervisor)."""

    name = "passthrough"
    strong = True

    def launch(self, job: Job) -> Launch:
        return Launch(argv=job.argv, cwd=job.workspace, workspace_inside=str(job.workspace))


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch):
    monkeypatch.setattr(sandbox, "_probes", {})
    monkeypatch.setattr(sandbox, "_warned", set())


def job(tmp_path, **kw) -> Job:
    defaults = {"argv": ["python3", "-c", "pass"], "workspace": tmp_path, "limits": Limits(), "network": False,
                "uid": 2_100_000_123}
    return Job(**(defaults | kw))


def test_prlimit_args_cover_every_limit():
    args = Limits(cpu_s=2.5, memory_mb=100, file_size_mb=3, max_procs=9, max_open_files=40).prlimit_args()
    assert args == ["--cpu=3:4", f"--as={100 * 2**20}", f"--fsize={3 * 2**20}", "--nproc=9", "--nofile=40",
                    "--core=0"]


def test_capture_keeps_head_and_tail_and_counts_the_cut():
    cap = Capture(100)
    for _ in range(10):
        cap.feed(b"a" * 50)
    cap.feed(b"THE END")
    text = cap.text("stdout")
    assert cap.cut == 507 - 100
    assert text.startswith("a" * 75) and text.endswith("THE END")
    assert "[... 407 bytes of stdout cut here ...]" in text
    small = Capture(100)
    small.feed(b"short")
    assert small.text("stdout") == "short" and small.cut == 0


def test_clean_env_carries_nothing_of_the_daemon(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-canary")
    env = clean_env({"EXTRA": "1"}, ["/opt/py/bin"])
    assert "sk-canary" not in env.values() and "OPENAI_API_KEY" not in env
    assert env["EXTRA"] == "1" and env["PATH"].startswith("/opt/py/bin:") and env["HOME"] == "/tmp"


def test_sandbox_uid_is_per_workspace_and_unprivileged(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    a, b = sandbox_uid(tmp_path / "run1"), sandbox_uid(tmp_path / "run2")
    assert a != b and a == sandbox_uid(tmp_path / "run1")
    assert sandbox.UID_BASE <= a < sandbox.UID_BASE + sandbox.UID_SPAN < 2**31
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert sandbox_uid(tmp_path / "run1") is None


def test_bwrap_args_isolate_network_and_mount_only_what_is_asked(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    args = BwrapBackend().bwrap_args(job(tmp_path, ro_paths=[Path("/root/.pyenv/versions/3.11.7")]))
    joined = " ".join(args)
    assert "--unshare-net" in args and "--unshare-pid" in args and "--unshare-user" not in args
    assert "--perms 0755 --dir /root --perms 0755 --dir /root/.pyenv" in joined
    assert "--ro-bind-try /root/.pyenv/versions/3.11.7 /root/.pyenv/versions/3.11.7" in joined
    assert args[-5:] == ["--bind", str(tmp_path), "/workspace", "--chdir", "/workspace"]
    assert "/etc/resolv.conf" not in joined
    binds = [args[i + 1] for i, a in enumerate(args) if a in ("--bind", "--ro-bind", "--ro-bind-try")]
    assert "/" not in binds and "/home" not in binds and "/root" not in binds
    with_net = BwrapBackend().bwrap_args(job(tmp_path, network=True))
    assert "--unshare-net" not in with_net


def test_bwrap_unprivileged_daemon_uses_a_user_namespace(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    args = BwrapBackend().bwrap_args(job(tmp_path, uid=None))
    assert "--unshare-user" in args and "--cap-add" not in args


def test_bwrap_launch_drops_to_the_sandbox_uid_inside(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    launch = BwrapBackend().launch(job(tmp_path))
    try:
        assert launch.argv[:3] == ["setpriv", "--pdeathsig=KILL", "--"] and "prlimit" in launch.argv
        cut = launch.argv.index("--reuid=2100000123") - 1
        assert launch.argv[cut] == "setpriv" and launch.argv[cut - 1] == "--"
        assert launch.argv.index("bwrap") < cut and "--pdeathsig=KILL" in launch.argv[cut:]
        assert "--no-new-privs" in launch.argv and launch.argv[-3:] == ["python3", "-c", "pass"]
        passwd = os.read(launch.pass_fds[0], 1000).decode()
        assert "sandbox:x:2100000123:2100000123" in passwd
    finally:
        for fd in launch.pass_fds:
            os.close(fd)


def test_fallback_launch_isolates_network_and_drops_privileges(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    launch = SubprocessBackend().launch(job(tmp_path))
    assert launch.argv[:3] == ["setpriv", "--pdeathsig=KILL", "--"] and launch.argv[3] == "unshare"
    assert {"--net", "--pid", "--mount", "--kill-child"} <= set(launch.argv)
    drop = launch.argv.index("--reuid=2100000123")
    assert launch.argv.index("unshare") < launch.argv.index("-I") < drop < launch.argv.index("prlimit")
    assert launch.argv.index("prlimit") < launch.argv.index("python3")
    assert launch.cwd == Path("/") and launch.workspace_inside == "/workspace"
    assert "--net" not in SubprocessBackend().launch(job(tmp_path, network=True)).argv


def test_auto_prefers_bwrap_and_falls_back_with_one_warning(monkeypatch, caplog):
    monkeypatch.setattr(BwrapBackend, "probe", lambda self: None)
    assert select_backend("auto").name == "bwrap"
    monkeypatch.setattr(sandbox, "_probes", {})
    monkeypatch.setattr(BwrapBackend, "probe", lambda self: "bubblewrap is not installed")
    monkeypatch.setattr(SubprocessBackend, "probe", lambda self: None)
    with caplog.at_level(logging.WARNING, logger="agentd_code.sandbox"):
        assert select_backend("auto").name == "subprocess"
        assert select_backend("auto").name == "subprocess"
    warnings = [r for r in caplog.records if "WEAK isolation" in r.getMessage()]
    assert len(warnings) == 1 and "bubblewrap is not installed" in warnings[0].getMessage()
    with pytest.raises(SandboxUnavailable, match="require_strong"):
        select_backend("auto", require_strong=True)


def test_named_and_plugged_backends(monkeypatch):
    monkeypatch.setitem(sandbox.BACKENDS, "passthrough", PassThrough)
    assert isinstance(select_backend("passthrough"), PassThrough)
    assert isinstance(select_backend(f"{__name__}:PassThrough"), PassThrough)
    with pytest.raises(SandboxUnavailable, match="unknown sandbox backend 'nope'"):
        select_backend("nope")
    with pytest.raises(SandboxUnavailable, match="cannot load"):
        select_backend("no_such_module_xyz:Thing")
    monkeypatch.setattr(SubprocessBackend, "probe", lambda self: None)
    with pytest.raises(SandboxUnavailable, match="weak isolation"):
        select_backend("subprocess", require_strong=True)


def test_unusable_backend_says_why(monkeypatch):
    monkeypatch.setattr(BwrapBackend, "probe", lambda self: "bubblewrap is not installed (apt-get install bubblewrap)")
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        select_backend("bwrap")


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_workspace_is_handed_over_but_hard_links_are_not(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("root's")
    ws = tmp_path / "ws"
    (ws / "sub").mkdir(parents=True)
    (ws / "sub" / "daemon.txt").write_text("written by a workspace tool")
    os.link(outside, ws / "linked.txt")
    os.symlink("/etc/passwd", ws / "link")
    sandbox.prepare_workspace(ws, 2_100_000_321)
    assert ws.stat().st_uid == 2_100_000_321 and ws.stat().st_mode & 0o777 == 0o700
    assert (ws / "sub" / "daemon.txt").stat().st_uid == 2_100_000_321
    assert outside.stat().st_uid == 0  # the hard link was left alone
    assert Path("/etc/passwd").stat().st_uid == 0 and os.lstat(ws / "link").st_uid == 2_100_000_321


def run(tmp_path, argv, **kw):
    return run_sandboxed(argv, tmp_path / "ws", backend=PassThrough(), **kw)


def test_supervisor_reports_exit_codes_signals_and_output(tmp_path):
    ok = run(tmp_path, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (ok.exit_code, ok.stdout, ok.stderr, ok.signal) == (3, "out\n", "err\n", None)
    killed = run(tmp_path, ["sh", "-c", "kill -9 $$"])
    assert killed.exit_code is None and killed.signal == "SIGKILL" and not killed.ok
    echoed = run(tmp_path, ["cat"], stdin=b"piped")
    assert echoed.stdout == "piped"


def test_supervisor_kills_the_group_on_timeout(tmp_path):
    result = run(tmp_path, ["sh", "-c", "sleep 30 & sleep 30; echo never"], limits=Limits(wall_s=0.3))
    assert result.timed_out and result.signal == "SIGKILL" and "never" not in result.stdout


def test_supervisor_honours_cancel(tmp_path):
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    result = run(tmp_path, ["sleep", "30"], cancel=cancel)
    assert result.cancelled and not result.timed_out
    before = threading.Event()
    before.set()
    marker = tmp_path / "ws" / "ran"
    result = run(tmp_path, ["touch", str(marker)], cancel=before)
    assert result.cancelled and not marker.exists()


def test_supervisor_cuts_long_output(tmp_path):
    result = run(tmp_path, ["python3", "-c", "print('y' * 10000)"], limits=Limits(output_chars=200))
    assert result.stdout_cut == 10001 - 200 and "cut here" in result.stdout


def test_a_code_result_gives_what_the_program_printed_as_its_evidence():
    """The outcome checks read stdout/stderr, not the status line's exit code and duration (engine/verify.py)."""
    from agentd_code.execution import to_tool_result
    from agentd_code.process import SandboxResult

    def result(stdout, stderr=""):
        run = SandboxResult(exit_code=0, stdout=stdout, stderr=stderr, duration_s=0.08)
        return to_tool_result(run, Limits(), network=False, changed=[], deleted=[], max_artifacts=10)

    silent = result("")
    assert "after 0.08s" in silent.output and silent.data["evidence"] == ""
    assert result("13.0\n", "warning\n").data["evidence"] == "13.0\n\nwarning\n"
