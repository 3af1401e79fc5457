"""Real loopback HTTP endpoints for tests: they record every request and answer with a fixed status and JSON."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackHTTP:
    """``with LoopbackHTTP(status, answer) as s:`` serves on 127.0.0.1:``s.port``; ``s.requests`` holds
    (method, path, headers, parsed JSON body) per request, ``s.arrived`` is set by the first one."""

    def __init__(self, status: int = 200, answer: object = None) -> None:
        self.requests: list[tuple[str, str, dict[str, str], object]] = []
        self.arrived = threading.Event()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw.strip().startswith(b"{") else raw.decode(errors="replace")
                endpoint.requests.append((self.command, self.path, dict(self.headers), body))
                endpoint.arrived.set()
                payload = json.dumps(answer if answer is not None else {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _serve  # noqa: N815 - http.server's naming

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]

    @property
    def bodies(self) -> list[object]:
        return [body for _, _, _, body in self.requests]

    def __enter__(self) -> LoopbackHTTP:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class JsonReceiver(LoopbackHTTP):
    """A webhook receiver; ``url`` is the Apprise ``json://`` URL that posts to it."""

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"
