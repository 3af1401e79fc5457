"""Ordinary code still works on both backends (no false blocks), and the workspace limits hold: a size cap
checked after each call, and bounded walks that a huge or deeply nested workspace cannot break."""

from __future__ import annotations

import pytest
from agentd_code import execution, run_python, run_shell
from sandbox_fixtures import _usable

from agentd import ToolContext
from agentd.tools import Tool, execute

pytestmark = pytest.mark.integration

PY, SH = Tool.from_function(run_python), Tool.from_function(run_shell)


@pytest.fixture(params=["bwrap", "subprocess"])
def settings(request):
    if _usable(request.param):
        pytest.skip(_usable(request.param))
    return {"backend": request.param}


def ctx_for(tmp_path, settings, name="ws", **more):
    return ToolContext(run_id=name, workspace=tmp_path / name, settings={**settings, **more}, timeout_s=60)


ORDINARY = """
import json, multiprocessing, os, subprocess, sys, tempfile, threading

def square(x):
    return x * x

if __name__ == "__main__":
    seen = []
    threads = [threading.Thread(target=lambda i=i: seen.append(i)) for i in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    child = subprocess.run([sys.executable, "-c", "print('from a child')"], capture_output=True, text=True)
    shell = subprocess.run("echo $((6 * 7)) | tr -d '\\\\n'", shell=True, capture_output=True, text=True)
    with tempfile.NamedTemporaryFile("w+", suffix=".txt") as fh:
        fh.write("temp"); fh.flush(); fh.seek(0); temp = fh.read()
    with tempfile.TemporaryDirectory() as folder:
        open(os.path.join(folder, "x"), "w").write("y")
    with multiprocessing.Pool(2) as pool:
        squares = pool.map(square, range(5))
    queue = multiprocessing.Queue()
    proc = multiprocessing.Process(target=queue.put, args=("queued",)); proc.start(); proc.join()
    lock = multiprocessing.Lock()
    with lock:
        pass
    print(json.dumps({"threads": sorted(seen), "child": child.stdout.strip(), "shell": shell.stdout,
                      "temp": temp, "squares": squares, "queue": queue.get(timeout=5)}))
    print("unicode: héllo wörld ✓ 漢字 🚀")
    open("résumé-✓.txt", "w", encoding="utf-8").write("données ✓")
"""


def test_ordinary_code_works(tmp_path, settings):
    ctx = ctx_for(tmp_path, settings)
    result = execute(PY, {"code": ORDINARY}, ctx)
    assert result.ok, result.error
    first = result.output.split("stdout:\n", 1)[1].splitlines()[0]
    import json

    assert json.loads(first) == {"threads": list(range(8)), "child": "from a child", "shell": "42",
                                 "temp": "temp", "squares": [0, 1, 4, 9, 16], "queue": "queued"}
    assert "unicode: héllo wörld ✓ 漢字 🚀" in result.output
    assert (ctx.workspace / "résumé-✓.txt").read_text(encoding="utf-8") == "données ✓"
    assert "résumé-✓.txt" in result.artifacts


def test_a_workspace_over_its_cap_fails_the_call_keeps_the_files_and_the_run_goes_on(tmp_path, settings):
    ctx = ctx_for(tmp_path, settings, limits={"workspace_mb": 1})
    big = execute(SH, {"command": "head -c 3000000 /dev/zero > big.bin && echo wrote"}, ctx)
    assert not big.ok and "over its cap of 1 MB" in big.error and big.data["workspace_over_cap"]
    assert (ctx.workspace / "big.bin").stat().st_size == 3_000_000  # nothing is lost
    cleanup = execute(SH, {"command": "rm big.bin && echo freed"}, ctx)
    assert cleanup.ok and "freed" in cleanup.output


def test_a_deeply_nested_workspace_does_not_break_later_calls(tmp_path, settings):
    ctx = ctx_for(tmp_path, settings)
    made = execute(PY, {"code": "import os\nfor _ in range(1100):\n    os.mkdir('d')\n    os.chdir('d')\n"
                                "open('leaf.txt', 'w').write('deep')\nprint('made')"}, ctx)
    assert made.ok, made.error
    for _ in range(2):  # the walks before and after each call stay bounded and iterative
        again = execute(PY, {"code": "print(6 * 7)"}, ctx)
        assert again.ok and again.data["value"] == "42", again.error
    gone = execute(SH, {"command": "rm -rf d && echo removed"}, ctx)  # (pytest's own cleanup would recurse)
    assert gone.ok and gone.data["deleted"] == []  # the leaf was never listed: deeper than the listing goes


def test_a_workspace_with_too_many_entries_is_a_clear_error_not_a_slow_call(tmp_path, settings, monkeypatch):
    monkeypatch.setattr(execution, "WALK_LIMIT", 300)
    ctx = ctx_for(tmp_path, settings)
    many = execute(SH, {"command": "mkdir many && cd many && touch $(seq 1 400) && echo made"}, ctx)
    assert not many.ok and "more than 300 files and folders" in many.error
    assert len(list((ctx.workspace / "many").iterdir())) == 400


def test_run_python_is_under_landlock_too(tmp_path, settings):
    """run_python's runner applies the Landlock step itself (bwrap); the fallback's confinement step does."""
    from agentd_code.sandbox import landlock_abi

    if not landlock_abi():
        pytest.skip("this kernel has no Landlock")
    code = "import os\ntry:\n    print(sorted(os.listdir('/')))\nexcept OSError as exc:\n    print('denied', exc.errno)"
    on = execute(PY, {"code": code}, ctx_for(tmp_path, settings, name="on"))
    off = execute(PY, {"code": code}, ctx_for(tmp_path, settings, name="off", landlock=False))
    assert on.data["value"] == "denied 13" and "workspace" in off.data["value"]
    shell = execute(SH, {"command": "ls / >/dev/null 2>&1 && echo listed || echo denied"},
                    ctx_for(tmp_path, settings, name="sh"))
    assert shell.data["value"] == "denied"
