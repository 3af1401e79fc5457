"""Tool calls on a sample of the Berkeley Function Calling Leaderboard: agentd's engine against one bare
llama.cpp call with the same GGUF, scored by BFCL's own AST checker.

    pip download bfcl-eval --no-deps -d /tmp/bfcl       # the wheel ships the data and the checker
    PYTHONPATH=$PWD:$PWD/plugins python3 benchmarks/tool_calls.py --wheel /tmp/bfcl/bfcl_eval-*.whl \\
        --per-category 10 --seed 1 --seed 2 --out after.json

For each sampled case (simple, multiple, irrelevance):
- agentd: the case's functions are registered as schema-only tools (``Tool(name, description, parameters=
  schema, fn=...)``), alone (no default plugin loads: with the workspace tools beside them the 135M model
  wrote files), and the question runs as a goal through the engine
  with the configured default model (the bundled SmolLM2-135M unless configured otherwise). The first call of
  one of the case's functions is the answer; a run that calls none answers "no call".
- bare: one llama.cpp chat call on the same GGUF with the same sampling settings; the system message lists the
  functions as JSON and the grammar (agentd's JSON-schema converter) allows one call of one of them, with its
  argument schema, or ``{"answer": ...}`` (no call).
Each agentd run is stopped (cancelled) once it has called one of the case's functions: BFCL scores that call,
and what a run would do next with the stand-in result ("done") is no part of the score; so the time per case
is, for both systems, the time to the scored call (or to the run's end, where there is no call).
Scoring is BFCL's ``ast_checker`` read from the wheel (function name, required parameters, allowed values,
its type and string normalisation); irrelevance is right when there is no call. Timing is wall-clock per
case on this machine; compare the ratio, measured in the same process, not the seconds.
"""

from __future__ import annotations

import argparse
import enum
import json
import random
import statistics
import sys
import tempfile
import threading
import time
import types
import zipfile
from pathlib import Path
from typing import Any

FILES = {
    "simple": "BFCL_v4_simple_python.json",
    "multiple": "BFCL_v4_multiple.json",
    "irrelevance": "BFCL_v4_irrelevance.json",
}
TYPES = {"dict": "object", "float": "number", "tuple": "array", "any": None}


# -- BFCL's data and checker, from the wheel ---------------------------------------------------------
def read_cases(wheel: zipfile.ZipFile, category: str) -> list[dict[str, Any]]:
    questions = [json.loads(line) for line in wheel.read(f"bfcl_eval/data/{FILES[category]}").decode().splitlines()]
    answers: dict[str, Any] = {}
    if category != "irrelevance":
        text = wheel.read(f"bfcl_eval/data/possible_answer/{FILES[category]}").decode()
        answers = {row["id"]: row["ground_truth"] for row in map(json.loads, text.splitlines())}
    for case in questions:
        case["answer"] = answers.get(case["id"])
    return questions


def load_checker(wheel: zipfile.ZipFile) -> types.ModuleType:
    """BFCL's ast_checker module, with stubs for the imports only its Java/JavaScript and model paths use."""
    language = enum.Enum("Language", ["PYTHON", "JAVA", "JAVASCRIPT"])

    class NoDots:
        underscore_to_dot = False  # our tools keep BFCL's names, dots included

    stubs = {
        "bfcl_eval.constants.enums": {"Language": language},
        "bfcl_eval.constants.model_config": {"MODEL_CONFIG_MAPPING": {"agentd": NoDots()}},
        "bfcl_eval.constants.type_mappings": {"JAVA_TYPE_CONVERSION": {}, "JS_TYPE_CONVERSION": {}},
        "bfcl_eval.eval_checker.ast_eval.type_convertor.java_type_converter": {"java_type_converter": None},
        "bfcl_eval.eval_checker.ast_eval.type_convertor.js_type_converter": {"js_type_converter": None},
    }
    for name, attrs in stubs.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules[name] = module
    checker = types.ModuleType("bfcl_ast_checker")
    source = wheel.read("bfcl_eval/eval_checker/ast_eval/ast_checker.py").decode()
    exec(compile(source, "bfcl_eval/eval_checker/ast_eval/ast_checker.py", "exec"), checker.__dict__)  # noqa: S102
    checker.Language = language
    return checker


