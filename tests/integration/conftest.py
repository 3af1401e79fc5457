"""Fixtures of the sandbox containment tests (test_sandbox.py, test_sandbox_escapes.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from sandbox_fixtures import _usable


@pytest.fixture(params=["bwrap", "subprocess"])
def backend(request):
    problem = _usable(request.param)
    if problem:
        pytest.skip(problem)
    if os.geteuid() != 0:
        pytest.skip("these containment checks assume the daemon runs as root (uid drop per workspace)")
    from agentd_code.sandbox import select_backend

    return select_backend(request.param)


@pytest.fixture
def area():
    """A world-traversable folder outside every workspace, owned by root."""
    folder = Path(tempfile.mkdtemp(prefix="agentd-sbx-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def ws(area):
    path = area / "ws"
    path.mkdir()
    return path
