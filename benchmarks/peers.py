"""agentd beside its peers: the same N-step scripted task through agentd, smolagents' ToolCallingAgent and
LangGraph's ReAct agent (no checkpointer, InMemorySaver, SqliteSaver), each with a zero-latency scripted model,
so what is measured is each framework's own cost per tool step.

    pip install -e '.[bench]'
    python benchmarks/peers.py                       # 10 steps, 20 timed runs a round, 5 rounds
    python benchmarks/peers.py --base /tmp/agentd-base   # also agentd from another tree (before/after a change)
    python benchmarks/peers.py --real 5              # the real-model hello goal instead (peers_real.py)

The task: write N files, one tool call each, then answer. agentd plans once, then acts per step and decides
after each (``model`` feedback: 2N+1 model calls; ``rules`` feedback: N+1, like the peers), journaling every
phase to SQLite. The peers make N+1 model calls.

Each contender runs in a fresh process per round: warm-up runs, then ``--runs`` timed runs. Rounds interleave
the contenders (in a rotating order) so the machine's load falls on all alike. Printed: ms per tool step,
min/median/max over the rounds, and for each agentd row (``model`` and ``rules`` feedback) its median over each
contender's median and its best round over theirs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WARM_UPS = 3


# -- the contenders (each builds a zero-argument "run the task once") -------------------------------------
def agentd_task(steps: int, work: Path, feedback_mode: str) -> Callable[[], None]:
    import re
    from collections import deque

    from agentd import Budgets, Goal
    from agentd.testing import call, feedback, make_test_app, plan

    def act(prompt: str) -> dict:
        number = int(re.findall(r"Write the call for step (\d+)", prompt)[-1])
        return call("write_file", path=f"f{number}.txt", content="x")

    def decide(prompt: str) -> dict:
        last = prompt.rsplit("Result:", 1)[-1]
        return feedback("continue") if "Steps left" in last else feedback("done", final_answer="ok")

    rules = [("Write the plan", plan(*[(f"write f{i}.txt", "write_file") for i in range(1, steps + 1)])),
             ("Write the call for step", act), ("Write the decision", decide)]
    settings = {"loop.critic": "rules", "loop.feedback": feedback_mode, "loop.max_plan_steps": steps}
    app, model = make_test_app(work / "home", rules=rules, settings=settings)
    model._calls = deque(maxlen=4)  # the scripted model keeps its prompts; a benchmark needs none of them
    model.stream_tokens = False  # whole replies, as the peers' scripted models give theirs (no per-token callbacks)
    engine, budgets = app.engine, Budgets(max_steps=steps + 2)

    def run() -> None:
        out = engine.run(engine.submit(Goal(text="write the files", memory=False, budgets=budgets)))
        assert out["status"] == "succeeded" and out["steps"] == steps, out

    return run


def langgraph_task(steps: int, work: Path, saver: str) -> Callable[[], None]:
    import sqlite3

    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage, ToolMessage
    from langchain_core.outputs import ChatGeneration, ChatResult
    from langchain_core.tools import tool
    from langgraph.prebuilt import create_react_agent

    class ToolCaller(BaseChatModel):
        """Calls write_file once per step (counted from the tool results so far), then answers."""

        @property
        def _llm_type(self) -> str:
            return "scripted"

        def bind_tools(self, tools, **kwargs):  # type: ignore[no-untyped-def]
            return self

        def _generate(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[no-untyped-def]
            done = sum(isinstance(m, ToolMessage) for m in messages)
            if done < steps:
                args = {"path": f"f{done + 1}.txt", "content": "x"}
                reply = AIMessage(content="", tool_calls=[{"name": "write_file", "args": args, "id": f"c{done}"}])
            else:
                reply = AIMessage(content="ok")
            return ChatResult(generations=[ChatGeneration(message=reply)])

    files = work / "files"
    files.mkdir(parents=True, exist_ok=True)

    @tool
    def write_file(path: str, content: str) -> str:
        """Write content to a file."""
        (files / path).write_text(content)
        return f"wrote {len(content)} characters to {path}"

    checkpointer = None
    if saver == "memory":
        from langgraph.checkpoint.memory import InMemorySaver

        checkpointer = InMemorySaver()
    elif saver == "sqlite":
        from langgraph.checkpoint.sqlite import SqliteSaver

        checkpointer = SqliteSaver(sqlite3.connect(str(work / "checkpoints.db"), check_same_thread=False))
    with warnings.catch_warnings():  # moved to langchain.agents in LangGraph 1.0; the same graph either way
        warnings.simplefilter("ignore")
        agent = create_react_agent(ToolCaller(), [write_file], checkpointer=checkpointer)
    count = iter(range(10**9))

    def run() -> None:
        config = {"configurable": {"thread_id": str(next(count))}, "recursion_limit": 4 * steps + 10}
        out = agent.invoke({"messages": [("user", "write the files")]}, config)
        assert out["messages"][-1].content == "ok", out["messages"][-1]

    return run


def smolagents_task(steps: int, work: Path) -> Callable[[], None]:
    from smolagents import ToolCallingAgent, tool
    from smolagents.models import (
        ChatMessage,
        ChatMessageToolCall,
        ChatMessageToolCallFunction,
        MessageRole,
        Model,
    )
    from smolagents.monitoring import LogLevel, TokenUsage

    files = work / "files"
    files.mkdir(parents=True, exist_ok=True)

    @tool
    def write_file(path: str, content: str) -> str:
        """Write content to a file.

        Args:
            path: the file's name
            content: what to write
        """
        (files / path).write_text(content)
        return f"wrote {len(content)} characters to {path}"

    class Scripted(Model):
        calls = 0

        def generate(self, messages, stop_sequences=None, response_format=None, tools_to_call_from=None, **kw):  # type: ignore[no-untyped-def]
            self.calls += 1
            if self.calls <= steps:
                name, args = "write_file", {"path": f"f{self.calls}.txt", "content": "x"}
            else:
                name, args = "final_answer", {"answer": "ok"}
            function = ChatMessageToolCallFunction(name=name, arguments=args)
            return ChatMessage(role=MessageRole.ASSISTANT, content="",
                               tool_calls=[ChatMessageToolCall(function=function, id=f"c{self.calls}", type="function")],
                               token_usage=TokenUsage(input_tokens=1, output_tokens=1))

    model = Scripted()
    agent = ToolCallingAgent(tools=[write_file], model=model, max_steps=steps + 2, verbosity_level=LogLevel.OFF)

    def run() -> None:
        model.calls = 0
        assert agent.run("write the files", reset=True) == "ok"

    return run


CONTENDERS: dict[str, Callable[[int, Path], Callable[[], None]]] = {
    "agentd (model feedback)": lambda n, w: agentd_task(n, w, "model"),
    "agentd (rules feedback)": lambda n, w: agentd_task(n, w, "rules"),
    "langgraph (no checkpointer)": lambda n, w: langgraph_task(n, w, "none"),
    "langgraph (InMemorySaver)": lambda n, w: langgraph_task(n, w, "memory"),
    "langgraph (SqliteSaver)": lambda n, w: langgraph_task(n, w, "sqlite"),
    "smolagents ToolCallingAgent": smolagents_task,
}
BASE = " @base"  # suffix of an agentd contender run from the --base tree


def worker(name: str, steps: int, runs: int) -> None:
    """One round of one contender, in this process: warm up, time, print ms per step as JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        run = CONTENDERS[name.removesuffix(BASE)](steps, Path(tmp))
        for _ in range(WARM_UPS):
            run()
        started = time.perf_counter()
        for _ in range(runs):
            run()
        elapsed = time.perf_counter() - started
    print(json.dumps({"ms_per_step": elapsed / runs / steps * 1000}))


