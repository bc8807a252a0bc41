"""Database I/O that cannot hang, and a `/db/status` that tells the truth about writes.

PostgreSQL is reached through a TCP proxy of the test's own (tests/tcp_proxy.py) that stalls
every open connection (blackhole) or drops the server's side of it while the service's side stays
open and silent (half-open). Before, both made every request wait as long as the stall lasted
(writes forever, under the process-wide write lock) and `/db/status` answer 200. Now each request
is answered 503 with `Retry-After` while the stall lasts, and the service recovers by itself.

SQLite's faults are a full disk and a read-only file system, on a small tmpfs of the test's own
(mounting needs root; skipped otherwise).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import test_settings
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url
from tcp_proxy import TcpProxy

from app.main import create_app
from app.migrate import upgrade

SHORT = {  # the timeouts, short enough for a test
    "db_connect_timeout": "1s",
    "db_pool_timeout": "1s",
    "db_write_timeout": "1s",
    "db_statement_timeout": "1s",
    "db_tcp_timeout": "2s",
    "query_timeout": "2s",
}
PATIENCE = 20.0  # far above every timeout above: an answer later than this is a hang


def recent(offset_s: float) -> float:
    return (int(time.time()) // 60 - 30) * 60 + offset_s


def sample(value: float, metric: str = "cpu_usage") -> dict[str, Any]:
    return {"metric_name": metric, "value": value, "timestamp": recent(value)}


@pytest.fixture
def proxy(database_url: str, backend: str) -> Iterator[TcpProxy]:
    if backend != "postgresql":
        pytest.skip("a network between the service and its database: PostgreSQL only")
    url = make_url(database_url)
    server = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def proxied(database_url: str, proxy: TcpProxy) -> Iterator[TestClient]:
    url = make_url(database_url).set(host="127.0.0.1", port=proxy.port)
    app = create_app(test_settings(url.render_as_string(hide_password=False), **SHORT))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def warm_up(client: TestClient) -> None:
    """Open the connections a stall will catch: the kept one for small writes, and the pool's."""
    for i in range(3):
        assert client.post("/metrics/ingest", json=sample(i)).status_code == 201
    assert client.get("/query/raw", params={"metric_name": "cpu_usage"}).status_code == 200
    assert client.get("/db/status").status_code == 200


REQUESTS: dict[str, Callable[[TestClient], httpx.Response]] = {
    "ingest": lambda c: c.post("/metrics/ingest", json=sample(10)),
    "backfill": lambda c: c.post("/backfill/import", json={"metrics": [sample(11), sample(12)]}),
    "raw": lambda c: c.get("/query/raw", params={"metric_name": "cpu_usage"}),
    "rollup": lambda c: c.get("/query/rollup", params={"metric_name": "cpu_usage", "window": "1m"}),
    "status": lambda c: c.get("/db/status"),
}


def all_at_once(client: TestClient) -> dict[str, httpx.Response]:
    """Every request of REQUESTS at the same time; their answers, if they came in PATIENCE."""
    answers: dict[str, httpx.Response] = {}

    def send(name: str) -> None:
        answers[name] = REQUESTS[name](client)

    threads = [threading.Thread(target=send, args=(name,), daemon=True) for name in REQUESTS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PATIENCE)
    return answers


def assert_503s(answers: dict[str, httpx.Response]) -> None:
    assert set(answers) == set(REQUESTS), f"no answer while stalled: {set(REQUESTS) - set(answers)}"
    for name, answer in answers.items():
        assert answer.status_code == 503, f"{name}: {answer.status_code} {answer.text}"
        assert int(answer.headers["retry-after"]) > 0, name
        detail = answer.json()["detail"]
        assert detail.startswith(("database unavailable", "database too slow", "the query ran")), (
            f"{name}: {detail}"
        )


def assert_recovers(client: TestClient) -> None:
    deadline = time.monotonic() + PATIENCE
    while (answer := client.post("/metrics/ingest", json=sample(20))).status_code != 201:
        assert answer.status_code == 503, answer.text
        assert time.monotonic() < deadline, f"not recovered: {answer.text}"
        time.sleep(0.2)
    assert client.post("/backfill/import", json={"metrics": [sample(21)]}).status_code == 201
    assert client.get("/db/status").json()["status"] == "ok"


