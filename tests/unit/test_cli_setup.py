"""Newcomer paths: shell completion, config init/set, stored keys, reachable-or-not API models and search
backends (real loopback HTTP servers), deny's message, and `tools run` leaving nothing behind."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from click.testing import CliRunner
from receivers import LoopbackHTTP

from agentd import Goal
from agentd.cli import cli
from agentd.testing import call, plan

REPO = Path(__file__).resolve().parents[2]


def invoke(*args: str, input: str | None = None):  # noqa: A002 - click's name
    return CliRunner().invoke(cli, list(args), input=input)


def configure(home: Path, text: str = "") -> None:
    script = home / "script.json"
    script.write_text(json.dumps({"replies": []}))
    (home / "configs").mkdir(exist_ok=True)
    (home / "configs" / "agentd.toml").write_text(
        f'[models.local]\nprovider = "scripted"\nscript = "{script}"\n\n[plugins]\nload = ["workspace"]\n{text}'
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- completion --------------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_bash_completion_script_completes_commands_and_subcommands(home, tmp_path):
    shim = tmp_path / "bin" / "agentd"  # what `pip install` puts on PATH, pointing at this tree
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m agentd "$@"\n')
    shim.chmod(0o755)
    source = invoke("completion", "bash")
    assert source.exit_code == 0 and "complete -o nosort -F _agentd_completion agentd" in source.output
    script = tmp_path / "complete.sh"
    script.write_text(source.output + "\n"  # bash passes the command name as $1
                      'COMP_WORDS=(agentd sch); COMP_CWORD=1; _agentd_completion agentd; echo "${COMPREPLY[@]}"\n'
                      'COMPREPLY=(); COMP_WORDS=(agentd runs ap); COMP_CWORD=2; _agentd_completion agentd; echo "${COMPREPLY[@]}"\n')
    env = os.environ | {"PATH": f"{shim.parent}:{os.environ['PATH']}"}
    out = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.splitlines() == ["schedule", "approve"], out.stderr


@pytest.mark.parametrize(("shell", "marker"), [("zsh", "#compdef agentd"), ("fish", "complete --no-files --command agentd")])
def test_zsh_and_fish_completion_scripts(home, shell, marker):
    result = invoke("completion", shell)
    assert result.exit_code == 0 and marker in result.output and "_AGENTD_COMPLETE" in result.output


# -- config init / set -------------------------------------------------------------------------------------


def test_config_init_writes_the_commented_defaults_and_refuses_to_overwrite(home):
    result = invoke("config", "init")
    assert result.exit_code == 0, result.output
    written = (home / "configs" / "agentd.toml").read_text()
    assert written == (REPO / "configs" / "agentd.toml").read_text() and "# " in written
    again = invoke("config", "init")
    assert again.exit_code == 2 and "exists" in again.output and "config set" in again.output


def test_config_set_validates_first_and_keeps_comments(home):
    invoke("config", "init")
    path = home / "configs" / "agentd.toml"
    assert invoke("config", "set", "loop.max_steps", "4").exit_code == 0
    assert invoke("config", "set", "plugins.web.search_backend", "searxng").exit_code == 0
    text = path.read_text()
    assert tomllib.loads(text)["loop"]["max_steps"] == 4
    assert tomllib.loads(text)["plugins"]["web"]["search_backend"] == "searxng"
    assert "# Which of [models.*] `agentd goal` uses" in text  # the comments survive
    before = path.read_text()
    bad = invoke("config", "set", "loop.max_steps", "lots")
    assert bad.exit_code == 2 and "loop.max_steps" in bad.output
    typo = invoke("config", "set", "loop.max_stepz", "3")
    assert typo.exit_code == 2 and "loop.max_stepz: unknown key" in typo.output
    assert path.read_text() == before  # nothing half-written


# -- keys ----------------------------------------------------------------------------------------------


def test_keys_set_stores_owner_only_and_the_api_model_uses_it(home, monkeypatch):
    monkeypatch.delenv("AGENTD_TEST_KEY", raising=False)
    stored = invoke("keys", "set", "AGENTD_TEST_KEY", input="sk-stored-123\n")
    assert stored.exit_code == 0, stored.output
    path = home / "keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "sk-stored-123" not in invoke("keys", "list").output
    with LoopbackHTTP(status=500, answer={"error": {"message": "boom"}}) as api:
        configure(home, f'\n[models.api]\nprovider = "openai"\nmodel = "m"\nbase_url = "http://127.0.0.1:{api.port}/v1"\n'
                        'api_key_env = "AGENTD_TEST_KEY"\nrequest_timeout_s = 5\n')
        invoke("goal", "say hi", "--model", "api", "--json")
        monkeypatch.setenv("AGENTD_TEST_KEY", "sk-from-env")  # the variable, when set, wins
        invoke("goal", "say hi", "--model", "api", "--json")
    auth = [{k.lower(): v for k, v in headers.items()}.get("authorization") for _, _, headers, _ in api.requests]
    assert "Bearer sk-stored-123" in auth and auth[-1] == "Bearer sk-from-env"


def test_unreachable_api_model_names_its_base_url_in_the_run_and_in_doctor(home):
    url = f"http://127.0.0.1:{free_port()}/v1"
    configure(home, f'\n[models.api]\nprovider = "openai"\nmodel = "m"\nbase_url = "{url}"\nrequest_timeout_s = 3\n')
    result = invoke("goal", "say hi", "--model", "api", "--json")
    outcome = json.loads(result.output.strip().splitlines()[-1])
    assert outcome["status"] == "failed" and f"model api at {url}" in result.output
    os.environ.pop("AGENTD_DOCTOR_OFFLINE")  # this test is about the probe (monkeypatch restores it)
    checks = {c["check"]: c for c in json.loads(invoke("doctor", "--json").output)}
    assert checks["model local"]["ok"] and "(the default model)" in checks["model local"]["detail"]  # every configured model is checked, not only the default
    assert not checks["model api"]["ok"] and f"cannot reach {url}" in checks["model api"]["detail"]


def test_doctor_says_when_the_api_refuses_the_key(home, monkeypatch):
    monkeypatch.delenv("AGENTD_DOCTOR_OFFLINE")
    with LoopbackHTTP(status=401, answer={"error": "bad key"}) as api:
        configure(home, f'\n[models.api]\nprovider = "openai"\nmodel = "m"\nbase_url = "http://127.0.0.1:{api.port}/v1"\n'
                        'api_key_env = "AGENTD_NO_SUCH_KEY"\n')
        checks = {c["check"]: c for c in json.loads(invoke("doctor", "--json").output)}
    assert not checks["model api"]["ok"]
    assert "refused the API key" in checks["model api"]["detail"] and "agentd keys set AGENTD_NO_SUCH_KEY" in \
        checks["model api"]["detail"]
    assert api.requests[0][:2] == ("GET", "/v1/models")


# -- search backends -----------------------------------------------------------------------------------


def test_doctor_fails_an_unreachable_search_backend_and_passes_a_live_one(tmp_path, monkeypatch):
    from agentd_web.doctor import doctor_checks

    from agentd.config import load_config

    monkeypatch.delenv("AGENTD_DOCTOR_OFFLINE", raising=False)
    dead = f"http://127.0.0.1:{free_port()}"
    web = {"search_backend": "searxng", "searxng_url": dead, "allow_private": True, "timeout_s": 3}
    config = load_config(home=tmp_path, env={}, overrides={"plugins.web": web})
    checks = {name: (ok, text) for name, ok, text in doctor_checks(config, {})}
    assert checks["search backend searxng"][0]  # configured ...
    ok, text = checks["search backend searxng reachable"]  # ... but not answering: doctor says so
    assert not ok and "search backend searxng failed" in text and "127.0.0.1" in text
    with LoopbackHTTP(answer={"results": [{"title": "t", "url": "https://example.org", "content": "c"}]}) as searx:
        web["searxng_url"] = f"http://127.0.0.1:{searx.port}"
        config = load_config(home=tmp_path, env={}, overrides={"plugins.web": web})
        checks = {name: (ok, text) for name, ok, text in doctor_checks(config, {})}
    assert checks["search backend searxng reachable"] == (True, "a test search answered (1 results)")


# -- runs and tools ------------------------------------------------------------------------------------


def test_deny_says_the_run_stops(scripted, home):
    app, _ = scripted([plan(("write it", "write_file")), call("write_file", path="a.txt", content="x")])
    run_id = app.engine.submit(Goal(text="write a.txt", allowed_tools=["read_file"], memory=False))
    assert app.engine.run(run_id)["status"] == "awaiting_approval"
    result = invoke("runs", "deny", run_id)
    assert result.exit_code == 0 and result.output.startswith(f"{run_id}: denied; the run stops")


def test_tools_run_leaves_no_empty_workspace(home):
    configure(home)
    workspaces = home / "workspaces"
    read = invoke("tools", "run", "list_files", "--json")
    assert read.exit_code == 0, read.output
    assert json.loads(read.output)["workspace"] is None
    assert not any(workspaces.iterdir()) if workspaces.exists() else True
    wrote = invoke("tools", "run", "write_file", "--arg", "path=n.txt", "--arg", "content=hi", "--json")
    kept = Path(json.loads(wrote.output)["workspace"])
    assert (kept / "n.txt").read_text() == "hi"
