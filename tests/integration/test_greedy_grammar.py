"""GreedyGrammar with the real bundled model: the same replies as llama.cpp's grammar in the sampler chain, token
for token, through the provider's call path (token counting included). Counts and texts, never times."""

from __future__ import annotations

import json

import pytest
from llama_cpp import LlamaGrammar

from agentd.app import make_app
from agentd.config import load_config
from agentd.engine import gbnf, phases, structured
from agentd.models.greedy_grammar import GreedyGrammar

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GOALS = [
    "Create a file named shopping.txt listing eggs, bread and milk",
    "What is 12 * 12? Use Python to compute it.",
    "Read the file notes.txt and tell me what it says",
]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    app = make_app(load_config(home=tmp_path_factory.mktemp("home"), env={}))
    yield app
    app.close()


def prompts(tools):
    """(name, schema, messages) for each phase of each goal, as the engine builds them."""
    for goal in GOALS:
        yield "plan", phases.plan_schema(tools, 3), phases.messages(tools, [], phases.plan_request(goal, [], [], True))
        step = "write_file" if "file named" in goal else "run_python" if "Python" in goal else "read_file"
        request = phases.act_request(1, goal, goal, tools[step])
        yield "act", phases.act_schema(tools.subset([step]), step, phases.path_candidates(goal, [])), \
            phases.messages(tools, [], request)
    choices = phases.feedback_choices(0, True)
    yield "feedback", phases.feedback_schema(choices), \
        phases.messages(tools, [], phases.feedback_request("wrote 16 bytes", 0, choices, True))


def chat(llm, messages, **kwargs):
    reply = llm.create_chat_completion(messages=[{"role": r, "content": c} for r, c in messages], temperature=0,
                                       top_k=1, repeat_penalty=1.0, max_tokens=384, seed=0, **kwargs)
    return reply["choices"][0]["message"]["content"], reply["usage"]["completion_tokens"]


def test_same_replies_as_the_grammar_in_llama_cpps_chain(app):
    llm, refused = app.models.get().chat.client, 0
    for name, schema, messages in prompts(app.tools):
        text = gbnf.to_gbnf(schema)
        chained = chat(llm, messages, grammar=LlamaGrammar.from_string(text, verbose=False))
        processor = GreedyGrammar(llm, text)
        assert chat(llm, messages, logits_processor=[processor]) == chained, name
        json.loads(chained[0])
        assert processor.calls == chained[1] + 1 and not processor.broken  # every token, and the end of text
        refused += processor.refused
    assert refused > 0  # the model's pick was refused somewhere: the whole-vocabulary path ran and agreed


def test_one_processor_reused_for_a_second_prompt_starts_over(app):
    """structured.ask reuses its call arguments for a re-ask: the grammar must start again at the new prompt."""
    llm = app.models.get().chat.client
    (_, schema, first), (_, _, second) = [p for p in prompts(app.tools) if p[0] == "plan"][:2]
    text = gbnf.to_gbnf(schema)
    processor = GreedyGrammar(llm, text)
    chat(llm, first, logits_processor=[processor])
    assert chat(llm, second, logits_processor=[processor]) == chat(llm, second, logits_processor=[GreedyGrammar(llm, text)])


def test_the_engines_calls_count_tokens_and_stay_constrained(app):
    """Through ModelHandle.complete with a token counter, the provider's grammar arguments (GreedyGrammar at
    temperature 0) and the counter's processor both run: every reply parses, and every token is counted."""
    handle, tools = app.models.get(), app.tools
    for name, schema, messages in prompts(tools):
        kwargs = structured.decoding_kwargs(handle, schema, name)
        processor = kwargs["logits_processor"][0]
        assert isinstance(processor, GreedyGrammar)
        ticks: list[int] = []
        text, usage = handle.complete(messages, on_token=ticks.append, **kwargs)
        json.loads(text)
        assert ticks[-1] >= usage.completion_tokens > 0, name
        assert processor.calls == ticks[-1] and not processor.broken, name
