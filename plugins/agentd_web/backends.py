"""Search backends: the contract, the shared request helper, and the built-ins (SearxNG, ddgs, Brave, Tavily).

A backend is any object with ``search(query, max_results, context) -> list[SearchResult] | SearchResponse``
and, optionally, ``problem(settings, environ) -> str | None`` saying what configuration it lacks (used by the
doctor check and before the first search). Failures are raised as ToolError with a message for the model.
"""

from __future__ import annotations

import html
import importlib.util
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import httpx

from agentd import ToolError

from .errors import retry_after_seconds, status_message, transport_error_message
from .hookspecs import web_hookimpl
from .settings import WebSettings

BRAVE_URL = "https://api.search.brave.com/res/v1/web/search"
TAVILY_URL = "https://api.tavily.com/search"
_TAGS = re.compile(r"<[^>]+>")  # snippets from APIs carry <strong> highlights; pages go through trafilatura


@dataclass
class SearchResult:
    """One ranked hit. ``engine`` names the engine that found it (SearxNG reports the upstream engine)."""

    title: str
    url: str
    snippet: str = ""
    engine: str = ""
    rank: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SearchResponse:
    """Results plus notes for the model (e.g. engines that did not answer)."""

    results: list[SearchResult]
    notes: list[str] = field(default_factory=list)


@runtime_checkable
class SearchBackend(Protocol):
    """What a search backend provides; ``problem`` is optional."""

    def search(
        self, query: str, max_results: int, context: BackendContext
    ) -> list[SearchResult] | SearchResponse:
        """Return up to ``max_results`` results, best first."""


