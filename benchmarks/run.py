"""agentd benchmarks: one command, tables, and a baseline measured in the same run (ratios).

    python benchmarks/run.py            # the loop: framework overhead, real model timings, prefix cache
    python benchmarks/run.py --all      # also every component suite (sandbox, memory, daemon, scheduler, image,
                                        # dashboard, scale-out)

Numbers are for comparing against the baseline printed beside them, on the same machine, in the same run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUITES = [
    "bench_sandbox.py", "bench_scheduler.py", "bench_daemon.py", "bench_image.py", "bench_memory.py",
    "bench_dashboard.py", "bench_models.py", "bench_scaleout.py",
]
REAL_GOALS = [
    "Create a file named hello.txt containing the word hello",
    "Write the numbers 1 to 5, one per line, into numbers.txt",
    "What is 17 * 23? Use Python to compute it.",
]


def table(title: str, header: list[str], rows: list[list[object]]) -> None:
    cells = [header] + [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print("  " + "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))


def loop_overhead(runs: int) -> None:
    """Per-step cost of the engine (journal, prompts, validation, tools) with a zero-latency scripted model,
    against the same model calls made bare (the baseline)."""
    from agentd import Goal
    from agentd.testing import call, feedback, make_test_app, plan

    replies = [plan(("write a", "write_file"), ("write b", "write_file")),
               call("write_file", path="a.txt", content="x"), feedback("continue"),
               call("write_file", path="b.txt", content="y"), feedback("done", final_answer="ok")]
    with tempfile.TemporaryDirectory() as home:
        app, model = make_test_app(home, replies * runs)
        handle = app.models.get()
        started = time.perf_counter()
        for _ in range(runs):
            engine = app.engine
            engine.run(engine.submit(Goal(text="write a and b", memory=False)))
        engine_s = time.perf_counter() - started
        prompts = [[("user", c["prompt"])] for c in model.calls[: 5 * runs]]
        model.enqueue(replies * runs)
        started = time.perf_counter()
        for messages in prompts:
            handle.complete(messages)
        bare_s = time.perf_counter() - started
        app.close()
    steps = 2 * runs
    table(
        f"loop overhead: {runs} runs x 2 steps, scripted zero-latency model",
        ["measure", "per step (ms)", "per run (ms)"],
        [["engine (journal, prompts, parse, tools)", engine_s / steps * 1000, engine_s / runs * 1000],
         ["baseline: the same model calls, bare", bare_s / steps * 1000, bare_s / runs * 1000],
         ["ratio engine / baseline", engine_s / bare_s, engine_s / bare_s]],
    )


class PrefixCounter:
    """Counts, per completion, prompt tokens llama.cpp had to evaluate vs those it reused from its cache."""

    def __init__(self) -> None:
        from llama_cpp import Llama

        self.calls: list[tuple[int, int]] = []  # (prompt tokens, evaluated prompt tokens)
        self._first = False
        self._orig_eval, self._orig_cc = Llama.eval, Llama.create_chat_completion
        counter = self

        def eval_(llm, tokens):  # type: ignore[no-untyped-def]
            if counter._first:
                counter._evaluated = len(tokens)
                counter._first = False
            return counter._orig_eval(llm, tokens)

        def create_chat_completion(llm, *args, **kwargs):  # type: ignore[no-untyped-def]
            counter._first, counter._evaluated = True, 0
            result = counter._orig_cc(llm, *args, **kwargs)
            counter.calls.append((result["usage"]["prompt_tokens"], counter._evaluated))
            return result

        Llama.eval, Llama.create_chat_completion = eval_, create_chat_completion

    def restore(self) -> None:
        from llama_cpp import Llama

        Llama.eval, Llama.create_chat_completion = self._orig_eval, self._orig_cc


def real_model() -> None:
    """Wall time vs model time per goal with the bundled model, prompt tokens per step, prefix-cache reuse."""
    from agentd import Goal
    from agentd.app import make_app
    from agentd.config import load_config

    counter = PrefixCounter()
    rows, cache_rows = [], []
    try:
        with tempfile.TemporaryDirectory() as home:
            app = make_app(load_config(home=Path(home), env={}))
            app.models.get()  # load once, outside the timings
            for goal in REAL_GOALS:
                engine = app.engine
                before = len(counter.calls)
                started = time.perf_counter()
                out = engine.run(engine.submit(Goal(text=goal, memory=False)))
                wall = time.perf_counter() - started
                usage = out["usage"]
                calls = counter.calls[before:]
                prompt = sum(p for p, _ in calls)
                evaluated = sum(e for _, e in calls)
                rows.append([goal[:40], out["status"], round(wall, 2), round(usage["model_seconds"], 2),
                             wall / usage["model_seconds"], usage["model_calls"], max(1, out["steps"])])
                cache_rows.append([goal[:40], usage["model_calls"], prompt // max(1, len(calls)), prompt,
                                   prompt - evaluated, (prompt - evaluated) / max(1, prompt)])
            app.close()
    finally:
        counter.restore()
    table("real model (SmolLM2-135M Q4_1, llama.cpp, 1 thread): wall vs model time",
          ["goal", "status", "wall s", "model s", "wall/model", "model calls", "steps"], rows)
    table("prompt tokens and llama.cpp prefix cache (baseline: every prompt token evaluated)",
          ["goal", "calls", "prompt tok/call", "prompt tok", "served from cache", "cache share"], cache_rows)


def grammars() -> None:
    """agentd's GBNF (gbnf.py) vs llama-cpp-python's bundled JSON-schema converter, same schemas, same prompt."""
    from llama_cpp import LlamaGrammar

    from agentd.app import make_app
    from agentd.config import load_config
    from agentd.engine import gbnf, phases

    with tempfile.TemporaryDirectory() as home:
        app = make_app(load_config(home=Path(home), env={}))
        tools, handle = app.tools, app.models.get()
        goal = "What is 17 * 23? Use Python to compute it."
        cases = {
            "plan": (phases.plan_schema(tools, 3), phases.plan_request(goal, [], [], True)),
            "act": (phases.act_schema(tools.subset(["run_python"]), "run_python"), phases.act_request(1, "17 * 23")),
            "feedback": (phases.feedback_schema(phases.feedback_choices(0, True)),
                         phases.feedback_request("exit code 0 after 0.05s\nstdout:\n391", 0,
                                                 phases.feedback_choices(0, True), True)),
        }
        rows = []
        for name, (schema, request) in cases.items():
            messages = phases.messages(tools, [], request)
            handle.complete(messages, max_tokens=1)  # warm the prefix cache for both variants alike
            started = time.perf_counter()
            ours = gbnf.llama_grammar(gbnf.to_gbnf(schema))
            build_ours = time.perf_counter() - started
            started = time.perf_counter()
            LlamaGrammar.from_json_schema(__import__("json").dumps(schema), verbose=False)
            build_theirs = time.perf_counter() - started
            timings = {}
            for label, kwargs in (("ours", {"grammar": ours}),
                                  ("bundled", {"response_format": {"type": "json_object", "schema": schema}})):
                started = time.perf_counter()
                text, usage = handle.complete(messages, **kwargs)
                seconds = time.perf_counter() - started
                timings[label] = (seconds, usage.completion_tokens, text)
            ok = {label: _parses(t[2]) for label, t in timings.items()}
            rows.append([name, build_ours * 1000, build_theirs * 1000, timings["ours"][0], timings["bundled"][0],
                         timings["ours"][0] / timings["bundled"][0], timings["ours"][1], timings["bundled"][1],
                         f"{ok['ours']}/{ok['bundled']}"])
        app.close()
    table("grammar-constrained decoding: agentd's GBNF vs the bundled converter (baseline), one call per phase",
          ["phase", "build ms", "bundled build ms", "call s", "bundled call s", "ratio", "tokens",
           "bundled tokens", "strict JSON"], rows)


def _parses(text: str) -> bool:
    import json

    try:
        json.loads(text)
        return True
    except ValueError:
        return False


def suites(names: list[str]) -> None:
    for name in names:
        print(f"\n=== {name}", flush=True)
        subprocess.run([sys.executable, str(HERE / name)], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--all", action="store_true", help="also run every component benchmark suite")
    parser.add_argument("--runs", type=int, default=50, help="scripted runs for the overhead benchmark")
    parser.add_argument("--no-model", action="store_true", help="skip the real-model benchmark")
    args = parser.parse_args()
    loop_overhead(args.runs)
    if not args.no_model:
        real_model()
        grammars()
    if args.all:
        suites(SUITES)


if __name__ == "__main__":
    main()
