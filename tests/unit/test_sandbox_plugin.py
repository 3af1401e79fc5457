"""The code plugin's own logic without running code: settings, limits, artifacts, hints, network grants."""

from __future__ import annotations

import sys
from pathlib import Path

import agentd_code
import pytest
from agentd_code import execution
from agentd_code import sandbox as sandbox_module
from agentd_code.sandbox import BwrapBackend, Limits, SandboxResult, SubprocessBackend
from agentd_code.settings import CodeSettings, CodeSettingsError, load_settings

from agentd import Goal, ToolContext
from agentd.tools import Tool, execute


def test_settings_defaults_and_key_named_errors():
    settings = load_settings({})
    assert (settings.backend, settings.network, settings.session, settings.require_strong) == (
        "auto", False, False, False)
    with pytest.raises(CodeSettingsError, match=r"plugins\.code\.limits\.memory_mb"):
        load_settings({"limits": {"memory_mb": 1}})
    with pytest.raises(CodeSettingsError, match=r"plugins\.code\.netwrk: unknown key"):
        load_settings({"netwrk": True})
    with pytest.raises(CodeSettingsError, match="wall_s must not exceed"):
        load_settings({"limits": {"wall_s": 300}})


def test_limits_follow_the_request_within_caps():
    settings = CodeSettings()
    assert execution.limits_for(settings, None, 60).wall_s == 30
    assert execution.limits_for(settings, 5, 60).wall_s == 5
    assert execution.limits_for(settings, 1000, 600).wall_s == 120  # max_wall_s
    assert execution.limits_for(settings, 1000, 20).wall_s == 19  # ends before the executor gives up
    assert execution.limits_for(settings, 2, 60).cpu_s == 2  # never more CPU than wall time


def test_snapshot_finds_created_changed_and_deleted_files(tmp_path):
    (tmp_path / "same.txt").write_text("a")
    (tmp_path / "edit.txt").write_text("a")
    (tmp_path / "gone.txt").write_text("a")
    before = execution.snapshot(tmp_path).files
    (tmp_path / "edit.txt").write_text("longer")
    (tmp_path / "gone.txt").unlink()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "new.txt").write_text("n")
    (tmp_path / execution.SESSION_DIR).mkdir()
    (tmp_path / execution.SESSION_DIR / "state.pkl").write_bytes(b"x")
    changed, deleted = execution.changes(before, execution.snapshot(tmp_path).files)
    assert changed == ["edit.txt", "sub/new.txt"] and deleted == ["gone.txt"]


@pytest.mark.parametrize(("result", "expected"), [
    (SandboxResult(None, signal="SIGKILL", timed_out=True), "wall-clock limit of 30s"),
    (SandboxResult(None, signal="SIGXCPU"), "CPU-time limit of 10s"),
    (SandboxResult(1, stderr="OSError: [Errno 27] File too large"), "size limit of 64 MB"),
    (SandboxResult(1, stderr="MemoryError"), "memory limit of 1024 MB"),
    (SandboxResult(1, stderr="BlockingIOError: [Errno 11] Resource temporarily unavailable"), "process limit"),
    (SandboxResult(1, stderr="OSError: [Errno 101] Network is unreachable"), "no network access"),
    (SandboxResult(None, cancelled=True, signal="SIGKILL"), "cancelled"),
    (SandboxResult(1, stderr="ValueError"), ""),
])
def test_hints_name_the_limit(result, expected):
    text = execution.hint(result, Limits(), network=False)
    assert (expected in text) if expected else text == ""


def test_tool_result_sets_error_on_failure_and_caps_artifacts():
    ok = execution.to_tool_result(SandboxResult(0, stdout="391\n", duration_s=0.1), Limits(), False,
                                  [f"f{i}.txt" for i in range(5)], [], max_artifacts=3)
    assert ok.ok and ok.artifacts == ["f0.txt", "f1.txt", "f2.txt"] and "2 more changed files" in ok.output
    assert ok.output.startswith("exit code 0") and "stdout:\n391" in ok.output
    bad = execution.to_tool_result(SandboxResult(2, stderr="boom"), Limits(), False, [], ["old.txt"], 50)
    assert bad.error and "exit code 2" in bad.error and "stderr:\nboom" in bad.error and "deleted: old.txt" in bad.error
    assert bad.data["exit_code"] == 2 and bad.data["deleted"] == ["old.txt"]


def test_one_short_line_of_output_is_the_calls_value():
    def value(result: SandboxResult):
        return execution.to_tool_result(result, Limits(), False, [], [], 50).data.get("value")

    assert value(SandboxResult(0, stdout="391\n")) == "391"
    assert value(SandboxResult(0, stdout="a\nb\n")) is None  # a document, not a value
    assert value(SandboxResult(0, stdout="x" * 101)) is None and value(SandboxResult(0, stdout="")) is None
    assert value(SandboxResult(1, stdout="391\n")) is None  # a failed call has no value
    assert value(SandboxResult(0, stdout="391", stdout_cut=True)) is None
    wrote = execution.to_tool_result(SandboxResult(0, stdout="5\n"), Limits(), False, ["a.txt"], [], 50)
    assert "value" not in wrote.data  # open('a.txt', 'w').write('hello') shows 5: an action, not an answer


