"""Web tools for agentd: ``web_search``, ``fetch_url`` and ``http_request``.

Search goes through a configurable backend (SearxNG, DuckDuckGo via ``ddgs``, Brave, Tavily, or one a plugin
adds through this plugin's ``register_search_backends`` hook, see hookspecs.py). Pages are fetched with
address checks on every redirect hop and reduced to their main text by trafilatura. Search results and pages
are cached under ``<AGENTD_HOME>/cache/web``. Settings: the ``[plugins.web]`` table (docs/web.md).

Only agentd's public API and the standard library are imported here; httpx, pluggy and trafilatura load when
the tools are registered or first used.
"""

from __future__ import annotations

import warnings
from typing import Any

from agentd import hookimpl

AGENTD_API = "1.0"

__all__ = [
    "cache_clear",
    "cache_list",
    "doctor_checks",
    "register_tools",
    "unavailable_tools",
    "web_hookimpl",
]


@hookimpl
def register_settings(register):
    """``[plugins.web]`` is validated when the config loads."""
    from .settings import WebSettings

    register(WebSettings)


@hookimpl
def register_tools(register, config):
    """Register web_search, fetch_url and (when some host is allowed) http_request; all reach the network."""
    from .tools import build_toolkit

    toolkit = build_toolkit(config)
    register(toolkit.web_search, side_effects=["network"],
             goal_phrases=("search the web", "search the internet", "search online", "web search", "look up online"))
    register(toolkit.fetch_url, side_effects=["network"],
             goal_phrases=("fetch the page", "fetch the url", "fetch the web page", "download the page"))
    if not _allowed_hosts(config):
        return  # nothing allowed: keep a tool that could only refuse out of the model's catalogue
    with warnings.catch_warnings():
        # The body argument is named ``json`` like httpx's; pydantic warns it shadows BaseModel.json, harmlessly.
        warnings.filterwarnings("ignore", message='Field name "json"', category=UserWarning)
        register(toolkit.http_request, side_effects=["network"])


@hookimpl
def register_commands(cli):
    """Add ``agentd web cache list|clear``."""
    from .cli import web_commands

    cli.add_command(web_commands)


def _allowed_hosts(config: Any) -> list[str]:
    hosts = config.plugin_settings("web").get("http_allow_hosts") or []
    return list(hosts) if isinstance(hosts, list) else [str(hosts)]  # a bad type is reported when used


@hookimpl
def doctor_checks(config: Any) -> list[tuple[str, bool, str]]:
    """Checks for `agentd doctor`: (name, ok, what to do). Names the config key of anything missing."""
    from .doctor import doctor_checks as run

    return run(config)


@hookimpl
def unavailable_tools(config: Any) -> list[str]:
    """For `agentd tools list`: web tools that are missing or misconfigured, and the key to set."""
    from .doctor import unavailable_tools as run

    return run(config)


def cache_list(config: Any) -> list[Any]:
    """The cached searches and pages of this config's home (CacheEntry items, newest first)."""
    from . import cache
    from .settings import load_settings

    settings = load_settings(config.plugin_settings("web"))
    return cache.cache_list(settings.resolved_cache_dir(config.home), settings.cache_ttl_s)


def cache_clear(config: Any, expired_only: bool = False) -> int:
    """Delete this config's cached searches and pages (only expired ones with ``expired_only``); returns how many."""
    from . import cache
    from .settings import load_settings

    settings = load_settings(config.plugin_settings("web"))
    return cache.cache_clear(settings.resolved_cache_dir(config.home), expired_only, settings.cache_ttl_s)


def __getattr__(name: str) -> Any:
    # ``from agentd_web import web_hookimpl`` for backend authors, without importing pluggy at load time.
    if name == "web_hookimpl":
        from .hookspecs import web_hookimpl

        return web_hookimpl
    raise AttributeError(name)