def json_schema(bfcl: Any) -> Any:
    """BFCL's parameter schema (types dict, float, tuple, any) as JSON schema."""
    if isinstance(bfcl, list):
        return [json_schema(x) for x in bfcl]
    if not isinstance(bfcl, dict):
        return bfcl
    out = {}
    for key, value in bfcl.items():
        if key == "optional":
            continue
        if key == "type" and value in TYPES:
            if TYPES[value] is not None:
                out[key] = TYPES[value]
        elif key == "properties":
            out[key] = {name: json_schema(spec) for name, spec in value.items()}
        else:
            out[key] = json_schema(value)
    return out


def correct(checker: types.ModuleType, category: str, case: dict[str, Any], calls: list[dict[str, Any]]) -> bool:
    if category == "irrelevance":
        return not calls
    if not calls:
        return False
    result = checker.ast_checker(case["function"], calls[:1], case["answer"], checker.Language.PYTHON, category,
                                 "agentd")
    return bool(result["valid"])


# -- the two systems ------------------------------------------------------------------------------
class Agentd:
    """The engine on a fresh home: the workspace plugin's tools plus the case's functions as tools."""

    def __init__(self, settings: dict[str, Any]) -> None:
        from agentd.app import make_app
        from agentd.config import load_config

        self.home = Path(tempfile.mkdtemp(prefix="bfcl-agentd-"))
        overrides = {"plugins.load": [], "loop.max_steps": 3, "loop.max_seconds": 300} | settings
        self.app = make_app(load_config(home=self.home, env={}, overrides=overrides))
        self.builtin = set(self.app.tools.names())

    def call(self, case: dict[str, Any]) -> list[dict[str, Any]]:
        from agentd import Goal, Tool

        registry = self.app.tools
        for name in [n for n in registry.names() if n not in self.builtin]:
            del registry.tools[name]
        register = registry.register_for("bfcl")
        names, called = set(), threading.Event()

        def stand_in(**args: Any) -> str:
            called.set()  # BFCL scores the first call: the run stops there, as the bare call does
            return "done"

        for fn in case["function"]:
            tool = Tool(fn["name"], fn.get("description", ""), parameters=json_schema(fn["parameters"]), fn=stand_in)
            names.add(register(tool).name)
        engine = self.app.engine
        run_id = engine.submit(Goal(text=case["question"][0][-1]["content"], memory=False))
        engine.run(run_id, cancel=called)
        return [{c["tool"]: c["args"]} for c in self.app.journal.tool_calls(run_id) if c["tool"] in names]


class Bare:
    """One llama.cpp chat call, its grammar one call of one of the functions (or an answer)."""

    def __init__(self) -> None:
        from llama_cpp import Llama

        from agentd.config import load_config
        from agentd.models.registry import BUNDLED_N_CTX, bundled_model_path

        _, cfg = load_config(home=Path(tempfile.mkdtemp(prefix="bfcl-bare-")), env={}).model_config_for(None)
        self.cfg = cfg
        path = cfg.path or str(bundled_model_path())
        self.llama = Llama(model_path=path, n_ctx=cfg.n_ctx or BUNDLED_N_CTX, n_threads=cfg.n_threads,
                           n_batch=cfg.n_batch, seed=cfg.seed, verbose=False)

    def call(self, case: dict[str, Any]) -> list[dict[str, Any]]:
        from llama_cpp import LlamaGrammar

        from agentd.engine import gbnf

        options = [{"type": "object", "properties": {"name": {"const": fn["name"]},
                                                     "arguments": json_schema(fn["parameters"])},
                    "required": ["name", "arguments"]} for fn in case["function"]]
        options.append({"type": "object", "properties": {"answer": {"type": "string", "maxLength": 400}},
                        "required": ["answer"]})
        listed = "\n".join(json.dumps({"name": fn["name"], "description": fn.get("description", ""),
                                       "parameters": fn["parameters"]}) for fn in case["function"])
        system = (f"You can call these functions:\n{listed}\nReply with one JSON object: "
                  '{"name": ..., "arguments": {...}} to call a function, or {"answer": "..."} when none fits.')
        reply = self.llama.create_chat_completion(
            messages=[{"role": "system", "content": system}, *case["question"][0]],
            grammar=LlamaGrammar.from_string(gbnf.to_gbnf({"anyOf": options}), verbose=False),
            temperature=self.cfg.temperature, top_k=1 if self.cfg.temperature == 0 else 40, repeat_penalty=1.0,
            max_tokens=self.cfg.max_tokens,
        )
        try:
            value = json.loads(reply["choices"][0]["message"]["content"])
        except ValueError:
            return []
        return [{value["name"]: value.get("arguments") or {}}] if "name" in value else []


