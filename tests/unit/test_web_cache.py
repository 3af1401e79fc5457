"""The on-disk cache: expiry by TTL, listing and clearing, and the `web cache` click group."""

from __future__ import annotations

import json

import agentd_web
from agentd_web.cache import WebCache, cache_clear, cache_list
from agentd_web.cli import web_cache_commands
from click.testing import CliRunner

from agentd.config import load_config


class Clock:
    def __init__(self, now=1_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


def test_put_get_and_expiry(tmp_path):
    clock = Clock()
    cache = WebCache(tmp_path / "c", ttl_s=60, clock=clock)
    assert cache.get("k") is None
    cache.put("k", "fetch", {"text": "hello"})
    assert cache.get("k") == {"text": "hello"}
    clock.now += 61
    assert cache.get("k") is None
    cache.put("k", "fetch", {"text": "again"})
    assert cache.get("k") == {"text": "again"}


def test_ttl_zero_switches_the_cache_off(tmp_path):
    cache = WebCache(tmp_path / "c", ttl_s=0)
    cache.put("k", "fetch", {"v": 1})
    assert cache.get("k") is None and not (tmp_path / "c").exists()


def test_corrupt_entries_are_misses_and_listed_as_corrupt(tmp_path):
    cache = WebCache(tmp_path, ttl_s=60)
    cache.put("k", "search", {"v": 1})
    cache.path_for("k").write_text("{half a file", encoding="utf-8")
    assert cache.get("k") is None
    [entry] = cache_list(tmp_path, 60)
    assert entry.kind == "corrupt" and entry.expired


def test_list_and_clear(tmp_path):
    clock = Clock()
    cache = WebCache(tmp_path, ttl_s=100, clock=clock)
    cache.put("old", "fetch", {"v": 1})
    clock.now += 50
    cache.put("new", "search", {"v": 2})
    clock.now += 60  # "old" is 110 s old now, "new" 60 s
    entries = cache_list(tmp_path, 100, clock)
    assert [(e.key, e.kind, e.expired) for e in entries] == [("new", "search", False), ("old", "fetch", True)]
    assert cache_clear(tmp_path, expired_only=True, ttl_s=100, clock=clock) == 1
    assert [e.key for e in cache_list(tmp_path, 100, clock)] == ["new"]
    assert cache_clear(tmp_path, ttl_s=100, clock=clock) == 1
    assert cache_list(tmp_path) == []


def test_package_functions_use_the_configs_home(tmp_path):
    config = load_config(home=tmp_path, env={}, overrides={"plugins.web": {"cache_ttl_s": 30}})
    WebCache(tmp_path / "cache" / "web", 30).put("fetch\nhttp://a.example/", "fetch", {"v": 1})
    assert [e.key for e in agentd_web.cache_list(config)] == ["fetch\nhttp://a.example/"]
    assert agentd_web.cache_clear(config) == 1 and agentd_web.cache_list(config) == []


def test_cli_list_and_clear_with_a_config_from_the_context(tmp_path):
    config = load_config(home=tmp_path, env={}, overrides={"plugins.web": {"cache_dir": "webcache"}})
    WebCache(tmp_path / "webcache", 3600).put("search\nddgs\n\n5\nowls", "search", {"results": []})
    runner = CliRunner()
    listed = runner.invoke(web_cache_commands, ["list", "--json"], obj=config)
    assert listed.exit_code == 0, listed.output
    [row] = [json.loads(line) for line in listed.output.splitlines()]
    assert row["kind"] == "search" and row["key"].endswith("owls") and not row["expired"]
    human = runner.invoke(web_cache_commands, ["list"], obj=config)
    assert "search  fresh" in human.output and "owls" in human.output and "1 entries" in human.output
    cleared = runner.invoke(web_cache_commands, ["clear"], obj=config)
    assert cleared.exit_code == 0 and "removed 1 entries" in cleared.output
    assert "is empty" in runner.invoke(web_cache_commands, ["list"], obj=config).output


def test_cli_with_an_explicit_cache_dir_and_a_bad_config(tmp_path):
    WebCache(tmp_path / "x", 3600).put("k", "fetch", {})
    runner = CliRunner()
    good = load_config(home=tmp_path, env={})
    assert (
        "removed 1 entries"
        in runner.invoke(web_cache_commands, ["clear", "--cache-dir", str(tmp_path / "x")], obj=good).output
    )
    bad = load_config(home=tmp_path, env={}, overrides={"plugins.web": {"cache_ttl": 5}}, validate_plugins=False)
    result = runner.invoke(web_cache_commands, ["list"], obj=bad)
    assert result.exit_code == 1 and "plugins.web.cache_ttl: unknown key" in result.output


def test_register_commands_mounts_web_cache(tmp_path):
    import click

    @click.group()
    def cli():
        pass

    agentd_web.register_commands(cli=cli)
    WebCache(tmp_path, 3600).put("fetch\nhttp://a.example/", "fetch", {})
    result = CliRunner().invoke(
        cli, ["web", "cache", "list", "--cache-dir", str(tmp_path)], obj=load_config(home=tmp_path, env={})
    )
    assert result.exit_code == 0 and "fetch\nhttp://a.example/".replace("\n", " | ") in result.output
