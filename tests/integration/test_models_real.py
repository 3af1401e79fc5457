"""A model found on disk, added with `agentd models add`, runs a goal on the real llama.cpp: the real counterpart
of the unit tests' fixture caches and fake server. The file is the bundled GGUF, laid into a fake Hugging Face
cache (tests/conftest.py: model_caches), so nothing is downloaded."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentd.app import make_app
from agentd.config import load_config
from agentd.models.gguf import read_gguf
from agentd.models.providers import context_size
from agentd.models.registry import bundled_model_path

pytestmark = [pytest.mark.integration, pytest.mark.slow]
HF_ID = "hf:HuggingFaceTB/SmolLM2-135M-Instruct-GGUF/smollm2-135m-instruct-q4_1.gguf"


def agentd(home: Path, user: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HOME", "HF_HUB_CACHE", "OLLAMA_MODELS")}
    env |= {"AGENTD_HOME": str(home), "HOME": str(user), "XDG_CACHE_HOME": str(user / ".cache")}
    return subprocess.run(
        [sys.executable, "-c", "from agentd.cli import main; main()", *args],
        env=env, capture_output=True, text=True, timeout=timeout,
    )


def test_a_discovered_model_added_by_id_reaches_a_goal(model_caches, tmp_path):
    user, _ = model_caches
    home = tmp_path / "agentd"
    added = agentd(home, user, "models", "add", "mini", HF_ID)
    assert added.returncode == 0, added.stderr
    result = agentd(home, user, "goal", "Create a file named hello.txt containing the word hello",
                    "--model", "mini", "--json")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    events = [json.loads(line) for line in result.stdout.strip().splitlines()]
    outcome = events[-1]
    assert outcome["status"] == "succeeded" and (Path(outcome["workspace"]) / "hello.txt").read_text().strip() == "hello"
    assert events[0]["profile"] == "tiny"  # 135M parameters, read from the file
    shown = agentd(home, user, "runs", "show", outcome["run_id"])
    assert "model: mini  profile: tiny" in shown.stdout


def test_the_loaded_model_uses_the_files_chat_template_and_metadata(model_caches, tmp_path):
    user, _ = model_caches
    home = tmp_path / "agentd"
    assert agentd(home, user, "models", "add", "mini", HF_ID).returncode == 0
    config = load_config(home=home, env={})
    path = Path(config.models["mini"].path)
    assert path.parent.name == "rev1"  # the snapshot link, resolved by llama.cpp like by huggingface_hub
    app = make_app(config)
    try:
        handle = app.models.get("mini")
        llama = handle.chat.client
        meta = read_gguf(path)
        # llama.cpp built its chat handler from the file's own template, the one `models info` shows.
        assert handle.info["chat_format"] == llama.chat_format == "chat_template.default"
        assert llama.metadata["tokenizer.chat_template"] == meta.chat_template
        assert llama._model.n_params() == meta.parameters  # the header's count is the loaded model's
        assert llama.n_ctx() == handle.info["n_ctx"] == context_size(config.models["mini"], meta)
        assert handle.info["n_ctx"] > 4096  # auto: the trained 8192, when memory allows
    finally:
        app.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_models_add_from_a_real_llama_cpp_server(tmp_path):
    """llama-cpp-python's OpenAI-compatible server: `models add` reads its /v1/models."""
    pytest.importorskip("starlette_context", reason="llama-cpp-python[server] extras are not installed")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_model_path()), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "1024", "--model_alias", "smol"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            added = agentd(tmp_path, tmp_path, "models", "add", "srv", f"http://127.0.0.1:{port}")
            if added.returncode == 0 or "is the server running" not in added.stderr:
                break
            time.sleep(0.5)
        assert added.returncode == 0, added.stderr
        config = load_config(home=tmp_path, env={})
        assert config.models["srv"].model == "smol" and config.models["srv"].base_url == f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(10)