# -- the run --------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", type=Path, required=True, help="the bfcl-eval wheel (pip download bfcl-eval --no-deps)")
    parser.add_argument("--per-category", type=int, default=10)
    parser.add_argument("--seed", type=int, action="append", help="sampling seed; repeat for several (default 1)")
    parser.add_argument("--categories", default="simple,multiple,irrelevance")
    parser.add_argument("--systems", default="agentd,bare")
    parser.add_argument("--out", type=Path, help="write every case's result here as JSON")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="agentd config override, e.g. loop.direct_answers=true")
    args = parser.parse_args()
    wheel = zipfile.ZipFile(args.wheel)
    checker = load_checker(wheel)
    settings = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    make = {"agentd": lambda: Agentd(settings), "bare": Bare}
    systems = {name: make[name]() for name in args.systems.split(",")}
    rows = []
    for seed in args.seed or [1]:
        for category in args.categories.split(","):
            cases = read_cases(wheel, category)
            for case in random.Random(seed).sample(cases, min(args.per_category, len(cases))):
                for name, system in systems.items():
                    started = time.monotonic()
                    calls = system.call(case)
                    seconds = time.monotonic() - started
                    ok = correct(checker, category, case, calls)
                    rows.append({"seed": seed, "category": category, "id": case["id"], "system": name, "ok": ok,
                                 "seconds": round(seconds, 2), "calls": calls})
                    print(json.dumps(rows[-1], default=str)[:300], flush=True)
    report(rows, list(systems))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1, default=str))


def report(rows: list[dict[str, Any]], systems: list[str]) -> None:
    print(f"\n{'seed':>4} {'category':<12}" + "".join(f" {s + ' acc':>11} {s + ' s/case':>13}" for s in systems)
          + ("  time ratio (of the means; per case: min, median)" if len(systems) == 2 else ""))
    keys = sorted({(r["seed"], r["category"]) for r in rows}) + [("all", "all")]
    for seed, category in keys:
        line, per_case = f"{seed:>4} {category:<12}", []
        for system in systems:
            mine = [r for r in rows if r["system"] == system and seed in ("all", r["seed"])
                    and category in ("all", r["category"])]
            accuracy = sum(r["ok"] for r in mine) / len(mine)
            per_case.append(sum(r["seconds"] for r in mine) / len(mine))
            line += f" {accuracy:>11.0%} {per_case[-1]:>13.2f}"
        if len(per_case) == 2:
            line += f"  {per_case[0] / per_case[1]:>9.1f}x" + _case_ratios(rows, systems, seed, category)
        print(line)


def _case_ratios(rows: list[dict[str, Any]], systems: list[str], seed: Any, category: str) -> str:
    """Per case, the first system's time over the second's (the two ran one after the other): min and median."""
    by_case: dict[tuple, dict[str, float]] = {}
    for r in rows:
        if seed in ("all", r["seed"]) and category in ("all", r["category"]):
            by_case.setdefault((r["seed"], r["category"], r["id"]), {})[r["system"]] = r["seconds"]
    ratios = sorted(t[systems[0]] / max(t[systems[1]], 0.01) for t in by_case.values() if len(t) == 2)
    return f"  min {ratios[0]:.2f}x median {statistics.median(ratios):.2f}x" if ratios else ""


if __name__ == "__main__":
    main()
