"""Warm starts on the real llama.cpp: a prompt head evaluated in one process is loaded, not evaluated, by the
next, gives the same answer, and is never used for another model file (the real counterpart of
tests/unit/test_llama_state.py)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agentd.models.registry import bundled_model_path

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCRIPT = r"""
import json, sys
from pathlib import Path
from agentd.config import ModelConfig
from agentd.models.providers import llamacpp_model

path, cache = sys.argv[1], Path(sys.argv[2])
handle = llamacpp_model(ModelConfig(path=path, n_ctx=4096, max_tokens=24))
handle.cache_dir = cache
head = [
    ("system", "You are a careful assistant. Reply with JSON only. " + "Rules: be brief, be exact, use tools. " * 40),
    ("user", "Goal: say hi"), ("assistant", '{"answer": "hi"}'),
]
request = ("user", "Goal: name a colour of the sky on a clear day")
cache_state = handle.warm.__self__
how = handle.warm(head, cache)
tokens_held = handle.chat.client.n_tokens
text, usage = handle.complete([*head, request], head=len(head))
print(json.dumps({"how": how, "held": tokens_held, "head_tokens": len(cache_state.head_tokens(tuple(head))),
                  "text": text, "again": handle.warm(head, cache)}))
"""


def warm_run(model: Path, cache: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(model), str(cache)],
        capture_output=True, text=True, timeout=600, env=os.environ | {"PYTHONHASHSEED": "0"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_prompt_head_evaluated_by_one_process_is_loaded_by_the_next(tmp_path):
    bundled = bundled_model_path()
    assert bundled is not None
    model = tmp_path / "model.gguf"
    shutil.copyfile(bundled, model)  # a file of our own, so its mtime can change
    cache = tmp_path / "cache"

    first = warm_run(model, cache)
    assert first["how"] == "built" and first["again"] == "hot"
    assert first["held"] == first["head_tokens"] > 300  # the head alone was evaluated before the call
    [saved] = (cache / "llama-state").iterdir()
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600

    second = warm_run(model, cache)
    assert second["how"] == "disk"  # loaded, not evaluated
    assert second["held"] == first["head_tokens"]
    assert second["text"] == first["text"]  # the same state gives the same greedy answer

    os.utime(model, ns=(1, 1))  # "another" model file: the saved state must not be used
    third = warm_run(model, cache)
    assert third["how"] == "built"
    assert third["text"] == first["text"]
    assert len(list((cache / "llama-state").iterdir())) == 2
