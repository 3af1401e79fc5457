"""agentd_memory.store over a real (local, on-disk) Chroma with the fake `hash` embedding: fast and offline.

The real offline model runs in tests/integration/test_memory_real.py.
"""

from __future__ import annotations

import pytest
from agentd_memory.embeddings import EmbeddingError, HashEmbedding, make_embedder
from agentd_memory.store import (
    EmbeddingMismatch,
    Memory,
    MemorySettings,
    MemoryStoreError,
    chunk_text,
    read_document,
    visible_scopes,
)

FAKE = {"provider": "hash"}


def make_memory(home, **settings):
    return Memory(MemorySettings(embedding=settings.pop("embedding", FAKE), **settings), home)


@pytest.fixture
def mem(tmp_path):
    return make_memory(tmp_path / "home")


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "deploy.md").write_text(
        "# Deploy\n\nThe staging server is called bluefin.\nDeploys go out on Tuesdays.\n", encoding="utf-8"
    )
    (folder / "sub" / "recipes.txt").write_text(
        "Pancakes need flour, eggs, milk and butter.\n", encoding="utf-8"
    )
    (folder / ".git").mkdir()
    (folder / ".git" / "config").write_text("the staging server is secret\n")
    (folder / "image.bin").write_bytes(b"\x89PNG\0\0\0binary")
    return folder


# -- chunking ----------------------------------------------------------------------------------------
def test_chunks_overlap_cover_every_line_and_stay_near_the_size():
    text = "".join(f"line {i} says something about topic {i % 7}\n" for i in range(200))
    chunks = chunk_text(text, size=300, overlap=80)
    assert len(chunks) > 10
    for (prev, _, prev_end), (body, start, end) in zip(chunks, chunks[1:], strict=False):
        assert body.splitlines()[0] in prev, "each chunk starts with the tail of the one before"
        assert start <= prev_end and end > prev_end
    assert all(len(body) <= 300 + 60 for body, _, _ in chunks)
    covered = {line for body, _, _ in chunks for line in body.splitlines()}
    assert covered == set(text.splitlines())


def test_long_lines_are_cut_at_spaces_and_empty_text_has_no_chunks():
    prose = ("word " * 1000).strip()
    chunks = chunk_text(prose, size=400, overlap=100)
    assert len(chunks) >= 12
    assert all(not body.startswith("ord") for body, _, _ in chunks)
    assert chunk_text("", 400, 100) == [] and chunk_text("\n\n  \n", 400, 100) == []


def test_binary_files_are_refused_and_text_is_read(tmp_path):
    with pytest.raises(ValueError, match="binary"):
        read_document(tmp_path / "x.bin", b"\0\1\2")
    assert read_document(tmp_path / "x.md", "héllo".encode()) == [(0, "héllo")]


# -- ingest, search, re-ingest, replace, forget --------------------------------------------------------
def test_ingest_then_search_finds_the_right_chunk_with_provenance(mem, docs):
    seen = []
    report = mem.ingest(
        [docs], on_file=lambda path, status, n: seen.append((path.rsplit("/", 1)[-1], status))
    )
    assert sorted(p.rsplit("/", 1)[-1] for p in report.added) == ["deploy.md", "recipes.txt"]
    assert [s for s in report.skipped if s[0].endswith("image.bin")], "binary files are skipped with a reason"
    assert not any(".git" in p for p in report.added), "hidden folders are not ingested"
    assert ("deploy.md", "added") in seen
    hits = mem.search("what is the staging server called", k=2)
    assert hits[0].meta["source"] == str(docs / "deploy.md")
    assert "bluefin" in hits[0].text
    assert hits[0].provenance.startswith(f"{docs / 'deploy.md'}#0 lines 1-")
    assert hits[0].score > hits[1].score


def test_reingesting_an_unchanged_file_is_a_no_op(mem, docs):
    first = mem.ingest([docs])
    count = mem.stats()["collections"]["agentd-documents"]
    again = mem.ingest([docs])
    assert again.added == [] and again.replaced == [] and again.chunks == 0
    assert sorted(again.unchanged) == sorted(first.added)
    assert mem.stats()["collections"]["agentd-documents"] == count


