"""run_python and run_shell through agentd.tools.execute, in the real sandbox: results, artifacts, limits,
settings and the per-run session."""

from __future__ import annotations

import os
import threading

import agentd_code
import pytest
from agentd_code import run_python, run_shell

from agentd import ToolContext
from agentd.tools import Tool, execute

pytestmark = pytest.mark.integration

PY, SH = Tool.from_function(run_python), Tool.from_function(run_shell)


def ctx_for(tmp_path, name="ws", **settings):
    return ToolContext(run_id=name, workspace=tmp_path / name, settings=settings, timeout_s=60)


def test_result_has_exit_code_output_and_artifacts(tmp_path):
    ctx = ctx_for(tmp_path)
    (ctx.workspace).mkdir()
    (ctx.workspace / "keep.txt").write_text("untouched")
    (ctx.workspace / "edit.txt").write_text("old")
    result = execute(PY, {"code": "import os\nos.makedirs('out', exist_ok=True)\nopen('out/a.csv','w').write('1,2')\n"
                                  "open('edit.txt','w').write('new')\nprint('hi')\nimport sys; print('warn', file=sys.stderr)"},
                     ctx)
    assert result.ok, result.error
    assert result.artifacts == ["edit.txt", os.path.join("out", "a.csv")]
    assert "stdout:\nhi" in result.output and "stderr:\nwarn" in result.output
    assert result.data["exit_code"] == 0 and result.data["duration_s"] > 0
    assert (ctx.workspace / "out" / "a.csv").read_text() == "1,2"


def test_shell_runs_in_the_workspace_with_python_on_path(tmp_path):
    ctx = ctx_for(tmp_path)
    result = execute(SH, {"command": "echo made > f.txt && python3 -c 'print(6*7)' && exit 3"}, ctx)
    assert result.data["exit_code"] == 3 and "42" in result.error
    assert result.artifacts == ["f.txt"] and (ctx.workspace / "f.txt").read_text() == "made\n"


def test_timeout_is_reported_with_a_hint(tmp_path):
    result = execute(PY, {"code": "import time; time.sleep(30)", "timeout_s": 1}, ctx_for(tmp_path))
    assert result.data["timed_out"] and "wall-clock limit of 1s" in result.error


def test_output_cut_is_noted(tmp_path):
    result = execute(PY, {"code": "print('x' * 50_000)"}, ctx_for(tmp_path, output_chars=500))
    assert result.data["stdout_cut"] > 49_000 and "cut here" in result.output


def test_settings_errors_name_the_key(tmp_path):
    result = execute(PY, {"code": "print(1)"}, ctx_for(tmp_path, limits={"cpu_s": -1}))
    assert "plugins.code.limits.cpu_s" in result.error
    result = execute(PY, {"code": "print(1)"}, ctx_for(tmp_path, backend="nope"))
    assert "unknown sandbox backend 'nope'" in result.error


def test_require_strong_refuses_the_weak_backend(tmp_path):
    ctx = ctx_for(tmp_path, backend="subprocess", require_strong=True)
    result = execute(PY, {"code": "open('ran.txt', 'w').write('x')"}, ctx)
    assert "require_strong" in result.error
    assert not (ctx.workspace / "ran.txt").exists()


def test_weak_backend_runs_code_too(tmp_path):
    result = execute(PY, {"code": "print(17 * 23)"}, ctx_for(tmp_path, backend="subprocess"))
    assert result.ok, result.error
    assert result.data["backend"] == "subprocess" and not result.data["strong_isolation"]


def test_cancelled_run_kills_the_call(tmp_path):
    ctx = ctx_for(tmp_path)
    threading.Timer(1.0, ctx.cancel.set).start()
    result = execute(PY, {"code": "import time; time.sleep(30)"}, ctx)
    assert result.data["cancelled"] and "cancelled" in result.error


def test_network_setting_grants_network(tmp_path):
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    code = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3); print('connected')"
    try:
        denied = execute(PY, {"code": code}, ctx_for(tmp_path, "a"))
        granted = execute(PY, {"code": code}, ctx_for(tmp_path, "b", network=True))
    finally:
        listener.close()
    assert not denied.ok and granted.ok and "connected" in granted.output


def test_session_keeps_state_between_calls(tmp_path):
    ctx = ctx_for(tmp_path, session=True)
    first = execute(PY, {"code": (
        "import math as m\n"
        "def area(r):\n    return m.pi * r * r\n"
        "class Box:\n    def __init__(self, v):\n        self.v = v\n"
        "square = lambda x: x * x\n"
        "box = Box(3)\ncount = 41\nhandle = open('log.txt', 'w')\n"
    )}, ctx)
    assert first.ok, first.error
    assert "not kept for the next call: handle (TextIOWrapper)" in first.output
    second = execute(PY, {"code": "count += 1\nprint(count, box.v, square(4), round(area(1), 2))"}, ctx)
    assert second.ok, second.error
    assert "42 3 16 3.14" in second.output
    killed = execute(PY, {"code": "count = 0\nimport time; time.sleep(30)", "timeout_s": 1}, ctx)
    assert killed.data["timed_out"]
    third = execute(PY, {"code": "print(count)"}, ctx)
    assert "stdout:\n42" in third.output  # the killed call's changes were not kept
    assert ".agentd_session" not in " ".join(first.artifacts + second.artifacts)


def test_without_session_each_call_starts_fresh(tmp_path):
    ctx = ctx_for(tmp_path)
    execute(PY, {"code": "count = 41"}, ctx)
    result = execute(PY, {"code": "print(count)"}, ctx)
    assert "NameError" in result.error


def test_doctor_names_the_active_isolation():
    class Config:
        def plugin_settings(self, name):
            return {"python_packages": ["json"]}

    checks = dict((name, (ok, detail)) for name, ok, detail in agentd_code.doctor_checks(Config()))
    ok, detail = checks["code sandbox"]
    assert ok and ("strong isolation" in detail or "WEAK isolation" in detail)
    assert checks["code sandbox python"][0], checks["code sandbox python"][1]
    memory, landlock = checks["code sandbox memory"][1], checks["code sandbox landlock"][1]
    assert "bounds each call as a whole" in memory or "bounds each process only" in memory
    assert "Landlock ABI" in landlock or "no Landlock" in landlock


def test_doctor_says_when_memory_is_per_process_only_and_landlock_is_missing(monkeypatch):
    from agentd_code import cgroup, doctor

    monkeypatch.setattr(cgroup, "parent", lambda: (None, "no cgroup file system is mounted"))
    monkeypatch.setattr(doctor, "landlock_abi", lambda: 0)
    assert "bounds each process only" in doctor.memory_check()[2]
    assert "no Landlock" in doctor.landlock_check(True)[2]


def test_doctor_fails_for_a_package_the_sandbox_lacks():
    class Config:
        def plugin_settings(self, name):
            return {"python_packages": ["no_such_package_for_doctor"]}

    checks = {name: ok for name, ok, _ in agentd_code.doctor_checks(Config())}
    assert checks["code sandbox python"] is False


def test_doctor_hook_reaches_agentd_doctor(scripted):
    app, _ = scripted([])
    results = dict(app.host.call_each("doctor_checks", config=app.config))
    names = [name for name, _, _ in results["code"]]
    assert names == ["code sandbox", "code sandbox memory", "code sandbox landlock", "code sandbox python"]
