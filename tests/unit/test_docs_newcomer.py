"""Docs a newcomer copies from: commands that exist, dates that are still ahead, every guide linked, and the
systemd unit a user manager can honour."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from agentd.config import load_config
from agentd.daemon.setup import systemd_unit

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_at_examples_are_in_the_future():
    found = [(p.name, m) for p in DOCS for m in re.findall(r'--at "(\d{4}-\d\d-\d\d \d\d:\d\d)"', p.read_text())]
    assert found
    for name, when in found:
        assert datetime.fromisoformat(when) > datetime.now(), f"{name}: --at {when} is already in the past"


def test_no_command_the_installed_huggingface_hub_lacks():
    sources = [*DOCS, *(REPO / "plugins").rglob("*.py")]
    assert not [p.name for p in sources if "huggingface-cli" in p.read_text()]
    assert "hf download" in (REPO / "docs" / "image.md").read_text()


@pytest.mark.skipif(shutil.which("hf") is None, reason="huggingface_hub's hf command is not installed")
def test_hf_download_exists():
    assert subprocess.run(["hf", "download", "--help"], capture_output=True).returncode == 0


def test_every_guide_is_linked_from_the_readme():
    readme = (REPO / "README.md").read_text()
    for guide in (REPO / "docs").glob("*.md"):
        assert f"(docs/{guide.name})" in readme, f"docs/{guide.name} is not linked from README.md"


def test_systemd_user_unit_and_where_its_logs_are(tmp_path):
    unit = systemd_unit(load_config(home=tmp_path, env={}))
    assert "network-online.target" not in unit  # a user manager cannot order against a system target
    assert "journalctl --user -u agentd" in (REPO / "docs" / "daemon.md").read_text()