def one_round(name: str, args: argparse.Namespace) -> float:
    tree = Path(args.base) if name.endswith(BASE) else ROOT
    env = os.environ | {"PYTHONPATH": f"{tree}{os.pathsep}{tree / 'plugins'}"}
    command = [sys.executable, str(HERE / "peers.py"), "--worker", name, "--steps", str(args.steps),
               "--runs", str(args.runs)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tree)
    if done.returncode:
        raise SystemExit(f"{name} failed:\n{done.stderr[-2000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["ms_per_step"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="tool steps per run")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (fresh processes)")
    parser.add_argument("--only", default="", help="comma-separated contender names (prefixes) to run")
    parser.add_argument("--base", default="", help="another agentd source tree to run beside this one")
    parser.add_argument("--real", type=int, default=0, metavar="N",
                        help="instead: the hello goal N times per contender on the bundled GGUF (peers_real.py)")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    parser.add_argument("--real-worker", default="", help=argparse.SUPPRESS)
    parser.add_argument("--dir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.real or args.real_worker:
        import peers_real  # beside this file; loads nothing heavy until a goal runs

        if args.real_worker:
            peers_real.worker(args.real_worker, Path(args.dir))
        else:
            peers_real.run(args.real, args.only)
        return
    if args.worker:
        worker(args.worker, args.steps, args.runs)
        return
    names = [n for n in CONTENDERS if not args.only or any(n.startswith(p) for p in args.only.split(","))]
    if args.base:
        names += [n + BASE for n in names if n.startswith("agentd")]
    times: dict[str, list[float]] = {n: [] for n in names}
    for number in range(args.rounds):
        order = names[number % len(names):] + names[: number % len(names)]
        for name in order:
            times[name].append(one_round(name, args))
    print(f"\n{args.steps}-step scripted task, zero-latency model: ms per tool step over {args.rounds} rounds "
          f"of {args.runs} runs ({WARM_UPS} warm-ups each), {os.cpu_count()} CPUs")
    medians = {n: statistics.median(t) for n, t in times.items()}
    # agentd's rows over each contender: ``model`` feedback makes 2N+1 model calls, ``rules`` N+1 as the peers do
    ours = [n for n in names if n.startswith("agentd") and not n.endswith(BASE)]
    heads = "".join(f"  {n.removeprefix('agentd ').strip('()') + ':':>22}" for n in ours)
    print(f"  {'contender':<36} {'min':>7} {'median':>7} {'max':>7}{heads}")
    print(f"  {'':<36} {'':>7} {'':>7} {'':>7}" + "  agentd/this: med   min" * len(ours))
    for name, values in times.items():
        ratios = "".join(f"  {medians[a] / medians[name]:10.2f}x {min(times[a]) / min(values):9.2f}x" for a in ours)
        print(f"  {name:<36} {min(values):7.2f} {medians[name]:7.2f} {max(values):7.2f}{ratios}")


if __name__ == "__main__":
    main()
