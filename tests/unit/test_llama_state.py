"""The prompt-state store behind llama.cpp warm starts: files, checks, eviction, failures (no model needed)."""

from __future__ import annotations

import logging
import os
import stat

import pytest

from agentd.models.llama_state import PrefixStore

TOKENS = [1, 2, 3, 40000]


def state(n: int = 4096, seed: int = 7) -> bytearray:
    return bytearray((i * seed) % 251 for i in range(n))


def test_a_saved_state_is_read_back_by_a_new_store_with_its_tokens(tmp_path):
    PrefixStore(tmp_path).put("k1", TOKENS, state())
    found = PrefixStore(tmp_path).get("k1")
    assert found == ("disk", TOKENS, state())
    assert PrefixStore(tmp_path).get("other") is None


def test_the_same_store_answers_from_memory_and_keeps_only_the_newest(tmp_path):
    store = PrefixStore(None, keep_in_memory=2)  # memory only: no directory
    for key in ("a", "b", "c"):
        store.put(key, TOKENS, state(seed=ord(key)))
    assert store.get("a") is None  # the oldest was dropped
    assert store.get("c") == ("memory", TOKENS, state(seed=ord("c")))
    assert list(tmp_path.iterdir()) == []


def test_state_files_are_owner_only_and_written_whole(tmp_path):
    folder = tmp_path / "cache" / "llama-state"
    old = os.umask(0o022)  # a loose umask must not leak into the cache
    try:
        PrefixStore(folder).put("k1", TOKENS, state())
    finally:
        os.umask(old)
    [path] = folder.iterdir()
    assert path.name == "k1.kv"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:-10],  # truncated
        lambda b: b + b"x",  # too long
        lambda b: b[:-1] + bytes([b[-1] ^ 1]),  # a flipped bit in the state
        lambda b: b"not a state file" + b[16:],  # wrong magic
        lambda b: b"",  # empty
    ],
)
def test_a_damaged_state_file_is_ignored_and_removed(tmp_path, damage, caplog):
    PrefixStore(tmp_path).put("k1", TOKENS, state())
    path = tmp_path / "k1.kv"
    path.write_bytes(damage(path.read_bytes()))
    with caplog.at_level(logging.WARNING):
        assert PrefixStore(tmp_path).get("k1") is None
    assert not path.exists()
    assert "will be rebuilt" in caplog.text


def test_a_file_renamed_to_another_key_is_not_trusted(tmp_path):
    PrefixStore(tmp_path).put("k1", TOKENS, state())
    (tmp_path / "k1.kv").rename(tmp_path / "k2.kv")
    assert PrefixStore(tmp_path).get("k2") is None


def test_only_the_newest_files_are_kept(tmp_path):
    store = PrefixStore(tmp_path, keep_files=2)
    for i, key in enumerate(("a", "b", "c")):
        store.put(key, TOKENS, state(seed=i + 1))
        os.utime(tmp_path / f"{key}.kv", ns=(i * 10**9, i * 10**9))
    store.put("d", TOKENS, state())
    assert sorted(p.name for p in tmp_path.glob("*.kv")) == ["c.kv", "d.kv"]


def test_a_full_disk_leaves_no_partial_file_and_warns_once(tmp_path, monkeypatch, caplog):
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, fd, mode):
            self.f = real_fdopen(fd, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fdopen", Full)  # what write_private (agentd.home) writes through
    store = PrefixStore(tmp_path)
    with caplog.at_level(logging.WARNING):
        store.put("k1", TOKENS, state())
        store.put("k2", TOKENS, state())
    assert list(tmp_path.iterdir()) == []
    assert caplog.text.count("No space left on device") == 1
    assert store.get("k2") == ("memory", TOKENS, state())  # still warm in this process
