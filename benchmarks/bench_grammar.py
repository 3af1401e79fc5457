"""What grammar-constrained decoding costs, and where: the bundled model, the same prompt and the same number of
output tokens with and without the phase's grammar. Prints tables.

    python benchmarks/bench_grammar.py               # plan, act and feedback prompts, 5 interleaved rounds
    python benchmarks/bench_grammar.py --rounds 9

For each phase the prompt is agentd's own (``phases.messages``) and decoding is greedy (temperature 0, agentd's
default), through ``Llama.generate`` with the prompt already in llama.cpp's cache, so what is timed is decoding:
N tokens, where N is the grammar-constrained reply's length (its end-of-text token included). Contenders:

* ``no grammar``: the baseline, N tokens unconstrained (other tokens, the same count and positions);
* ``no grammar + pass-through processor``: a logits processor that changes nothing (what a Python hook costs);
* ``grammar in llama.cpp's chain``: what llama-cpp-python does with ``grammar=`` (before this benchmark):
  the grammar checks the whole vocabulary before the greedy pick, every token;
* ``greedy grammar (model's pick first)``: agentd's ``GreedyGrammar`` processor (now): the grammar checks the
  model's own pick, and the whole vocabulary only when that pick is refused.

Both grammar contenders must produce the same tokens (checked). Rounds interleave the contenders in a rotating
order; ms per token: min/median/max over rounds, and each median over the baseline's. A second table shows
where the time goes: the grammar's size, and llama.cpp checking one token against it vs the whole vocabulary.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]
GOAL = "Create a file named shopping.txt listing eggs, bread and milk"


def cases(tools) -> dict[str, tuple[dict, list[tuple[str, str]]]]:
    """Each phase's schema and messages, as the engine builds them for GOAL."""
    from agentd.engine import phases

    choices = phases.feedback_choices(0, True)
    request = phases.act_request(1, "write eggs, bread and milk to shopping.txt", GOAL, tools["write_file"])
    return {
        "plan": (phases.plan_schema(tools, 3), phases.messages(tools, [], phases.plan_request(GOAL, [], [], True))),
        "act": (phases.act_schema(tools.subset(["write_file"]), "write_file", phases.path_candidates(GOAL, [])),
                phases.messages(tools, [], request)),
        "feedback": (phases.feedback_schema(choices),
                     phases.messages(tools, [], phases.feedback_request("wrote 16 bytes to shopping.txt", 0,
                                                                        choices, True))),
    }


def prompt_tokens(llm, messages: list[tuple[str, str]]) -> list[int]:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    eos, bos = llm.token_eos(), llm.token_bos()
    formatter = Jinja2ChatFormatter(
        template=llm.metadata["tokenizer.chat_template"],
        eos_token=llm._model.token_get_text(eos), bos_token=llm._model.token_get_text(bos) if bos != -1 else "",
    )
    text = formatter(messages=[{"role": r, "content": c} for r, c in messages]).prompt
    return llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)


def decode(llm, prompt: list[int], count: int, **kwargs) -> tuple[list[int], float]:
    """Greedy-decode ``count`` tokens after ``prompt`` (with a grammar: up to its end); (tokens, seconds)."""
    import llama_cpp

    out: list[int] = []
    started = time.perf_counter()
    for token in llm.generate(prompt, temp=0.0, top_k=1, repeat_penalty=1.0, **kwargs):
        out.append(token)
        if len(out) >= count or ("grammar" in kwargs and llama_cpp.llama_token_is_eog(llm._model.vocab, token)):
            break
    return out, time.perf_counter() - started


