"""The database goes away and comes back: the service keeps answering (503 with a reason, never a
500), and recovers by itself without a restart, keeping what it acknowledged before.

PostgreSQL is reached through a small TCP proxy that the test stops (closing the listener and
every open connection, as a crashed or restarted server would) and starts again on the same port.
SQLite has no server to lose; its outage is another process holding the write lock.
"""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import free_port, run_inline, sql_rows, test_settings
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from app import observability
from app.main import create_app
from app.storage import engine as engine_module

# Recent times (today's PostgreSQL partition): old days would leave partitions behind that the
# retention tests, sharing the session's database, would then count.
BASE_S = (int(time.time()) // 60 - 30) * 60


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


T0 = iso(BASE_S)
T1 = iso(BASE_S + 60)
WINDOW = {"start_time": iso(BASE_S - 3600), "end_time": iso(BASE_S + 3600)}
RECOVERY_SECONDS = 15.0


class TcpProxy:
    """Forwards 127.0.0.1:port to a target; `stop` drops the listener and every connection."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._running = threading.Event()

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.05)
        self._listener = listener
        self._running.set()
        self._spawn(self._accept_loop, listener)

    def stop(self) -> None:
        self._running.clear()
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while self._running.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                if not self._running.is_set():
                    client.close()
                    upstream.close()
                    return
                self._sockets |= {client, upstream}
            self._spawn(self._pump, client, upstream)
            self._spawn(self._pump, upstream, client)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with suppress(OSError):
                sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def proxy(database_url: str, backend: str) -> Iterator[TcpProxy]:
    if backend != "postgresql":
        pytest.skip("no server to lose with SQLite: see test_sqlite_write_lock_outage")
    url = make_url(database_url)
    server = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    yield server
    server.stop()


def proxied_url(database_url: str, proxy: TcpProxy) -> str:
    url = make_url(database_url).set(host="127.0.0.1", port=proxy.port)
    return url.render_as_string(hide_password=False)


def build_client(database_url: str, **overrides: Any) -> TestClient:
    settings = test_settings(
        database_url, db_connect_timeout="2s", db_pool_timeout="2s", **overrides
    )
    app = create_app(settings)
    observability.install(app)
    return TestClient(app, raise_server_exceptions=False)


def sample(timestamp: str, value: float) -> dict[str, Any]:
    return {"metric_name": "cpu_usage", "value": value, "timestamp": timestamp}


def assert_unavailable(answer: httpx.Response, what: str) -> None:
    assert answer.status_code == 503, f"{what}: {answer.status_code} {answer.text}"
    detail = answer.json()["detail"]
    assert isinstance(detail, str) and detail.startswith("database unavailable: "), what


def assert_outage(client: TestClient) -> None:
    """Every endpoint that needs the database answers 503 with a reason; the rest answer."""
    assert client.get("/health").status_code == 200
    status = client.get("/db/status")
    assert status.status_code == 503, status.text
    body = status.json()
    assert body["status"] == "error" and body["backend"] == "postgresql" and body["detail"]

    assert_unavailable(client.post("/metrics/ingest", json=sample(T0, 1.0)), "ingest")
    backfill = {"metrics": [sample(T0, 1.0), sample(T1, 2.0)]}
    assert_unavailable(client.post("/backfill/import", json=backfill), "backfill")
    params = {"metric_name": "cpu_usage", **WINDOW}
    assert_unavailable(client.get("/query/raw", params=params), "raw query")
    assert_unavailable(client.get("/query/rollup", params={**params, "window": "1m"}), "rollup")
    assert_unavailable(client.get("/anomaly/detect", params=params), "anomaly")
    assert_unavailable(client.get("/metrics/names"), "names")
    assert_unavailable(client.get("/jobs/status"), "jobs status")
    assert_unavailable(client.get("/retention"), "retention")
    assert_unavailable(client.put("/retention/cpu_usage", json={"raw": "2d"}), "retention put")
    scrape = client.get("/metrics")
    assert scrape.status_code == 200 and "metrics_database_up 0.0" in scrape.text


def eventually_ingest(client: TestClient, body: dict[str, Any]) -> float:
    """Retry until the sample is acknowledged; the seconds it took."""
    started = time.monotonic()
    while True:
        answer = client.post("/metrics/ingest", json=body)
        if answer.status_code == 201:
            return time.monotonic() - started
        assert answer.status_code == 503, answer.text
        assert time.monotonic() - started < RECOVERY_SECONDS, f"not recovered: {answer.text}"
        time.sleep(0.2)


def stored_points(client: TestClient) -> list[tuple[str, float]]:
    answer = client.get("/query/raw", params={"metric_name": "cpu_usage", **WINDOW})
    assert answer.status_code == 200, answer.text
    return [(p["timestamp"], p["value"]) for s in answer.json()["series"] for p in s["points"]]


def test_starts_with_an_unreachable_database() -> None:
    """Nothing listens on port 1: the service starts anyway and says why it cannot serve data."""
    with build_client("postgresql://postgres@127.0.0.1:1/metrics") as client:
        assert_outage(client)


def test_postgresql_outage_and_recovery(database_url: str, proxy: TcpProxy) -> None:
    with build_client(proxied_url(database_url, proxy)) as client:
        assert_outage(client)  # started while the database was unreachable

        proxy.start()
        eventually_ingest(client, sample(T0, 1.0))
        assert client.get("/db/status").json()["status"] == "ok"
        assert stored_points(client) == [(T0, 1.0)]

        proxy.stop()  # drops the pooled connections under the app's feet
        assert_outage(client)

        proxy.start()
        eventually_ingest(client, sample(T1, 2.0))
        assert stored_points(client) == [(T0, 1.0), (T1, 2.0)]
        backfill = {"metrics": [sample(iso(BASE_S + 120), 3.0)]}
        assert client.post("/backfill/import", json=backfill).status_code == 201
        assert client.get("/jobs/status").status_code == 200


def test_postgresql_restart_costs_no_single_sample_write(database_url: str, backend: str) -> None:
    """The connection kept for single-sample writes (app.storage.samples.pg_small_writes) is
    closed by the server, as a restart would: the next write takes a new one and is
    acknowledged; a write it hands on to the general path (history, older than the raw floor) or
    that is refused there rolls back on it and leaves it usable."""
    if backend != "postgresql":
        pytest.skip("no server connection to lose with SQLite")
    kept = (
        "FROM pg_stat_activity WHERE application_name = 'metrics-service-ingest'"
        " AND datname = current_database()"
    )
    kill, pid = f"SELECT pg_terminate_backend(pid) {kept}", f"SELECT pid {kept}"
    with build_client(database_url) as client:
        for i in range(3):  # the first creates the series; the others take the kept connection
            assert (
                client.post("/metrics/ingest", json=sample(iso(BASE_S + i), i)).status_code == 201
            )
        for round_ in range(10):  # the write may come before the client has seen the close
            assert sql_rows(database_url, kill) == [(True,)]
            answer = client.post("/metrics/ingest", json=sample(T1, 9.0))
            assert answer.status_code == 201, f"round {round_}: {answer.text}"
        replaced = sql_rows(database_url, pid)
        assert len(replaced) == 1

        assert client.put("/retention/cpu_usage", json={"raw": "1h"}).status_code == 200
        run_inline(database_url, "retention")  # records a raw horizon for cpu_usage
        history = sample(iso(BASE_S - 3 * 3600), 1.0)
        merged = client.post("/metrics/ingest", json=history)
        assert merged.status_code == 201 and merged.json()["rollups_only"] == 1
        refused = client.post("/metrics/ingest", json=history)  # the same history again
        assert refused.status_code == 422 and "already holds data" in refused.json()["detail"]
        assert client.post("/metrics/ingest", json=sample(iso(BASE_S + 3), 3.0)).status_code == 201
        assert sql_rows(database_url, pid) == replaced  # the refusal kept the connection
        points = stored_points(client)
    assert points == [(iso(BASE_S + i), float(i)) for i in range(4)] + [(T1, 9.0)]


def test_postgresql_outage_during_concurrent_ingestion(database_url: str, proxy: TcpProxy) -> None:
    """Requests queued in the group commit when the connections drop all get an answer: 201 for
    what was committed, 503 for the rest; nothing acknowledged is lost."""
    base = BASE_S - 3600  # the start of WINDOW
    statuses: dict[int, int] = {}  # sample number -> answer
    lock = threading.Lock()
    done = threading.Event()

    def count(status: int) -> int:
        with lock:
            return sum(1 for s in statuses.values() if s == status)

    def wait_for(condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + RECOVERY_SECONDS
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {statuses}"
            time.sleep(0.02)

    proxy.start()
    with build_client(proxied_url(database_url, proxy)) as client:

        def writer(first: int) -> None:
            for i in range(first, 5000, 4):  # the last ones ~7 min before now
                if done.is_set():
                    return
                body = {"metric_name": "cpu_usage", "value": float(i), "timestamp": base + i}
                answer = client.post("/metrics/ingest", json=body)
                with lock:
                    statuses[i] = answer.status_code
                if answer.status_code == 503:
                    time.sleep(0.05)  # as a client would back off; keeps samples for later

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
        for thread in threads:
            thread.start()
        try:
            wait_for(lambda: count(201) >= 50, "writes before the outage")
            proxy.stop()
            wait_for(lambda: count(503) >= 20, "503s during the outage")
            acknowledged_before = count(201)
            proxy.start()
            wait_for(lambda: count(201) >= acknowledged_before + 50, "writes after recovery")
        finally:
            done.set()
            for thread in threads:
                thread.join(timeout=60)
        assert set(statuses.values()) <= {201, 503}, statuses
        stored = {value for _, value in stored_points(client)}
    acknowledged = {float(i) for i, status in statuses.items() if status == 201}
    assert acknowledged <= stored, sorted(acknowledged - stored)[:10]


# -- SQLite: another process holds the write lock -----------------------------------------------


@contextmanager
def write_lock(path: Path) -> Iterator[None]:
    """Hold SQLite's write lock (as a long transaction in another process would)."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def test_sqlite_write_lock_outage(
    database_url: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "sqlite":
        pytest.skip("SQLite only")
    monkeypatch.setattr(engine_module, "SQLITE_BUSY_TIMEOUT_MS", 300)  # instead of 60 s
    path = make_url(database_url).database
    assert path is not None
    with build_client(database_url) as client:
        assert client.post("/metrics/ingest", json=sample(T0, 1.0)).status_code == 201
        with write_lock(Path(path)):
            assert_unavailable(client.post("/metrics/ingest", json=sample(T1, 2.0)), "ingest")
            backfill = {"metrics": [sample(T1, 2.0)]}
            assert_unavailable(client.post("/backfill/import", json=backfill), "backfill")
            assert client.get("/health").status_code == 200
            assert client.get("/db/status").status_code == 200  # readers are not blocked
            assert stored_points(client) == [(T0, 1.0)]
        eventually_ingest(client, sample(T1, 2.0))
        assert stored_points(client) == [(T0, 1.0), (T1, 2.0)]