def test_a_changed_file_replaces_its_old_chunks(tmp_path, mem):
    path = tmp_path / "long.txt"
    path.write_text("".join(f"alpha fact number {i} about apples\n" for i in range(120)))
    mem = make_memory(tmp_path / "home", chunk_chars=300, chunk_overlap=50)
    mem.ingest([path])
    before = mem.stats()["collections"]["agentd-documents"]
    path.write_text("zebra stripes are the only fact now\n")
    report = mem.ingest([path])
    assert report.replaced == [str(path)]
    assert before > 3 and mem.stats()["collections"]["agentd-documents"] == 1
    hits = mem.search("apples alpha fact", k=5)
    assert [h.text for h in hits] == ["zebra stripes are the only fact now"]


def test_forget_by_source_by_chunk_id_and_by_run(mem, docs):
    mem.ingest([docs])
    assert mem.forget(source=docs / "deploy.md") >= 1
    assert all("bluefin" not in h.text for h in mem.search("staging server bluefin", k=5))
    hit = mem.search("pancakes flour eggs", k=1)[0]
    assert mem.forget(id=hit.id) == 1
    assert mem.stats()["documents"] == 0
    mem.remember("the user likes tea", run_id="r1")
    mem.add_episode("r1", "make tea", ["boil water"], "succeeded")
    mem.remember("unrelated", run_id="r2")
    assert mem.forget(run="r1") == 2
    assert [h.text for h in mem.list()] == ["unrelated"]
    assert mem.forget(id="no-such-id") == 0
    with pytest.raises(MemoryStoreError, match="exactly one"):
        mem.forget()


def test_forget_a_folder_forgets_every_file_under_it(mem, docs):
    mem.ingest([docs])
    assert mem.forget(source=docs / "sub") == 1
    assert [h.meta["source"] for h in mem.list(kind="document")] == [str(docs / "deploy.md")]


def test_files_over_the_size_limit_are_skipped(tmp_path):
    mem = make_memory(tmp_path / "home", max_file_bytes=10)
    path = tmp_path / "big.txt"
    path.write_text("x" * 100)
    report = mem.ingest([path])
    assert report.added == [] and "max_file_bytes" in report.skipped[0][1]


# -- notes, episodes, scopes, kinds --------------------------------------------------------------------
def test_episodes_and_notes_are_searchable_by_kind(mem, docs):
    mem.ingest([docs])
    mem.add_episode("r9", "write the weekly report", ["draft it [write_file]"], "succeeded", "done",
                    answer="wrote out/weekly.md", lessons=["Files made: out/weekly.md"])  # fmt: skip
    mem.remember("weekly reports go to out/weekly.md")
    episodes = mem.search("weekly report", kind="episode")
    assert [h.id for h in episodes] == ["ep-r9"]
    assert "Lessons: - Files made: out/weekly.md" in episodes[0].text
    assert episodes[0].provenance.startswith("episode ") and episodes[0].provenance.endswith("run r9")
    assert {h.kind for h in mem.search("weekly report", k=10)} == {"episode", "note", "document"}
    with pytest.raises(MemoryStoreError, match="unknown memory kind"):
        mem.search("x", kind="bogus")


def test_scoped_memories_are_only_visible_to_their_scope(mem):
    mem.remember("nightly backups write to /srv/backup", scope="schedule:nightly")
    mem.remember("scratch value for this run is 42", scope="run:r1")
    mem.remember("global fact about backups")
    assert visible_scopes("r1", "nightly") == ["global", "schedule:nightly", "run:r1"]
    texts = lambda scopes: {h.text for h in mem.search("backups run value", k=10, scopes=scopes)}  # noqa: E731
    assert texts(["global"]) == {"global fact about backups"}
    assert texts(visible_scopes("r2", "nightly")) == {
        "global fact about backups",
        "nightly backups write to /srv/backup",
    }
    assert "scratch value for this run is 42" in texts(visible_scopes("r1"))
    assert len(texts(None)) == 3, "no scope filter: search everything"
    assert mem.stats()["collections"]["agentd-scoped"] == 2


def test_the_same_note_is_stored_once_and_min_score_filters(mem):
    mem.remember("tea is good")
    mem.remember("  tea is good ")
    assert mem.stats()["collections"]["agentd-notes"] == 1
    assert mem.search("completely different words", min_score=0.5) == []


