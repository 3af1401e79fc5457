"""`agentd eval` with the real bundled model (SmolLM2-135M-Instruct, temperature 0) on a slice of the shipped
suite: whatever it gets right or wrong, no run may claim a success the outside checks refute.

The slice (AGENTD_EVAL_SLICE: comma-separated case ids) defaults to a CI-sized pair, one that ends in a refused
claim and one that succeeds: the issue's own false success on main ("Write kiwi to k.txt"; now failed,
unverified, in ~6 model calls) and a held-out file goal the model reaches (h-file-todo, 3 calls). The held-out
h-file-lemon was the second case until the tiny profile's model-decided feedback made it a 13-call, ~160 s run:
a sixth of the whole suite's time. The full figures are in docs/eval.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).parents[2]
SLICE = os.environ.get("AGENTD_EVAL_SLICE", "file-kiwi,h-file-todo").split(",")


@pytest.mark.timeout(1200)  # two real runs of up to a few model calls each; slow, shared CI machines included
def test_a_slice_of_the_suite_has_no_false_success(tmp_path):
    cases = [
        line for name in ("suite.jsonl", "holdout.jsonl")
        for line in (ROOT / "evals" / name).read_text().splitlines() if json.loads(line)["id"] in SLICE
    ]
    assert len(cases) == len(SLICE)
    suite = tmp_path / "slice.jsonl"
    suite.write_text("\n".join(cases) + "\n")
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, AGENTD_HOME=str(home))
    result = subprocess.run([sys.executable, "-c", "from agentd.cli import main; main()", "eval", str(suite), "--json"],
                            env=env, capture_output=True, text=True, timeout=3600)
    report = json.loads(result.stdout)
    totals = report["totals"]
    assert totals["runs"] == len(SLICE)
    wrong = [(r["case"], r["status"], r["problems"]) for r in report["results"] if r["false_success"]]
    assert totals["false_successes"] == 0, wrong
    assert result.returncode == 0, result.stderr[-2000:]
    assert totals["model_calls_per_goal"] > 0
