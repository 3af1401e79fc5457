"""The three tools: web_search, fetch_url and http_request, as methods of one WebTools per app.

Settings are read from ``ctx.settings`` on every call (so a run sees the config it was started with); what
the tools cannot get from a ToolContext (AGENTD_HOME for the cache, the search backends) is fixed when the
plugin registers its tools.
"""

from __future__ import annotations

import json as jsonlib
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from agentd import ToolContext, ToolError, ToolResult, WithStoredKeys

from .backends import BackendContext, SearchResponse, SearchResult
from .cache import WebCache
from .errors import status_message
from .extract import decode, extract, kind_from_type, media_type, refuse_binary
from .fetcher import Fetched, Fetcher
from .guard import AddressPolicy, Resolver, Target, host_matches, system_resolver
from .registry import BackendRegistry, load_backends
from .settings import WebSettings, WebSettingsError, load_settings

ACCEPT = "text/html,application/xhtml+xml,application/json;q=0.9,text/plain;q=0.8,*/*;q=0.5"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
SHOWN_HEADERS = ("content-type", "content-length", "location", "retry-after", "etag", "last-modified")


class WebTools:
    """The web tools of one app. ``transport``, ``search_transport``, ``resolver``, ``clock`` and ``sleep`` are for tests."""

    def __init__(
        self,
        home: Path,
        registry: BackendRegistry,
        *,
        transport: httpx.BaseTransport | None = None,
        search_transport: httpx.BaseTransport | None = None,
        resolver: Resolver = system_resolver,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.home = Path(home)
        self.registry = registry
        self.transport = transport
        self.search_transport = search_transport
        self.resolver = resolver
        self.environ = WithStoredKeys(home=self.home) if environ is None else environ
        self.clock = clock
        self.sleep = sleep

    # -- shared -------------------------------------------------------------------------------------------

    def settings(self, ctx: ToolContext) -> WebSettings:
        try:
            return load_settings(ctx.settings)
        except WebSettingsError as exc:
            raise ToolError(f"{exc}; the user must fix the configuration") from None

    def cache(self, settings: WebSettings) -> WebCache:
        return WebCache(settings.resolved_cache_dir(self.home), settings.cache_ttl_s, self.clock)

    def fetcher(
        self, settings: WebSettings, policy: AddressPolicy, ctx: ToolContext, **kwargs: Any
    ) -> Fetcher:
        # Finish before the executor abandons the call, so the model gets our message, not a bare timeout.
        budget = min(settings.timeout_s, max(1.0, ctx.timeout_s * 0.9))
        return Fetcher(
            settings,
            policy,
            resolver=self.resolver,
            transport=self.transport,
            cancel=ctx.cancel,
            budget_s=budget,
            **kwargs,
        )

    # -- web_search ---------------------------------------------------------------------------------------

    def web_search(self, query: str, max_results: int = 5, *, ctx: ToolContext) -> ToolResult:
        """Search the web; returns ranked results (title, URL, snippet, engine). Read one with fetch_url."""
        settings = self.settings(ctx)
        query = " ".join(query.split())
        if not query:
            raise ToolError("the search query is empty; give the words to search for")
        count = max(1, min(int(max_results), settings.max_results_limit))
        name = settings.search_backend.strip().lower()
        problem = self.registry.problem_of(name, settings, self.environ)
        if problem:
            raise ToolError(f"web search is not set up: {problem}")
        cache = self.cache(settings)
        key = "\n".join(
            ["search", name, settings.searxng_url if name == "searxng" else "", str(count), query]
        )
        response = _cached_search(cache.get(key))
        cached = response is not None
        if response is None:
            response = self._search(name, query, count, settings, ctx)
            if response.results and not response.notes:  # a partial answer is not worth keeping
                cache.put(key, "search", {"results": [r.to_dict() for r in response.results], "notes": []})
        return _search_result(query, name, response, cached)

    def search_once(self, name: str, query: str, settings: WebSettings, ctx: ToolContext) -> int:
        """One uncached search for `agentd doctor`; the number of results, or a ToolError naming the backend."""
        return len(self._search(name, query, 1, settings, ctx).results)

    def _search(
        self, name: str, query: str, count: int, settings: WebSettings, ctx: ToolContext
    ) -> SearchResponse:
        headers = {"User-Agent": settings.user_agent}
        with httpx.Client(
            transport=self.search_transport,
            timeout=settings.timeout_s,
            headers=headers,
            follow_redirects=True,
        ) as client:
            context = BackendContext(settings, client, self.environ, ctx.cancel, self.sleep)
            try:
                out = self.registry.backends[name].search(query, count, context)
            except ToolError as exc:  # whichever backend failed, the message says which one it was
                raise ToolError(f"search backend {name} failed: {exc}") from None
        response = out if isinstance(out, SearchResponse) else SearchResponse(list(out or []))
        results = [
            r if isinstance(r, SearchResult) else SearchResult(**_result_fields(r)) for r in response.results
        ]
        for rank, result in enumerate(results, start=1):
            result.rank = rank
        return SearchResponse(results[:count], response.notes)

    # -- fetch_url ----------------------------------------------------------------------------------------

    def fetch_url(self, url: str, *, ctx: ToolContext) -> ToolResult:
        """Fetch a web page (HTML, plain text or JSON) and return its title and main text."""
        settings = self.settings(ctx)
        policy = AddressPolicy.from_settings(settings)
        policy.parse(url)  # scheme and deny-list hold for cached pages too
        cache = self.cache(settings)
        key = f"fetch\n{url}\npolicy {policy.cache_tag()}"  # a page is served only to the policy that fetched it
        page = cache.get(key)
        cached = page is not None
        if page is None:
            fetched = self.fetcher(settings, policy, ctx).request(
                "GET", url, headers={"Accept": ACCEPT}, before_body=lambda r: _refuse_early(url, r)
            )
            extracted = extract(fetched.content, fetched.content_type, fetched.url)
            page = {
                "url": url,
                "final_url": fetched.url,
                "title": extracted.title,
                "kind": extracted.kind,
                "content_type": media_type(fetched.content_type),
                "text": extracted.text,
                "truncated": fetched.truncated,
                "redirects": fetched.redirects,
            }
            cache.put(key, "fetch", page)
        return _page_result(page, settings, cached)

    # -- http_request -------------------------------------------------------------------------------------

    def http_request(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None = None,
        json: dict[str, Any] | list[Any] | None = None,
        *,
        ctx: ToolContext,
    ) -> ToolResult:
        """Call a web API on a host the user allowed; returns the status and the body (JSON pretty-printed)."""
        settings = self.settings(ctx)
        method = method.strip().upper()
        if method not in METHODS:
            raise ToolError(f"method {method!r} is not supported; use one of {', '.join(METHODS)}")
        allowed = settings.http_allow_hosts
        if not allowed:
            raise ToolError(
                "http_request is switched off: no host is allowed (plugins.web.http_allow_hosts is empty); "
                "use fetch_url to read pages, or ask the user to allow the API's host"
            )

        def check_hop(target: Target) -> None:
            if not any(host_matches(target.host, target.port, pattern) for pattern in allowed):
                raise ToolError(
                    f"{target.host}:{target.port} is not an allowed host for http_request "
                    f"(plugins.web.http_allow_hosts = {allowed}); ask the user to add it"
                )

        policy = AddressPolicy.from_settings(settings, trusted_hosts=allowed)
        fetched = self.fetcher(settings, policy, ctx, check_hop=check_hop).request(
            method, url, headers=dict(headers or {}), json=json
        )
        return _api_result(method, fetched, settings)


def build_toolkit(config: Any, **kwargs: Any) -> WebTools:
    """WebTools for an agentd Config: home from ``config.home``, backends from ``[plugins.web]``."""
    raw = config.plugin_settings("web")
    try:
        settings = load_settings(raw)
    except WebSettingsError:
        settings = WebSettings()  # every call will report the bad key; the backends still load
    registry = load_backends(settings, Path(config.home), kwargs.pop("extra_backends", ()))
    return WebTools(Path(config.home), registry, **kwargs)


def _cached_search(value: dict[str, Any] | None) -> SearchResponse | None:
    """A SearchResponse from a cache record, or None when missing or not in the expected shape."""
    try:
        return SearchResponse([SearchResult(**r) for r in value["results"]], []) if value else None
    except (KeyError, TypeError):
        return None


def _result_fields(row: Any) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise ToolError(
            f"the search backend returned {type(row).__name__} items instead of results; report this bug"
        )
    return {k: str(row.get(k, "")) for k in ("title", "url", "snippet", "engine")}


def _search_result(query: str, backend: str, response: SearchResponse, cached: bool) -> ToolResult:
    data = {
        "query": query,
        "backend": backend,
        "results": [r.to_dict() for r in response.results],
        "notes": response.notes,
        "cached": cached,
    }
    notes = "".join(f"\nNote: {n}" for n in response.notes)
    if not response.results:
        return ToolResult(
            output=f"No results for {query!r} from {backend}; try other or fewer words.{notes}", data=data
        )
    lines = [f"Results for {query!r} ({backend}{', cached' if cached else ''}):"]
    for r in response.results:
        lines.append(f"{r.rank}. {r.title}\n   {r.url}")
        if r.snippet:
            lines.append(f"   {r.snippet} [{r.engine}]" if r.engine else f"   {r.snippet}")
    return ToolResult(output="\n".join(lines) + notes, data=data)


def _refuse_early(url: str, response: httpx.Response) -> None:
    """Stop before downloading a body that cannot be used: an error status or a declared binary type."""
    if response.status_code >= 400:
        raise ToolError(status_message(response.status_code, response.reason_phrase, response.headers, url))
    content_type = response.headers.get("content-type", "")
    if kind_from_type(content_type) == "binary":
        size = response.headers.get("content-length")
        raise refuse_binary(url, content_type, int(size) if size and size.isdigit() else None)


def _page_result(page: dict[str, Any], settings: WebSettings, cached: bool) -> ToolResult:
    text = page["text"] or "(the page has no readable text)"
    cut = len(text) > settings.max_chars
    if cut:
        text = (
            text[: settings.max_chars]
            + f"\n[... cut at {settings.max_chars} characters (plugins.web.max_chars)]"
        )
    head = [f"Title: {page['title']}" if page["title"] else "", f"URL: {page['final_url']}"]
    if page["final_url"] != page["url"]:
        head.append(f"(redirected from {page['url']})")
    if page["truncated"]:
        head.append(f"(only the first {settings.max_bytes} bytes were read: plugins.web.max_bytes)")
    data = {k: v for k, v in page.items() if k != "text"}
    data.update(chars=len(page["text"]), cut=cut, cached=cached)
    return ToolResult(output="\n".join(h for h in head if h) + "\n\n" + text, data=data)


def _api_result(method: str, fetched: Fetched, settings: WebSettings) -> ToolResult:
    content_type = fetched.content_type
    kind = kind_from_type(content_type)
    parsed: Any = None
    if kind == "binary":
        body = f"(binary body: {media_type(content_type)}, {len(fetched.content)} bytes)"
    else:
        body = decode(fetched.content, content_type)
        try:
            parsed = jsonlib.loads(body) if body.strip() and kind in (None, "json") else None
        except ValueError:
            parsed = None
        if parsed is not None:
            body = jsonlib.dumps(parsed, indent=2, ensure_ascii=False)
    if len(body) > settings.max_chars:
        body = body[: settings.max_chars] + f"\n[... cut at {settings.max_chars} characters]"
    headers = {k: fetched.headers[k] for k in SHOWN_HEADERS if k in fetched.headers}
    data = {
        "status": fetched.status,
        "url": fetched.url,
        "headers": headers,
        "json": parsed,
        "truncated": fetched.truncated,
    }
    if fetched.status >= 400:
        message = status_message(fetched.status, fetched.reason, fetched.headers, f"{method} {fetched.url}")
        return ToolResult(error=f"{message}\n{body[:1000]}", data=data)
    head = f"HTTP {fetched.status} {fetched.reason}\n" + "".join(f"{k}: {v}\n" for k, v in headers.items())
    return ToolResult(output=head + "\n" + body, data=data)
