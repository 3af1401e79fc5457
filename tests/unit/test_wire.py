"""agentd.daemon.wire: the CLI's stdlib HTTP over a Unix socket, against canned answers on a real socket (the
daemon itself is its counterpart in tests/integration)."""

from __future__ import annotations

import socket
import threading

import pytest

from agentd.daemon import wire


def serve(tmp_path, answer: bytes) -> tuple[str, list[bytes]]:
    """A socket that reads one request, sends ``answer`` and closes; returns its path and what it received."""
    path = str(tmp_path / "s.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    received: list[bytes] = []

    def once() -> None:
        conn, _ = server.accept()
        with conn:
            received.append(conn.recv(65536))
            conn.sendall(answer)
        server.close()

    threading.Thread(target=once, daemon=True).start()
    return path, received


def test_a_json_request_and_a_length_delimited_answer(tmp_path):
    path, received = serve(tmp_path, b'HTTP/1.1 201 Created\r\ncontent-length: 16\r\n\r\n{"run_id": "r1"}')
    response = wire.request(path, "POST", "/runs", json={"text": "x"}, headers={"Idempotency-Key": "k"})
    assert (response.status_code, response.json()) == (201, {"run_id": "r1"})
    head, body = received[0].split(b"\r\n\r\n")
    assert head.startswith(b"POST /runs HTTP/1.1\r\n") and b"Idempotency-Key: k" in head
    assert b"Content-Length: 13" in head and body == b'{"text": "x"}'


def test_a_chunked_stream_is_read_line_by_line(tmp_path):
    chunks = [b"data: {\"a\": 1}\n", b"\ndata: {\"b\"", b": 2}\r\n\n"]
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    path, _ = serve(tmp_path, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    with wire.stream(path, "/runs/r1/events") as response:
        assert list(response.iter_lines()) == ['data: {"a": 1}', "", 'data: {"b": 2}', ""]


@pytest.mark.parametrize("answer", [
    b"",  # closed before answering
    b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n{\"cut\"",  # closed mid-body
    b"SSH-2.0-OpenSSH\r\n\r\n",  # not HTTP
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # a broken chunk size
])
def test_no_complete_answer_is_a_wire_error(tmp_path, answer):
    path, _ = serve(tmp_path, answer)
    with pytest.raises(wire.WireError):
        wire.request(path, "GET", "/health")


def test_no_socket_is_a_wire_error(tmp_path):
    with pytest.raises(wire.WireError):
        wire.request(str(tmp_path / "none.sock"), "GET", "/health")
