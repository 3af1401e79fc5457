"""HTTP/1.1 to the daemon over its Unix socket, with the standard library only.

Every CLI command that talks to the daemon starts a fresh process, so what it imports is most of what it costs.
httpx took about 150 ms to import here (httpcore, trio when installed, rich and pygments for httpx's own
command line), more than the rest of ``agentd goal``. The daemon speaks plain HTTP on a local socket and
answers each request with a length or chunked body, so a request is a few lines: one connection per request
(``Connection: close``), JSON in and out, and a line iterator for the server-sent event stream.
"""

from __future__ import annotations

import contextlib
import json as jsonlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

MAX_LINE = 65536  # a status or header line, or a chunk size line, longer than this is not the daemon speaking


class WireError(Exception):
    """No (complete) answer: the socket could not be reached, the connection broke or timed out."""


@dataclass
class Response:
    """A status, lower-cased headers, and the body (empty for a stream until it is read with ``iter_lines``)."""

    status_code: int
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes = b""
    _reader: BinaryIO | None = None

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON (ValueError when it is not)."""
        return jsonlib.loads(self.content)

    def iter_lines(self) -> Iterator[str]:
        """The body as text lines, as they arrive (a stream's events are flushed one by one)."""
        assert self._reader is not None, "iter_lines reads a streamed response"
        pending = b""
        try:
            for piece in _pieces(self._reader, self.headers):
                pending += piece
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    yield line.rstrip(b"\r").decode("utf-8", "replace")
        except (OSError, ValueError) as exc:
            raise WireError(f"the connection broke: {exc}") from None
        if pending:
            yield pending.rstrip(b"\r").decode("utf-8", "replace")


def request(
    path: str, method: str, target: str, json: Any = None, headers: dict[str, str] | None = None,
    timeout: float | None = 10.0,
) -> Response:
    """One request on the socket at ``path``; the whole answer. WireError when none came."""
    with _exchange(path, method, target, json, headers, timeout) as response:
        try:
            response.content = b"".join(_pieces(response._reader, response.headers))  # type: ignore[arg-type]
        except (OSError, ValueError) as exc:
            raise WireError(f"the connection broke: {exc}") from None
        response._reader = None
        return response


@contextlib.contextmanager
def stream(
    path: str, target: str, headers: dict[str, str] | None = None, timeout: float | None = None
) -> Iterator[Response]:
    """``GET target`` whose body is read as it comes (``Response.iter_lines``); the connection closes after."""
    with _exchange(path, "GET", target, None, headers, timeout) as response:
        yield response


@contextlib.contextmanager
def _exchange(
    path: str, method: str, target: str, json: Any, headers: dict[str, str] | None, timeout: float | None
) -> Iterator[Response]:
    body = b"" if json is None else jsonlib.dumps(json).encode("utf-8")
    head = [f"{method} {target} HTTP/1.1", "Host: agentd", "Connection: close", f"Content-Length: {len(body)}"]
    head += ["Content-Type: application/json"] if json is not None else []
    head += [f"{name}: {value}" for name, value in (headers or {}).items()]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("utf-8") + body)
            reader = sock.makefile("rb")
            status, fields = _read_head(reader)
        except (OSError, ValueError) as exc:
            raise WireError(str(exc) or type(exc).__name__) from None
        with reader:
            yield Response(status, fields, _reader=reader)
    finally:
        sock.close()


def _read_head(reader: BinaryIO) -> tuple[int, dict[str, str]]:
    parts = _line(reader).split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise ValueError(f"not an HTTP answer: {b' '.join(parts)[:80]!r}")
    fields: dict[str, str] = {}
    while line := _line(reader):
        name, _, value = line.decode("latin-1").partition(":")
        fields[name.strip().lower()] = value.strip()
    return int(parts[1]), fields


def _pieces(reader: BinaryIO, fields: dict[str, str]) -> Iterator[bytes]:
    """The body in the pieces it arrives in: chunked, by Content-Length, or up to the connection's end."""
    if "chunked" in fields.get("transfer-encoding", "").lower():
        while size := int(_line(reader).split(b";")[0], 16):
            yield _exactly(reader, size)
            _line(reader)
        while _line(reader):  # trailers
            pass
    elif "content-length" in fields:
        yield _exactly(reader, int(fields["content-length"]))
    else:
        while piece := reader.read1(MAX_LINE):  # type: ignore[attr-defined]
            yield piece


def _line(reader: BinaryIO) -> bytes:
    line = reader.readline(MAX_LINE + 1)
    if not line:
        raise ValueError("the daemon closed the connection mid-answer")
    if len(line) > MAX_LINE:
        raise ValueError("a line of the answer is too long")
    return line.rstrip(b"\r\n")


def _exactly(reader: BinaryIO, size: int) -> bytes:
    data = reader.read(size)
    if len(data) != size:
        raise ValueError("the daemon closed the connection mid-answer")
    return data