def test_a_stalled_database_is_answered_503_while_the_stall_lasts(
    proxied: TestClient, proxy: TcpProxy
) -> None:
    warm_up(proxied)
    proxy.blackhole()
    try:
        answers = all_at_once(proxied)  # all answered although the stall goes on
    finally:
        proxy.restore()
    assert_503s(answers)
    assert_recovers(proxied)


def test_a_half_open_connection_is_given_up_and_replaced(
    proxied: TestClient, proxy: TcpProxy
) -> None:
    """The server's side of every connection is gone, the service's side silent. `/db/status`
    pings the connection writes use, so it sees that; a write on it is answered 503 in bounded
    time and the next one goes through on a new connection."""
    warm_up(proxied)
    proxy.half_open()
    status = proxied.get("/db/status")
    assert status.status_code == 503, status.text
    assert status.json()["writable"] is False
    assert_recovers(proxied)

    proxy.half_open()
    answer = proxied.post("/metrics/ingest", json=sample(30))
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"]
    assert_recovers(proxied)


# -- SQLite: a full disk, a read-only file system ---------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of the test's own."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Fill the file system of `directory` to the last byte; the file that did it."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (65536, 4096, 1):
            with suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    return filler


def test_a_full_sqlite_disk_says_so(small_disk: Path, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("the SQLite database's own disk")
    url = f"sqlite:///{small_disk / 'metrics.db'}"
    upgrade(test_settings(url))
    with TestClient(create_app(test_settings(url)), raise_server_exceptions=False) as client:
        assert client.post("/metrics/ingest", json=sample(1)).status_code == 201
        filler = fill(small_disk)
        batch = {"metrics": [sample(i, f"full_{i % 50}") for i in range(2000)]}
        answer = client.post("/backfill/import", json=batch)
        assert answer.status_code == 503, answer.text
        assert answer.json()["detail"].startswith("disk full: ")
        assert answer.headers["retry-after"]
        status = client.get("/db/status")
        assert status.status_code == 503, status.text
        assert status.json()["reason"] == "disk_full" and status.json()["writable"] is False

        filler.unlink()
        assert client.post("/backfill/import", json=batch).status_code == 201
        status = client.get("/db/status")
        assert status.status_code == 200, status.text
        assert status.json()["free_bytes"] > 0


def test_a_read_only_sqlite_file_system_says_so(small_disk: Path, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("the SQLite database's own file system")
    url = f"sqlite:///{small_disk / 'metrics.db'}"
    upgrade(test_settings(url))
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        with TestClient(create_app(test_settings(url)), raise_server_exceptions=False) as client:
            status = client.get("/db/status")
            assert status.status_code == 503, status.text
            assert status.json()["reason"] == "read_only"
            answer = client.post("/backfill/import", json={"metrics": [sample(2), sample(3)]})
            assert answer.status_code == 503, answer.text
            assert answer.json()["detail"].startswith(("database read-only", "database unavail"))
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    with TestClient(create_app(test_settings(url)), raise_server_exceptions=False) as client:
        assert client.post("/backfill/import", json={"metrics": [sample(4)]}).status_code == 201
        assert client.get("/db/status").status_code == 200


def test_a_read_only_postgresql_says_so(database_url: str, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("PostgreSQL's own read-only mode")
    name = make_url(database_url).database
    admin = make_url(database_url).set(database="postgres").render_as_string(False)

    def psql(statement: str) -> None:
        subprocess.run(["psql", admin, "-qAtc", statement], check=True, capture_output=True)

    psql(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    try:
        with TestClient(
            create_app(test_settings(database_url)), raise_server_exceptions=False
        ) as client:
            status = client.get("/db/status")
            assert status.status_code == 503, status.text
            assert status.json()["reason"] == "read_only"
            answer = client.post("/metrics/ingest", json=sample(1))
            assert answer.status_code == 503, answer.text
            assert answer.json()["detail"].startswith("database read-only: ")
    finally:
        psql(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