# -- embedding model identity ------------------------------------------------------------------------
def test_another_embedding_model_is_a_clear_error_and_reindex_fixes_it(tmp_path, docs):
    home = tmp_path / "home"
    make_memory(home).ingest([docs])
    other = {"provider": "hash", "options": {"dim": 128}}
    with pytest.raises(EmbeddingMismatch, match="agentd memory reindex"):
        make_memory(home, embedding=other).search("staging server")
    unchecked = Memory(MemorySettings(embedding=other), home, check=False)
    done = unchecked.reindex()
    assert done == {"agentd-documents": 2}, "only collections that exist are re-embedded"
    fresh = make_memory(home, embedding=other)
    assert fresh.stats()["embedding"] == "hash-128"
    assert "bluefin" in fresh.search("staging server called", k=1)[0].text
    assert make_memory(home, embedding=other).reindex()["agentd-documents"] is None, (
        "second reindex: nothing to do"
    )


def test_embedding_settings_are_validated():
    with pytest.raises(EmbeddingError, match="unknown key"):
        make_embedder({"provder": "hash"})
    with pytest.raises(EmbeddingError, match="downloads its model"):
        make_embedder({"provider": "default"})
    with pytest.raises(EmbeddingError, match="unknown embedding provider"):
        make_embedder({"provider": "no-such-thing"})
    with pytest.raises(EmbeddingError, match="python:package.module:factory"):
        make_embedder({"provider": "python:nocolon"})
    custom = make_embedder({"provider": "python:agentd_memory.embeddings:HashEmbedding"})
    assert custom.model_id == "hash-256" and len(custom(["a"])[0]) == 256


def test_hash_embedding_is_unit_length_and_lexical():
    emb = HashEmbedding(64)
    a, b, c, empty = emb(["red apples", "apples red", "blue sky", ""])
    dot = lambda x, y: sum(i * j for i, j in zip(x, y, strict=True))  # noqa: E731
    assert abs(dot(a, a) - 1) < 1e-9 and abs(dot(empty, empty) - 1) < 1e-9
    assert dot(a, b) > 0.99 and dot(a, c) < 0.5


def test_bad_memory_settings_name_the_key(tmp_path):
    from agentd.config import load_config
    from agentd.errors import ConfigError

    config = load_config(home=tmp_path, env={}, overrides={"plugins.memory": {"chunk_chars": 5}}, validate_plugins=False)
    with pytest.raises(ConfigError, match="plugins.memory.chunk_chars"):
        MemorySettings.from_config(config)


def test_a_broken_model_file_is_a_clear_memory_error(tmp_path):
    broken = tmp_path / "model.onnx"
    broken.write_text("not a model")
    mem = make_memory(tmp_path / "home", embedding={"model_path": str(broken)})
    assert mem.embedder.model_id.startswith("all-MiniLM-L6-v2-onnx-int8@")
    with pytest.raises(MemoryStoreError, match="cannot load the embedding model"):
        mem.remember("anything")


def test_parallel_model_runs_give_every_text_its_own_vector(tmp_path):
    """Whatever the worker count and batch size, vector i belongs to text i, and the runs happen on the
    embedder's worker threads when there are several (a fake model run stands in for onnxruntime)."""
    import threading

    from agentd_memory.embeddings import MiniLMInt8

    model, tokenizer = tmp_path / "model.onnx", tmp_path / "tokenizer.json"
    model.write_bytes(b"weights")
    tokenizer.write_text("{}")
    texts = [f"text {i} " + "x" * ((i * 7) % 13) for i in range(23)]
    for workers in (1, 2, 3, 8):
        for batch_size in (1, 2, 5):
            embedder = MiniLMInt8(str(model), str(tokenizer), batch_size=batch_size, workers=workers)
            threads: set[str] = set()

            def run(batch, threads=threads):
                threads.add(threading.current_thread().name)
                return [[float(len(t)), float(t.split()[1])] for t in batch]

            embedder._session, embedder._encode = object(), run
            assert embedder(texts) == [[float(len(t)), float(i)] for i, t in enumerate(texts)]
            assert all(name.startswith("agentd-embed") for name in threads) == (workers > 1), (workers, threads)
    assert MiniLMInt8(str(model), str(tokenizer)).workers >= 1  # 0: one per usable CPU
    with pytest.raises(EmbeddingError, match="workers and threads"):
        make_embedder({"workers": -1})