def check_costs(llm, grammar: str, reply: list[int]) -> tuple[float, float, float]:
    """llama.cpp checking the grammar's first token position and a mid-reply one: whole vocabulary (ms, two
    positions) and one token (us)."""
    import llama_cpp
    import numpy as np

    from agentd.models.greedy_grammar import TOKEN_DATA

    sampler = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, grammar.encode(), b"root")
    n = llm.n_vocab()
    every, one = (llama_cpp.llama_token_data * n)(), (llama_cpp.llama_token_data * 1)()
    view = np.frombuffer(every, dtype=TOKEN_DATA)
    view["id"] = np.arange(n)

    def best_of(data, size: int, reps: int) -> float:
        times = []
        for _ in range(reps):
            view["logit"] = 0.0
            one[0].logit = 0.0
            array = llama_cpp.llama_token_data_array(data=data, size=size, selected=-1, sorted=False)
            started = time.perf_counter()
            llama_cpp.llama_sampler_apply(sampler, ctypes.byref(array))
            times.append(time.perf_counter() - started)
        return min(times)

    start = best_of(every, n, 5)
    for token in reply[: len(reply) // 2]:
        llama_cpp.llama_sampler_accept(sampler, token)
    middle = best_of(every, n, 5)
    one[0].id = reply[len(reply) // 2]
    single = best_of(one, 1, 50)
    llama_cpp.llama_sampler_free(sampler)
    return start * 1000, middle * 1000, single * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    from llama_cpp import LlamaGrammar

    from agentd.app import make_app
    from agentd.config import load_config
    from agentd.engine import gbnf
    from agentd.models.greedy_grammar import GreedyGrammar

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as home:
        app = make_app(load_config(home=Path(home), env={}))
        tools, llm = app.tools, app.models.get().chat.client
        results, costs = [], []
        for phase, (schema, messages) in cases(tools).items():
            grammar = gbnf.to_gbnf(schema)
            prompt = prompt_tokens(llm, messages)
            reply, _ = decode(llm, prompt, 384, grammar=LlamaGrammar.from_string(grammar, verbose=False))
            count = len(reply)
            filters: list[GreedyGrammar] = []

            def pass_through(input_ids, scores):
                return scores

            def greedy_grammar(grammar=grammar, filters=filters):
                filters.append(GreedyGrammar(llm, grammar))
                return {"logits_processor": [filters[-1]]}

            contenders = {
                "no grammar": lambda: {},
                "no grammar + pass-through processor": lambda: {"logits_processor": [pass_through]},
                "grammar in llama.cpp's chain (before)": lambda grammar=grammar: {
                    "grammar": LlamaGrammar.from_string(grammar, verbose=False)},
                "greedy grammar, model's pick first (now)": greedy_grammar,
            }
            names = list(contenders)
            times: dict[str, list[float]] = {name: [] for name in names}
            for round_no in range(args.rounds):
                for name in names[round_no % len(names):] + names[: round_no % len(names)]:
                    tokens, seconds = decode(llm, prompt, count, **contenders[name]())
                    if "grammar" in name and not name.startswith("no"):
                        assert tokens == reply, f"{phase}: {name} decoded other tokens than the reference"
                    times[name].append(seconds / count * 1000)
            results.append((phase, count, names, times))
            refused = sum(f.refused for f in filters) / max(1, sum(f.calls for f in filters))
            costs.append((phase, len(grammar), grammar.count("\n"), len(prompt), *check_costs(llm, grammar, reply),
                          refused))
        app.close()
    load_after = os.getloadavg()

    print(f"\nbundled model, greedy, prompt cached; {args.rounds} interleaved rounds; {os.cpu_count()} CPUs, load "
          f"average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    print("| phase | contender (ms per token) | min | median | max | / no grammar: median | min |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for phase, count, names, times in results:
        base_med, base_min = statistics.median(times[names[0]]), min(times[names[0]])
        for name in names:
            t = times[name]
            print(f"| {phase} ({count} tokens) | {name} | {min(t):.2f} | {statistics.median(t):.2f} | {max(t):.2f} | "
                  f"{statistics.median(t) / base_med:.2f}x | {min(t) / base_min:.2f}x |")
    print("\nwhere the time goes: llama.cpp checking the grammar (best of 5; vocabulary: 49,152 tokens)")
    print("| phase | grammar chars | rules | prompt tokens | whole vocabulary, 1st token ms | mid-reply ms "
          "| one token us | model's pick refused |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for phase, chars, rules, prompt, start, middle, single, refused in costs:
        print(f"| {phase} | {chars} | {rules} | {prompt} | {start:.2f} | {middle:.2f} | {single:.1f} | {refused:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