@dataclass
class BackendContext:
    """What a backend may use: settings, an HTTP client, the environment, and a cancel flag."""

    settings: WebSettings
    client: httpx.Client
    environ: Mapping[str, str]
    cancel: threading.Event = field(default_factory=threading.Event)
    sleep: Callable[[float], None] = time.sleep

    def options(self, name: str) -> dict[str, Any]:
        """The ``[plugins.web.backends.NAME]`` table for a third-party backend's own settings."""
        return dict(self.settings.backends.get(name, {}))

    def secret(self, key: str, env_key: str) -> str:
        """A credential from ``plugins.web.<key>``, else from the environment variable ``env_key``."""
        return str(getattr(self.settings, key, "") or self.environ.get(env_key, "") or "")

    def request_json(
        self,
        who: str,
        method: str,
        url: str,
        *,
        key_hint: str = "",
        hints: dict[int, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Send a request and parse its JSON; one retry after a short Retry-After; failures are ToolErrors."""
        for attempt in (1, 2):
            try:
                response = self.client.request(method, url, **kwargs)
            except httpx.HTTPError as exc:
                raise ToolError(transport_error_message(exc, f"{who} ({httpx.URL(url).host})")) from None
            if response.status_code == 429 and attempt == 1:
                wait = retry_after_seconds(response.headers.get("retry-after"))
                if wait is not None and wait <= self.settings.max_retry_wait_s and not self.cancel.is_set():
                    self.sleep(wait)
                    continue
            if response.status_code >= 400:
                message = status_message(
                    response.status_code, response.reason_phrase, response.headers, who, key_hint
                )
                if hints and response.status_code in hints:
                    message += f" ({hints[response.status_code]})"
                raise ToolError(message)
            try:
                return response.json()
            except ValueError:
                start = response.text[:80]
                raise ToolError(
                    f"{who} returned malformed JSON (it starts {start!r}); try again later, or choose another "
                    "backend in plugins.web.search_backend"
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover


def _clean(text: Any) -> str:
    return html.unescape(_TAGS.sub("", str(text or ""))).strip()


def _results(
    rows: Any, who: str, title: str, url: str, snippet: str, engine: Callable[[dict], str]
) -> list[SearchResult]:
    """Map a backend's list of dicts; rows without an http(s) URL are skipped, ranks follow the order."""
    if not isinstance(rows, list):
        raise ToolError(f"{who} answered without a list of results; try again later or another backend")
    out: list[SearchResult] = []
    for row in rows:
        if not isinstance(row, dict) or not str(row.get(url, "")).startswith(("http://", "https://")):
            continue
        out.append(
            SearchResult(
                title=_clean(row.get(title)) or str(row[url]),
                url=str(row[url]),
                snippet=_clean(row.get(snippet)),
                engine=engine(row),
                rank=len(out) + 1,
            )
        )
    return out


class SearxngBackend:
    """A SearxNG (or searx) instance's JSON API; needs ``format=json`` enabled on the instance."""

    def problem(self, settings: WebSettings, environ: Mapping[str, str]) -> str | None:
        if not settings.searxng_url:
            return "plugins.web.searxng_url is not set; set it to your SearxNG instance, e.g. http://127.0.0.1:8888"
        return None

    def search(self, query: str, max_results: int, context: BackendContext) -> SearchResponse:
        settings = context.settings
        data = context.request_json(
            "SearxNG",
            "GET",
            settings.searxng_url.rstrip("/") + "/search",
            params={
                "q": query,
                "format": "json",
                "safesearch": {"off": 0, "moderate": 1, "strict": 2}[settings.safesearch],
            },
            hints={
                403: "the instance must allow JSON output: add json to search.formats in its settings.yml"
            },
        )
        if not isinstance(data, dict):
            raise ToolError("SearxNG answered JSON without a results list; check plugins.web.searxng_url")
        results = _results(
            data.get("results"),
            "SearxNG",
            "title",
            "url",
            "content",
            lambda r: str(r.get("engine") or ",".join(r.get("engines") or []) or "searxng"),
        )
        notes = [
            f"engine {e[0]} did not answer ({e[1]})"
            for e in data.get("unresponsive_engines") or []
            if isinstance(e, list | tuple) and len(e) >= 2
        ]
        return SearchResponse(results[:max_results], notes)


class DdgsBackend:
    """DuckDuckGo and friends through the ``ddgs`` package: no key, the zero-configuration default."""

    def problem(self, settings: WebSettings, environ: Mapping[str, str]) -> str | None:
        if importlib.util.find_spec("ddgs") is None:
            return "the ddgs package is not installed (pip install ddgs), or choose another plugins.web.search_backend"
        return None

    def search(self, query: str, max_results: int, context: BackendContext) -> list[SearchResult]:
        from ddgs import DDGS
        from ddgs.exceptions import DDGSException, RatelimitException, TimeoutException

        settings = context.settings
        try:
            rows = DDGS(timeout=max(1, int(settings.timeout_s))).text(
                query,
                max_results=max_results,
                region=settings.ddgs_region,
                safesearch={"strict": "on"}.get(settings.safesearch, settings.safesearch),
                backend=settings.ddgs_backend,
            )
        except RatelimitException as exc:
            raise ToolError(
                f"DuckDuckGo (ddgs) rate-limited this machine ({exc}); wait a minute or use another backend"
            ) from None
        except TimeoutException as exc:
            raise ToolError(f"DuckDuckGo (ddgs) did not answer in time ({exc}); try again later") from None
        except DDGSException as exc:
            if "no results" in str(exc).lower():
                return []
            raise ToolError(f"DuckDuckGo (ddgs) search failed ({exc}); there may be no network") from None
        engine = "ddgs" if settings.ddgs_backend == "auto" else f"ddgs:{settings.ddgs_backend}"
        return _results(rows, "ddgs", "title", "href", "body", lambda r: engine)[:max_results]


class BraveBackend:
    """The Brave Search API (key in plugins.web.brave_api_key or $BRAVE_API_KEY)."""

    def problem(self, settings: WebSettings, environ: Mapping[str, str]) -> str | None:
        if not (settings.brave_api_key or environ.get(settings.brave_api_key_env)):
            return f"no Brave Search API key: set plugins.web.brave_api_key or the {settings.brave_api_key_env} variable"
        return None

    def search(self, query: str, max_results: int, context: BackendContext) -> list[SearchResult]:
        key = context.secret("brave_api_key", context.settings.brave_api_key_env)
        data = context.request_json(
            "Brave Search",
            "GET",
            BRAVE_URL,
            params={"q": query, "count": min(max_results, 20), "safesearch": context.settings.safesearch},
            headers={"Accept": "application/json", "X-Subscription-Token": key},
            key_hint=f"plugins.web.brave_api_key / ${context.settings.brave_api_key_env}",
        )
        if not isinstance(data, dict):
            raise ToolError("Brave Search answered JSON that is not an object; try again later")
        web = data.get("web") or {}  # Brave leaves "web" out when nothing matched
        return _results(
            web.get("results", []), "Brave Search", "title", "url", "description", lambda r: "brave"
        )[:max_results]


class TavilyBackend:
    """The Tavily search API (key in plugins.web.tavily_api_key or $TAVILY_API_KEY)."""

    def problem(self, settings: WebSettings, environ: Mapping[str, str]) -> str | None:
        if not (settings.tavily_api_key or environ.get(settings.tavily_api_key_env)):
            return f"no Tavily API key: set plugins.web.tavily_api_key or the {settings.tavily_api_key_env} variable"
        return None

    def search(self, query: str, max_results: int, context: BackendContext) -> list[SearchResult]:
        key = context.secret("tavily_api_key", context.settings.tavily_api_key_env)
        data = context.request_json(
            "Tavily",
            "POST",
            TAVILY_URL,
            json={"query": query, "max_results": max_results, "search_depth": "basic"},
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            key_hint=f"plugins.web.tavily_api_key / ${context.settings.tavily_api_key_env}",
        )
        if not isinstance(data, dict):
            raise ToolError("Tavily answered JSON that is not an object; try again later")
        return _results(data.get("results"), "Tavily", "title", "url", "content", lambda r: "tavily")[
            :max_results
        ]


@web_hookimpl
def register_search_backends(register):
    """The built-in backends, registered through the same hook a third-party backend uses."""
    register("searxng", SearxngBackend())
    register("ddgs", DdgsBackend())
    register("brave", BraveBackend())
    register("tavily", TavilyBackend())
