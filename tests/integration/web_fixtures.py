"""Loopback servers for the web plugin's integration tests.

``FixtureSite`` is a threaded HTTP server on 127.0.0.1 that serves fixture pages (an article wrapped in
boilerplate, JSON, text, a redirect chain, a slow and a dripping response, a huge page, binaries, error
statuses, an echo API) and a small search engine over its documents, ranked by how many query words each
document contains. ``searx`` starts Debian's real searx (``searx-run``) with one ``json_engine`` engine whose
search_url is that engine, so a search goes: tool -> searx -> loopback engine -> ranked results.

Test modules import the fixtures they use: ``from web_fixtures import fixture_site, searx  # noqa: F401``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
    b"\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84\x00\x00\x00\x00IEND\xaeB`\x82"
)

BOILERPLATE_TOP = (
    '<nav><a href="/">Home</a> <a href="/about">About us</a> <a href="/subscribe">Subscribe to our newsletter</a>'
    "</nav><header>Loopback Gazette: all the news that fits in 127.0.0.0/8</header>"
    '<div class="cookie-banner">We use cookies to improve your experience. Accept all cookies.</div>'
)
BOILERPLATE_BOTTOM = (
    "<aside><h3>Sponsored</h3><p>Ten tricks to save money that bankers hate.</p></aside>"
    "<footer>Copyright 2026 Loopback Gazette. Privacy policy. Terms of service. Contact the webmaster.</footer>"
)


@dataclass(frozen=True)
class Doc:
    slug: str
    title: str
    paragraphs: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.paragraphs)


DOCS = (
    Doc(
        "solar",
        "Tandem solar cells set an efficiency record",
        (
            "Researchers at the Loopback Institute measured a record efficiency of 31.4 percent for tandem "
            "perovskite solar cells in a field test that ran for twelve months.",
            "The cells kept ninety percent of their output after a year outdoors, which had been the main "
            "obstacle for perovskite solar modules so far.",
            "Commercial panels based on the design could reach rooftops within three years, the team says.",
        ),
    ),
    Doc(
        "wind",
        "Offshore wind farms and the grid",
        (
            "Offshore wind farms produced a fifth of the region's electricity last winter.",
            "Grid operators are building new cables so that wind power from the coast reaches the cities.",
        ),
    ),
    Doc(
        "bread",
        "Baking sourdough bread at home",
        (
            "A sourdough starter needs flour, water and a week of patience before the first bread.",
            "Bake the bread in a hot oven with steam for a crisp crust.",
        ),
    ),
)


def rank(query: str) -> list[Doc]:
    """The engine's ranking: documents containing more of the query's words come first; no match, no hit."""
    words = [w for w in query.lower().split() if len(w) > 2]
    scored = []
    for index, doc in enumerate(DOCS):
        haystack = (doc.title + " " + doc.text).lower()
        score = sum(haystack.count(w) for w in words)
        if score:
            scored.append((-score, index, doc))
    return [doc for _, _, doc in sorted(scored)]


def article_html(doc: Doc) -> str:
    body = "".join(f"<p>{p}</p>" for p in doc.paragraphs)
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{doc.title} | Loopback Gazette</title></head>"
        f"<body>{BOILERPLATE_TOP}<main><article><h1>{doc.title}</h1>{body}</article></main>{BOILERPLATE_BOTTOM}"
        "</body></html>"
    )


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # keep test output clean
        pass

    def _send(
        self, status: int, body: bytes, content_type: str | None, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _redirect(self, location: str, status: int = 302) -> None:
        self._send(status, b"", "text/plain", {"Location": location})

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):  # noqa: C901 - a routing table reads best as one flat list
        url = urlparse(self.path)
        path, query = url.path, parse_qs(url.query)
        site = self.server.site
        site.hits.append(path)
        if path == "/engine":
            self._engine(query.get("q", [""])[0])
        elif path.startswith("/docs/") and (doc := next((d for d in DOCS if d.slug == path[6:]), None)):
            self._send(200, article_html(doc).encode(), "text/html; charset=utf-8")
        elif path == "/data.json":
            self._send(
                200,
                json.dumps({"city": "Loopback", "population": 127001, "tags": ["a", "b"]}).encode(),
                "application/json",
            )
        elif path == "/plain.txt":
            self._send(200, b"Plain text about loopback addresses.\nSecond line.", "text/plain")
        elif path == "/latin1":
            self._send(
                200,
                "<html><body><article><p>Café crème on the terrace, served with a croissant, "
                "every morning at eight in the small loopback town.</p></article></body></html>".encode(
                    "latin-1"
                ),
                "text/html; charset=iso-8859-1",
            )
        elif path.startswith("/redirect/"):
            left = int(path.rsplit("/", 1)[1])
            self._redirect(f"/redirect/{left - 1}" if left > 1 else "/docs/solar")
        elif path == "/redirect-to":
            self._redirect(query["url"][0])
        elif path == "/slow":
            site.stop.wait(10)
            self._send(200, b"finally", "text/plain")
        elif path == "/drip":
            self._drip()
        elif path == "/huge":
            self._huge()
        elif path == "/image.png":
            self._send(200, PNG, "image/png")
        elif path == "/disguised":
            self._send(200, PNG, "text/html")
        elif path == "/unlabeled":
            self._send(200, b"\x00\x01\x02binary\x00" * 50, None)
        elif path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            self._send(
                code, f"status {code}".encode(), "text/plain", {"Retry-After": "120"} if code == 429 else {}
            )
        elif path == "/api/echo":
            self._echo(b"")
        else:
            self._send(404, b"no such page", "text/plain")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if urlparse(self.path).path == "/api/echo":
            self._echo(body)
        elif self.path == "/api/moved":
            self._redirect("/api/echo", 303)
        else:
            self._send(404, b"no such api", "text/plain")

    def _echo(self, body: bytes) -> None:
        payload = {
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "json": json.loads(body) if body else None,
        }
        self._send(200, json.dumps(payload).encode(), "application/json")

    def _engine(self, q: str) -> None:
        if q == "malformed":
            self._send(200, b"{not json at all", "application/json")
            return
        base = self.server.site.base_url
        results = [
            {"url": f"{base}/docs/{d.slug}", "title": d.title, "content": d.paragraphs[0]} for d in rank(q)
        ]
        self._send(200, json.dumps({"results": results}).encode(), "application/json")

    def _drip(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "100")
        self.end_headers()
        try:
            for _ in range(100):
                if self.server.site.stop.wait(0.2):
                    return
                self.wfile.write(b"x")
                self.wfile.flush()
        except OSError:
            pass  # the client gave up, as it should

    def _huge(self) -> None:
        # Distinct paragraphs (extractors drop repeated ones), each exactly 1000 bytes, 3 MB in all.
        count = 3_000
        head = b"<!DOCTYPE html><html><head><title>Huge page</title></head><body><article>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(head) + 1000 * count))
        self.end_headers()
        try:
            self.wfile.write(head)
            for i in range(count):
                text = f"Loopback padding paragraph {i:05d} says something new each time. " * 15
                self.wfile.write(f"<p>{text}".encode().ljust(996) + b"</p>")
        except OSError:
            pass  # the client stopped reading at its byte limit


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    site: FixtureSite


class FixtureSite:
    """The loopback fixture site; ``hits`` records every path requested."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.hits: list[str] = []
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.site = self
        self.thread = threading.Thread(target=self.server.serve_forever, name="web-fixture-site", daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


SEARX_SETTINGS = """\
use_default_settings: false
general: {{debug: false, instance_name: agentd-test, contact_url: false, enable_stats: false}}
brand: {{git_url: "", git_branch: "", issue_url: "", docs_url: "", public_instances: "", wiki_url: "", twitter_url: ""}}
search:
  safe_search: 0
  autocomplete: ""
  default_lang: ""
  ban_time_on_fail: 0
  max_ban_time_on_fail: 0
  prefer_configured_language: false
server:
  port: {port}
  bind_address: "127.0.0.1"
  secret_key: "agentd-test-{port}"
  base_url: false
  image_proxy: false
  http_protocol_version: "1.0"
  method: "GET"
  default_http_headers: {{}}
ui:
  autofocus: false
  archive_today: false
  static_path: "/usr/share/python3-searx/static"
  templates_path: "/usr/share/python3-searx/templates"
  default_theme: oscar
  default_locale: ""
  theme_args: {{oscar_style: logicodev}}
outgoing: {{request_timeout: 5.0, useragent_suffix: "", pool_connections: 10, pool_maxsize: 10}}
checker: {{off_when_debug: true}}
engines:
  - name: loopback
    engine: json_engine
    shortcut: lb
    categories: general
    search_url: {engine_url}?q={{query}}
    results_query: results
    url_query: url
    title_query: title
    content_query: content
    enable_http: true
    timeout: 5.0
locales: {{en: English}}
doi_resolvers: {{oadoi.org: "https://oadoi.org/"}}
default_doi_resolver: oadoi.org
"""


@dataclass
class SearxServer:
    url: str
    process: subprocess.Popen
    log: Path


def start_searx(site: FixtureSite, folder: Path, deadline_s: float = 60.0) -> SearxServer:
    """Start searx-run on a free loopback port; wait until /healthz answers (or fail with its log)."""
    exe = shutil.which("searx-run")
    assert exe is not None
    port = free_port()
    settings = folder / "settings.yml"
    settings.write_text(
        SEARX_SETTINGS.format(port=port, engine_url=f"{site.base_url}/engine"), encoding="utf-8"
    )
    log = folder / "searx.log"
    # searx runs under the system python3; our interpreter's variables and any proxy must not leak into it.
    drop = {
        "PYTHONPATH",
        "PYTHONHOME",
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "all_proxy",
    }
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["SEARX_SETTINGS_PATH"] = str(settings)
    with log.open("wb") as out:
        process = subprocess.Popen([exe], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=folder)
    url = f"http://127.0.0.1:{port}"
    give_up = time.monotonic() + deadline_s
    while time.monotonic() < give_up:
        if process.poll() is not None:
            raise RuntimeError(
                f"searx-run exited with {process.returncode}:\n{log.read_text(errors='replace')}"
            )
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0, trust_env=False).status_code == 200:
                return SearxServer(url, process, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(
        f"searx-run did not answer within {deadline_s:g} s:\n{log.read_text(errors='replace')}"
    )


def stop_searx(server: SearxServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=10)


# Each test module that imports these fixtures gets its own copy of them, so "session" scope alone would start
# one site and one searx per module; a reference count shares one of each across the whole session instead.
_shared: dict[str, list] = {}


def _acquire(name: str, start):
    entry = _shared.setdefault(name, [None, 0])
    if entry[0] is None:
        entry[0] = start()
    entry[1] += 1
    return entry[0]


def _release(name: str, stop) -> None:
    entry = _shared[name]
    entry[1] -= 1
    if entry[1] == 0:
        stop(entry[0])
        entry[0] = None


@pytest.fixture(scope="session")
def fixture_site():
    """The loopback fixture site, shared by the session."""
    site = _acquire("site", FixtureSite)
    yield site
    _release("site", FixtureSite.close)


@pytest.fixture(scope="session")
def searx(fixture_site, tmp_path_factory):
    """A real searx on loopback whose only engine is the fixture site's search engine."""
    if shutil.which("searx-run") is None:
        pytest.skip("searx-run is not installed (Debian package `searx`; scripts/install.sh installs it)")
    server = _acquire("searx", lambda: start_searx(fixture_site, tmp_path_factory.mktemp("searx")))
    yield server
    _release("searx", stop_searx)
