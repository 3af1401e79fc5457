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
