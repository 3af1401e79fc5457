"""`agentd web cache list|clear`: click groups for the CLI (click only; the cache module is imported in commands)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click


@click.group("web")
def web_commands() -> None:
    """The web plugin: its cache of searches and fetched pages."""


@web_commands.group("cache")
def web_cache_commands() -> None:
    """Inspect and clear the web plugin's cache of searches and fetched pages."""


def _where(cache_dir: Path | None) -> tuple[Path, float]:
    """The cache folder and TTL: --cache-dir, else from the CLI's config (ctx.obj) or the loaded config."""
    from .settings import WebSettings, WebSettingsError, load_settings

    config = _config()
    try:
        settings = load_settings(config.plugin_settings("web")) if config is not None else WebSettings()
    except WebSettingsError as exc:
        raise click.ClickException(str(exc)) from None
    if cache_dir is not None:
        return cache_dir, settings.cache_ttl_s
    if config is None:
        raise click.ClickException("no agentd configuration found; pass --cache-dir")
    return settings.resolved_cache_dir(config.home), settings.cache_ttl_s


def _config() -> Any:
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx is not None else None
    for candidate in (obj, getattr(obj, "config", None)):
        if candidate is not None and hasattr(candidate, "plugin_settings"):
            return candidate
    try:
        from agentd.config import load_config  # only when the CLI did not hand us its config

        return load_config()
    except Exception as exc:  # a ConfigError, or no home at all
        raise click.ClickException(f"cannot load the agentd configuration: {exc}") from None


@web_cache_commands.command("list")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None, help="Cache folder to read.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per entry.")
def list_cache(cache_dir: Path | None, as_json: bool) -> None:
    """List cached searches and pages, newest first."""
    from .cache import cache_list

    folder, ttl = _where(cache_dir)
    entries = cache_list(folder, ttl)
    if as_json:
        for entry in entries:
            click.echo(json.dumps(entry.to_dict(), ensure_ascii=False))
        return
    if not entries:
        click.echo(f"the web cache is empty ({folder})")
        return
    for entry in entries:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.created)) if entry.created else "?"
        state = "expired" if entry.expired else "fresh"
        key = entry.key.replace("\n", " | ")
        click.echo(f"{when}  {entry.kind:<7} {state:<7} {entry.size:>8}  {key}")
    click.echo(f"{len(entries)} entries in {folder}")


@web_cache_commands.command("clear")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None, help="Cache folder to clear.")
@click.option("--expired", is_flag=True, help="Only remove expired or unreadable entries.")
def clear_cache(cache_dir: Path | None, expired: bool) -> None:
    """Delete cached searches and pages."""
    from .cache import cache_clear

    folder, ttl = _where(cache_dir)
    removed = cache_clear(folder, expired_only=expired, ttl_s=ttl)
    click.echo(f"removed {removed} {'expired ' if expired else ''}entries from {folder}")
