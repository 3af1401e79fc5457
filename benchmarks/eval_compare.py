"""Run the eval suites against any agentd checkout: the "before" figures come from main's code, the "after"
from this tree, on the same machine in the same session.

    # this tree
    PYTHONPATH=$PWD:$PWD/plugins python3 benchmarks/eval_compare.py --out after.json evals/*.jsonl
    # main's code (a `git archive main` copy in /tmp/base), judged by this tree's evaluation module
    PYTHONPATH=/tmp/base:/tmp/base/plugins python3 benchmarks/eval_compare.py --out before.json evals/*.jsonl

`agentd eval` does the same for the installed agentd; this script exists because main has no `eval` command:
it loads agentd/evaluation.py from this tree by path, so both sides are checked by the same outside checks.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def evaluation_module():
    spec = importlib.util.spec_from_file_location("agentd_eval_checks", HERE.parent / "agentd" / "evaluation.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suites", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only", default="", help="comma-separated case ids")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    import agentd
    from agentd.config import load_config

    ev = evaluation_module()
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    config = load_config(home=Path(tempfile.mkdtemp(prefix="agentd-eval-cfg-")), env={}, overrides=overrides)
    wanted = {x for x in args.only.split(",") if x}
    results = []
    # Interleaved across suites, so a run cut short still measures every suite (tuned and held-out alike).
    suites = [[c for c in ev.load_suite(path) if not wanted or c.id in wanted] for path in args.suites]
    for case in [c for group in itertools.zip_longest(*suites) for c in group if c is not None]:
        result = ev.run_case(case, config, None)
        results.append(result)
        print(f"{case.id}: right={result.right} status={result.status} verified={result.verified} "
              f"calls={result.model_calls} {result.seconds}s {'; '.join(result.problems)}", flush=True)
        args.out.write_text(json.dumps(ev.summary(results) | {"agentd": agentd.__file__}, indent=1))
    print(json.dumps(ev.summary(results)["by_suite"], indent=1))


if __name__ == "__main__":
    main()
