"""The limits a production HTTP server sets, through real sockets, on every way of starting the
service: `uvicorn app.main:app` (httptools), `uvicorn --http h11`, and `python -m app.server`
(app.server.run, which the packaged `serve` command calls); with two workers each, in the slow
set (`-m slow`).

Before: a 200 KB (or 50 MB) header was read whole and answered 200; connections that sent a
partial head, or nothing, were held indefinitely (slowloris); uvicorn logged every request a
second time, query string included. Timeouts here are short, set through the settings.
"""

from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, free_port

PATIENCE = 15.0  # far above the 1 s timeouts below: anything later is a hang
LIMITS = {
    "HTTP_HEADER_TIMEOUT": "1s",
    "HTTP_MAX_HEADER_BYTES": "16384",
    "SCHEDULER_ENABLED": "false",
}
STARTS = {
    "uvicorn": ["-m", "uvicorn", "app.main:app", "--access-log"],
    "uvicorn-h11": ["-m", "uvicorn", "app.main:app", "--http", "h11"],
    "app.server": ["-m", "app.server"],
}


class Server:
    def __init__(self, start: str, directory: Path) -> None:
        self.port = free_port()
        self.log_path = directory / f"{start}.log"
        env = {**os.environ, **LIMITS, "DATABASE_URL": f"sqlite:///{directory / 'm.db'}"}
        command = [sys.executable, *STARTS[start], "--host", "127.0.0.1", "--port", str(self.port)]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=log, stdout=log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log()
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError(f"did not start: {self.log()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


SLOW_STARTS = {  # each worker process adopts the limits on its own: slow to start, in the slow set
    "uvicorn-workers": ["-m", "uvicorn", "app.main:app", "--workers", "2"],
    "app.server-workers": ["-m", "app.server", "--workers", "2"],
}
STARTS.update(SLOW_STARTS)


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(name, marks=[pytest.mark.slow] if name in SLOW_STARTS else [])
        for name in STARTS
    ],
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    started = Server(request.param, tmp_path_factory.mktemp("server"))
    yield started
    started.stop()


def connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or PATIENCE passes)."""
    received = b""
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], deadline - time.monotonic())
        if not ready:
            break
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk
    raise AssertionError(f"the connection was held open; received {received[:200]!r}")


def test_a_request_head_over_the_limit_is_a_431(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n")
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"HTTP_MAX_HEADER_BYTES" in answer
    assert httpx.get(f"{server.url}/health", headers={"X-Ok": "a" * 8000}).status_code == 200


def test_slow_and_silent_connections_are_closed(server: Server) -> None:
    """Slowloris: 50 connections each sending a header line now and then, and 10 that send
    nothing; all are closed by HTTP_HEADER_TIMEOUT while normal requests are answered."""
    slow = [connect(server) for _ in range(50)]
    silent = [connect(server) for _ in range(10)]
    for sock in slow:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    for _ in range(3):
        time.sleep(0.25)
        for sock in slow:
            with suppress(OSError):  # already closed
                sock.sendall(b"X-Slow: 1\r\n")
    assert httpx.get(f"{server.url}/health").status_code == 200
    for sock in slow:
        answer = read_until_closed(sock)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        sock.close()
    for sock in silent:
        assert read_until_closed(sock) == b""
        sock.close()


def test_kept_alive_connections_still_serve_several_requests(server: Server) -> None:
    """Idle time between requests (here 1.2 s, longer than HTTP_HEADER_TIMEOUT but within
    uvicorn's keep-alive timeout) does not count against the next request's head."""
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/health").status_code == 200
        time.sleep(1.2)
        answer = client.post("/metrics/ingest", json={"metric_name": "m", "value": 1})
        assert answer.status_code == 201


def test_one_access_line_per_request_and_no_query_string(server: Server) -> None:
    secret = "hunter2-in-the-url"
    answer = httpx.get(f"{server.url}/metrics/names", params={"prefix": "x", "token": secret})
    assert answer.status_code == 200
    time.sleep(0.3)  # the log line is written after the answer
    log = server.log()
    assert secret not in log
    assert len(re.findall(r"GET /metrics/names", log)) == 1, log[-2000:]