def test_goal_phrases_match_whole_words_in_any_case(scripted):
    app, _ = scripted([])
    assert app.tools.requested_in("What is 17 * 23? Use  Python to compute it.") == ["run_python"]
    assert app.tools.requested_in("Count the files using the shell") == ["run_shell"]
    assert app.tools.requested_in("Write a pythonic haiku into poem.txt") == []
    assert app.tools.requested_in("Make a file named reuse python.txt") == []
    assert app.tools.requested_in("Do not use Python; just write 4 to a.txt") == []
    assert app.tools.requested_in("Compute 2+2 without using the shell") == []
    assert app.tools.requested_in("Write hello world in Python to hello.py") == []
    assert app.tools.requested_in("No shell please. Use Python to add 2 and 2") == ["run_python"]


def test_interpreter_for_each_backend():
    for backend in (BwrapBackend(), SubprocessBackend()):  # both mount the daemon's own interpreter read-only
        chosen = execution.choose_interpreter(CodeSettings(), backend)
        assert chosen.executable == sys.executable and Path(sys.base_prefix) in chosen.ro_paths
    extra = execution.choose_interpreter(CodeSettings(extra_ro_paths=["/opt/data"]), BwrapBackend())
    assert Path("/opt/data") in extra.ro_paths


def test_package_folders_outside_the_prefix_are_mounted_and_on_pythonpath(tmp_path, monkeypatch):
    package = tmp_path / "site" / "mypkg_for_sandbox_test"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    execution.package_folders.cache_clear()
    interp = execution.choose_interpreter(CodeSettings(python_packages=["mypkg_for_sandbox_test"]), BwrapBackend())
    assert tmp_path / "site" in interp.ro_paths and interp.pythonpath == [str(tmp_path / "site")]


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, argv, workspace, limits, **kw):
        self.calls.append({"argv": argv, "workspace": workspace, "limits": limits} | kw)
        return SandboxResult(0, stdout="ok\n", backend="fake", strong=True)


@pytest.fixture
def recorder(monkeypatch):
    rec = Recorder()
    monkeypatch.setattr(sandbox_module, "run_sandboxed", rec)
    monkeypatch.setattr(sandbox_module, "select_backend", lambda name, strong=False: BwrapBackend())
    return rec


def test_network_is_granted_per_schedule(recorder, tmp_path):
    tool = Tool.from_function(agentd_code.run_python)
    settings = {"network_schedules": ["nightly-fetch"]}
    agentd_code.before_tool_call(call=None, tool=tool, run_id="r1", goal=Goal(text="x", schedule="nightly-fetch"))
    agentd_code.before_tool_call(call=None, tool=tool, run_id="r2", goal=Goal(text="x"))
    execute(tool, {"code": "1"}, ToolContext(run_id="r1", workspace=tmp_path / "a", settings=settings))
    execute(tool, {"code": "1"}, ToolContext(run_id="r2", workspace=tmp_path / "b", settings=settings))
    execute(tool, {"code": "1"}, ToolContext(run_id="r3", workspace=tmp_path / "c", settings={"network": True}))
    assert [c["network"] for c in recorder.calls] == [True, False, True]
    agentd_code.run_finished(run_id="r1", goal=None, outcome={}, state=None)
    assert agentd_code._schedule_of("r1") is None


def test_tools_pass_code_on_stdin_and_the_session_folder(recorder, tmp_path):
    tool = Tool.from_function(agentd_code.run_python)
    result = execute(tool, {"code": "print(1)"}, ToolContext(run_id="r", workspace=tmp_path, settings={"session": True}))
    assert result.ok
    [call] = recorder.calls
    assert call["stdin"] == b"print(1)" and call["env"]["AGENTD_SESSION"] == execution.SESSION_DIR
    assert call["argv"][1:3] == ["-c", execution.runner_source()]
    shell = Tool.from_function(agentd_code.run_shell)
    execute(shell, {"command": "ls"}, ToolContext(run_id="r", workspace=tmp_path))
    assert recorder.calls[1]["argv"][1:] == ["-c", "ls"] and recorder.calls[1]["stdin"] is None


def test_tools_are_registered_with_their_side_effect(scripted):
    app, _ = scripted([])
    for name in ("run_python", "run_shell"):
        tool = app.tools[name]
        assert tool.side_effects == ("runs_code",) and tool.plugin == "code"
        assert set(tool.parameters["properties"]) == {"code" if name == "run_python" else "command", "timeout_s"}


def test_doctor_reports_a_bad_backend_without_running_anything():
    class Config:
        def plugin_settings(self, name):
            return {"backend": "nope"}

    [(name, ok, detail)] = agentd_code.doctor_checks(Config())
    assert name == "code sandbox" and not ok and "unknown sandbox backend" in detail


def test_unavailable_tools_explains_a_missing_sandbox(monkeypatch):
    class Config:
        def __init__(self, table):
            self.table = table

        def plugin_settings(self, name):
            return self.table

    def refuse(name, strong=False):
        raise sandbox_module.SandboxUnavailable("bubblewrap is not installed (apt-get install bubblewrap)")

    assert agentd_code.unavailable_tools(Config({"limits": {"cpu_s": 0}}))[0].startswith(
        "run_python, run_shell cannot run code: plugins.code.limits.cpu_s")
    monkeypatch.setattr(sandbox_module, "select_backend", refuse)
    [reason] = agentd_code.unavailable_tools(Config({}))
    assert "apt-get install bubblewrap" in reason
    monkeypatch.setattr(sandbox_module, "select_backend", lambda name, strong=False: BwrapBackend())
    assert agentd_code.unavailable_tools(Config({})) == []
