"""Token progress from real models (issue 22, item 2): the real counterparts of the scripted model's tokens.

llama.cpp in-process (the bundled SmolLM2, counted by a logits processor while usage stays exact) and an
OpenAI-compatible server on loopback (llama-cpp-python's, streamed).
"""

from __future__ import annotations

import pytest
import test_real_model

from agentd.config import ModelConfig
from agentd.models.providers import llamacpp_model, openai_model

pytestmark = [pytest.mark.integration, pytest.mark.slow]
llama_server = test_real_model.llama_server  # the fixture: llama-cpp-python's server on loopback

PROMPT = [("user", "Count from 1 to 10, separated by commas.")]


def test_llamacpp_counts_each_generated_token_and_keeps_its_usage():
    handle = llamacpp_model(ModelConfig(max_tokens=40))
    seen: list[int] = []
    text, usage = handle.complete(PROMPT, on_token=seen.append)
    assert text.strip() and seen[0] == 0 and seen[1:] == list(range(1, len(seen)))
    # llama.cpp's own usage is kept; every sampled token was seen (the end-of-generation one may count too).
    assert usage.completion_tokens > 0 and usage.prompt_tokens > 0
    assert seen[-1] in (usage.completion_tokens, usage.completion_tokens + 1)
    plain_text, plain_usage = handle.complete(PROMPT)  # without a listener: the same answer, the same usage
    assert (plain_text, plain_usage.completion_tokens) == (text, usage.completion_tokens)


def test_openai_provider_streams_tokens_when_watched(llama_server):
    handle = openai_model(ModelConfig(provider="openai", base_url=llama_server, model="smollm2", max_tokens=40))
    seen: list[int] = []
    text, usage = handle.complete(PROMPT, on_token=seen.append)
    assert text.strip() and seen[0] == 0 and len(seen) > 3  # chunks arrived one by one
    assert usage.completion_tokens > 0 and usage.prompt_tokens > 0 and usage.model_calls == 1
    plain_text, _ = handle.complete(PROMPT)
    assert plain_text == text  # streaming changes how the reply arrives, not the reply
