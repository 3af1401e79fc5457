"""The in-sandbox runner of run_python, in-process and as a plain child process (no sandbox needed)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

from agentd_code import runner
from agentd_code.execution import runner_source


def run_cell(code: str, cwd, session: str | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"]} | ({"AGENTD_SESSION": session} if session else {})
    return subprocess.run([sys.executable, "-c", runner_source()], input=code, capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=30)


def test_definitions_keep_the_latest_source_per_name():
    first = runner.definitions(ast.parse("import os\ndef f():\n    return 1\nx = 3\nsq = lambda v: v * v\n"))
    assert list(first) == ["import:import os", "def:f", "def:sq"]
    second = runner.definitions(ast.parse("def f():\n    return 2\n"), first)
    assert list(second) == ["import:import os", "def:sq", "def:f"] and "return 2" in second["def:f"]


def test_snapshot_and_restore_round_trip():
    source = "import json\ndef twice(v):\n    return 2 * v\nn = [1, 2]\n"
    namespace: dict = {"__name__": "__main__"}
    exec(compile(source, "<cell>", "exec"), namespace)
    twice = namespace["twice"]
    twice.__module__ = "__main__"
    defined = runner.definitions(ast.parse(source))
    values, modules, not_kept = runner.snapshot(namespace | {"gen": (i for i in range(2))}, defined)
    assert set(values) == {"n"} and modules == {"json": "json"} and not_kept == ["gen (generator)"]
    fresh: dict = {}
    problems = runner.restore({"defs": defined, "values": values, "modules": modules}, fresh)
    assert problems == [] and fresh["twice"](fresh["n"]) == [1, 2, 1, 2] and fresh["json"].dumps(1) == "1"


def test_cell_errors_show_the_cells_traceback_only(tmp_path):
    done = run_cell("x = 1\nraise ValueError('bad input')\n", tmp_path)
    assert done.returncode == 1
    assert 'File "<cell>", line 2' in done.stderr and "ValueError: bad input" in done.stderr
    assert "runner" not in done.stderr and "exec(" not in done.stderr


def test_exit_status_and_main_guard(tmp_path):
    assert run_cell("import sys; sys.exit(4)", tmp_path).returncode == 4
    assert run_cell("raise SystemExit('message')", tmp_path).returncode == 1
    assert run_cell("if __name__ == '__main__':\n    print('main')", tmp_path).stdout == "main\n"
    assert run_cell("print(input())", tmp_path).returncode == 1  # no stdin for the cell: EOFError


def test_session_state_persists_through_the_runner(tmp_path):
    first = run_cell("import math\nclass C:\n    k = 7\nobj = C()\ntotal = 10\nf = open('x.txt', 'w')\n",
                     tmp_path, ".session")
    assert first.returncode == 0 and "not kept for the next call: f (TextIOWrapper)" in first.stderr
    second = run_cell("total += 1\nprint(total, obj.k, math.floor(2.5))", tmp_path, ".session")
    assert second.stdout == "11 7 2\n", second.stderr
    failed = run_cell("total = 99\nraise RuntimeError()", tmp_path, ".session")
    assert failed.returncode == 1
    third = run_cell("print(total)", tmp_path, ".session")
    assert third.stdout == "99\n"  # like a notebook: what ran before the error is kept


def test_a_corrupt_definition_is_reported_not_fatal(tmp_path):
    (tmp_path / ".session").mkdir()
    runner.save_state(str(tmp_path / ".session"), {"defs": {"import:import no_such_mod": "import no_such_mod"},
                                                   "values": {}, "modules": {}})
    done = run_cell("print('still runs')", tmp_path, ".session")
    assert done.stdout == "still runs\n" and "could not restore: import:import no_such_mod" in done.stderr


def test_syntax_errors_point_at_the_cell(tmp_path):
    for session in (None, ".session"):
        done = run_cell("x = (1\n", tmp_path, session)
        assert done.returncode == 1 and "SyntaxError" in done.stderr and 'File "<cell>", line 1' in done.stderr
        assert "runner" not in done.stderr


def test_a_bare_last_expression_shows_its_value_like_a_notebook_cell(tmp_path):
    assert run_cell("17 * 23", tmp_path).stdout == "391\n"
    assert run_cell("x = 'a'\nx * 2", tmp_path).stdout == "'aa'\n"
    assert run_cell("print(5)", tmp_path).stdout == "5\n"  # print returns None: nothing more is shown
    assert run_cell("x = 1", tmp_path).stdout == "" and run_cell("None", tmp_path).stdout == ""
    assert run_cell("17 * 23\nx = 1", tmp_path).stdout == ""  # only a last expression counts
    failed = run_cell("1 / 0\n'never'", tmp_path)
    assert failed.returncode == 1 and "never" not in failed.stdout and "ZeroDivisionError" in failed.stderr
    session = run_cell("n = 20\nn + 1", tmp_path, ".session")
    assert session.stdout == "21\n" and run_cell("n", tmp_path, ".session").stdout == "20\n"
