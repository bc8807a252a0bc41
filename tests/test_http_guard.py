"""Request bodies under control (app.http_guard), through real sockets to `uvicorn app.main:app`.

Before: a body sent at 1 byte/s was waited for indefinitely on both write endpoints; a client
that writes its whole (too large) body before reading got "connection reset" instead of the 413
(10 of 10 tries); nothing capped the body bytes held in memory at once.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import httpx
import pytest
from conftest import LiveServer
from test_server import PATIENCE, read_until_closed

ENV = {
    "HTTP_BODY_TIMEOUT": "1s",
    "HTTP_BODY_MIN_RATE": "200",
    "HTTP_LINGER_TIMEOUT": "10s",
    "MAX_BODY_BYTES": str(1024 * 1024),
    "MAX_BUFFERED_BODY_BYTES": "1500000",
}
WRITES = {
    "ingest": ("/metrics/ingest", "application/json"),
    "backfill": ("/backfill/import", "application/json"),
    "ndjson": ("/backfill/import", "application/x-ndjson"),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    directory = tmp_path_factory.mktemp("guard")
    from app.migrate import upgrade
    from tests.conftest import test_settings

    url = f"sqlite:///{directory / 'm.db'}"
    upgrade(test_settings(url))
    live = LiveServer(url, env=ENV)
    live.start()
    yield live
    live.stop()


def head(path: str, content_type: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def open_request(server: LiveServer, path: str, content_type: str, length: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE)
    sock.sendall(head(path, content_type, length))
    return sock


@pytest.mark.parametrize("write", list(WRITES))
def test_a_trickled_body_is_a_408(server: LiveServer, write: str) -> None:
    """One byte every 0.1 s: far below HTTP_BODY_MIN_RATE, never silent for HTTP_BODY_TIMEOUT."""
    path, content_type = WRITES[write]
    with open_request(server, path, content_type, 10_000) as sock:
        stop = threading.Event()

        def trickle() -> None:
            while not stop.is_set():
                try:
                    sock.sendall(b" ")
                except OSError:
                    return
                time.sleep(0.1)

        threading.Thread(target=trickle, daemon=True).start()
        try:
            answer = read_until_closed(sock)
        finally:
            stop.set()
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:300]
    assert b"HTTP_BODY_MIN_RATE" in answer
    assert httpx.get(f"{server.base_url}/health").status_code == 200


@pytest.mark.parametrize("write", list(WRITES))
def test_a_stalled_body_is_a_408(server: LiveServer, write: str) -> None:
    path, content_type = WRITES[write]
    with open_request(server, path, content_type, 1000) as sock:
        sock.sendall(b'{"metric_name": "m", ')
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:300]
    assert b"HTTP_BODY_TIMEOUT" in answer


@pytest.mark.parametrize("path", ["/metrics/ingest", "/backfill/import"])
def test_a_client_that_writes_its_whole_body_first_gets_the_413(
    server: LiveServer, path: str
) -> None:
    """Python's urllib writes the whole body, then reads: 8 MB against a 1 MB limit."""
    body = json.dumps({"metrics": [], "pad": "x" * (8 * 1024 * 1024)}).encode()
    for _ in range(10):
        request = urllib.request.Request(
            server.base_url + path, data=body, headers={"Content-Type": "application/json"}
        )
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=PATIENCE)
        assert caught.value.code == 413
        assert "MAX_BODY_BYTES" in json.loads(caught.value.read())["detail"]


def test_a_chunked_body_over_the_limit_gets_the_413_too(server: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE) as sock:
        sock.sendall(
            b"POST /backfill/import HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"x" * 65536
        for _ in range(40):  # 2.5 MB
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        sock.sendall(b"0\r\n\r\n")
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:300]


def test_bodies_beyond_the_buffered_budget_are_503_with_retry_after(server: LiveServer) -> None:
    """A 1,000,000-byte body is being received (its bytes are held from the start); another of
    600,000 would pass MAX_BUFFERED_BODY_BYTES (1,500,000): 503 with Retry-After. Once the
    first is done, the same request is accepted."""
    body = json.dumps({"metrics": [{"metric_name": "budget", "value": 1.0}], "pad": "x" * 999_900})
    first = open_request(server, "/backfill/import", "application/json", len(body))
    sent = 0
    try:
        sock_file = body.encode()
        sent = 20_000
        first.sendall(sock_file[:sent])
        time.sleep(0.3)  # the route has started reading it
        small = {"metrics": [{"metric_name": "budget", "value": 2.0}], "pad": "y" * 599_900}
        refused = httpx.post(f"{server.base_url}/backfill/import", json=small, timeout=PATIENCE)
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == "1"
        assert "MAX_BUFFERED_BODY_BYTES" in refused.json()["detail"]
        first.sendall(sock_file[sent:])
        answer = read_until_headers(first)
        assert answer.startswith(b"HTTP/1.1 201 "), answer[:300]
    finally:
        first.close()
    accepted = httpx.post(f"{server.base_url}/backfill/import", json=small, timeout=PATIENCE)
    assert accepted.status_code == 201, accepted.text


def read_until_headers(sock: socket.socket) -> bytes:
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received
