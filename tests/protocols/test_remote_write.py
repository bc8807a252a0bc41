"""Prometheus remote write 1.0 through HTTP, on both backends: what is stored, what is refused
(and that the rest of the request is stored anyway), and the status of every answer in the terms
of the senders (PROTOCOLS.md: vmagent retries everything but 400 and 409 forever)."""

from __future__ import annotations

import asyncio
import base64
import random
import sqlite3
from collections.abc import Callable

import pytest
from conftest import test_settings
from fastapi.testclient import TestClient
from protocol_clients import (
    BASE_MS,
    REMOTE_WRITE_HEADERS,
    bits,
    counter,
    remote_write,
    snappy,
    stored,
    values_of,
    write_request,
)
from sqlalchemy.engine import make_url

from app.storage.store import Store

T0, T1, T2 = BASE_MS, BASE_MS + 15_000, BASE_MS + 30_000
ROUTE = "/api/v1/write"


@pytest.fixture
def rw(shared_client: TestClient) -> TestClient:
    """One app and database per backend for the module: each test writes its own metrics."""
    return shared_client


@pytest.fixture
def db(shared_url: str) -> str:
    return shared_url


def test_a_write_is_stored_and_answered_204(rw: TestClient, db: str) -> None:
    labels = [("__name__", "up"), ("job", "node"), ("instance", "a:9100"), ("empty", "")]
    answer = remote_write(rw, [(labels, [(T0, 1.0), (T1, 0.0)])])
    assert answer.status_code == 204, answer.text
    assert answer.content == b""
    # __name__ is the metric, labels are sorted, the empty-valued label is left out
    assert values_of(db, "up") == {
        (("instance", "a:9100"), ("job", "node")): [(T0, 1.0), (T1, 0.0)]
    }


@pytest.mark.parametrize(
    "path",
    ["/api/v1/push", "/prometheus/api/v1/write", "/prometheus/api/v1/push"],
)
def test_every_path(rw: TestClient, db: str, path: str) -> None:
    metric = "paths_" + path.replace("/", "_")
    answer = remote_write(rw, [({"__name__": metric, "p": path}, [(T0, 2.5)])], path=path)
    assert answer.status_code == 204, answer.text
    assert values_of(db, metric) == {(("p", path),): [(T0, 2.5)]}


def test_many_samples_per_series_take_the_columnar_path(rw: TestClient, db: str) -> None:
    # 100 samples a series, one of them 0 (a shorter record): that series goes through the
    # runtime, the other through numpy; both must store exactly what was sent.
    plain = [(T0 + i * 1000, 0.5 + i) for i in range(100)]
    with_zero = [(T0 + i * 1000, 0.0 if i == 50 else -1.25 * i - 0.5) for i in range(100)]
    series = [
        ({"__name__": "many", "s": "plain"}, plain),
        ({"__name__": "many", "s": "z"}, with_zero),
    ]
    assert remote_write(rw, series).status_code == 204
    found = stored(db, "many")
    assert found[(("s", "plain"),)] == [(ts, bits(v)) for ts, v in plain]
    assert found[(("s", "z"),)] == [(ts, bits(v)) for ts, v in with_zero]


def test_metadata_only_requests_are_204_and_stored(rw: TestClient, db: str) -> None:
    metadata = [
        ("node_cpu_seconds_total", 1, "Seconds the CPUs spent in each mode.", ""),
        ("node_memory_MemFree_bytes", 2, "Memory information field MemFree_bytes.", "bytes"),
    ]
    answer = remote_write(rw, [], metadata=metadata)
    assert answer.status_code == 204, answer.text
    assert remote_write(rw, [], metadata=metadata).status_code == 204  # every minute, again

    async def read() -> dict[str, list[dict[str, str]]]:
        store = Store.open(test_settings(db))
        try:
            return await store.metric_metadata(None, None)
        finally:
            await store.close()

    assert asyncio.run(read()) == {
        "node_cpu_seconds_total": [
            {"type": "counter", "help": "Seconds the CPUs spent in each mode.", "unit": ""}
        ],
        "node_memory_MemFree_bytes": [
            {"type": "gauge", "help": "Memory information field MemFree_bytes.", "unit": "bytes"}
        ],
    }


def test_invalid_series_are_refused_and_the_rest_stored(rw: TestClient, db: str) -> None:
    series = [
        ({"__name__": "good", "a": "1"}, [(T0, 1.0)]),
        ({"job": "no-name"}, [(T0, 2.0)]),
        ([("__name__", "dup"), ("a", "1"), ("a", "2")], [(T0, 3.0), (T1, 4.0)]),
        ({"__name__": "good", "a": "2"}, [(T0, 5.0)]),
    ]
    refused = counter(rw, "metrics_protocol_refused_total", protocol="remote_write", unit="series")
    partial = counter(rw, "metrics_rejected_writes_total", route=ROUTE, reason="partial_write")
    answer = remote_write(rw, series)
    assert answer.status_code == 400, answer.text
    detail = answer.json()["detail"]
    assert detail.startswith("2 series refused (3 samples)"), detail
    assert "no __name__ label" in detail and 'job="no-name"' in detail
    assert "duplicate label names ['a']" in detail
    assert values_of(db, "good") == {
        (("a", "1"),): [(T0, 1.0)],
        (("a", "2"),): [(T0, 5.0)],
    }
    assert values_of(db, "dup") == {}
    now_refused = counter(
        rw, "metrics_protocol_refused_total", protocol="remote_write", unit="series"
    )
    assert now_refused - refused == 2
    now_partial = counter(rw, "metrics_rejected_writes_total", route=ROUTE, reason="partial_write")
    assert now_partial - partial == 1


def test_names_are_sanitized(rw: TestClient, db: str) -> None:
    series = [({"__name__": "http.requests-total", "1st.label": "x"}, [(T0, 1.0)])]
    assert remote_write(rw, series).status_code == 204
    assert values_of(db, "http_requests_total") == {(("_1st_label", "x"),): [(T0, 1.0)]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not snappy at all", "cannot decompress the snappy block"),
        (snappy(b"\xff\xff\xff\xff"), "not a remote-write 1.0 WriteRequest"),
    ],
    ids=["not-snappy", "not-protobuf"],
)
def test_undecodable_bodies_are_400(rw: TestClient, body: bytes, message: str) -> None:
    answer = rw.post(ROUTE, content=body, headers=REMOTE_WRITE_HEADERS)
    assert answer.status_code == 400, answer.text
    assert message in answer.json()["detail"]


def test_oversized_bodies_are_400_not_413(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_body_bytes=4096)
    noise = random.Random(7)
    series = [
        ({"__name__": "big", "i": f"{noise.getrandbits(64):x}"}, [(T0, 1.0)]) for _ in range(400)
    ]
    compressed = snappy(write_request(series))
    assert len(compressed) > 4096
    answer = client.post(ROUTE, content=compressed, headers=REMOTE_WRITE_HEADERS)
    assert answer.status_code == 400, answer.text
    assert "MAX_BODY_BYTES" in answer.json()["detail"]
    # small on the wire, large once decompressed: refused from the size the block announces
    bomb = snappy(write_request([({"__name__": "big", "pad": "x" * 1000}, [(T0, 1.0)])] * 10))
    assert len(bomb) < 4096
    answer = client.post(ROUTE, content=bomb, headers=REMOTE_WRITE_HEADERS)
    assert answer.status_code == 400 and "once decompressed" in answer.json()["detail"]
    assert (
        counter(client, "metrics_rejected_writes_total", route=ROUTE, reason="payload_too_large")
        == 2
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request"},
        {"Content-Encoding": "gzip"},
        {"Content-Type": "application/json"},
    ],
    ids=["remote-write-2.0", "gzip", "json"],
)
def test_unsupported_encodings_are_415(rw: TestClient, headers: dict[str, str]) -> None:
    before = counter(rw, "metrics_rejected_writes_total", route=ROUTE, reason="unsupported")
    answer = remote_write(rw, [({"__name__": "x"}, [(T0, 1.0)])], headers=headers)
    assert answer.status_code == 415, answer.text
    after = counter(rw, "metrics_rejected_writes_total", route=ROUTE, reason="unsupported")
    assert after - before == 1


def test_cardinality_refuses_new_series_and_stores_the_rest(
    make_client: Callable[..., TestClient], database_url: str
) -> None:
    client = make_client(max_series_per_metric=2)
    series = [({"__name__": "card", "i": str(i)}, [(T0, float(i))]) for i in range(3)]
    answer = remote_write(client, series)
    assert answer.status_code == 400, answer.text  # not 429: Prometheus drops it, vmagent too
    assert "MAX_SERIES_PER_METRIC" in answer.json()["detail"]
    assert len(values_of(database_url, "card")) == 2
    refused = counter(client, "metrics_protocol_refused_samples_total", protocol="remote_write")
    assert refused == 1
    # the known series keep being written; only the new one is refused again
    answer = remote_write(client, [(labels, [(T1, 9.0)]) for labels, _ in series])
    assert answer.status_code == 400
    assert sum(len(p) for p in values_of(database_url, "card").values()) == 4


def test_out_of_order_and_last_write_wins(rw: TestClient, db: str) -> None:
    labels = {"__name__": "ooo"}
    assert remote_write(rw, [(labels, [(T2, 3.0)])]).status_code == 204
    assert remote_write(rw, [(labels, [(T0, 1.0), (T1, 2.0)])]).status_code == 204  # older
    assert remote_write(rw, [(labels, [(T1, 2.0)])]).status_code == 204  # the same: no-op
    assert remote_write(rw, [(labels, [(T1, 20.0)])]).status_code == 204  # last write wins
    assert values_of(db, "ooo") == {(): [(T0, 1.0), (T1, 20.0), (T2, 3.0)]}


def test_exemplars_and_histograms_are_ignored_and_counted(rw: TestClient, db: str) -> None:
    series = [({"__name__": "mixed"}, [(T0, 7.0)])]
    name, labels = "metrics_protocol_ignored_total", {"protocol": "remote_write"}
    before = [counter(rw, name, what=what, **labels) for what in ("exemplars", "histograms")]
    answer = remote_write(rw, series, exemplars=2, histograms=3)
    assert answer.status_code == 204, answer.text
    assert values_of(db, "mixed") == {(): [(T0, 7.0)]}
    after = [counter(rw, name, what=what, **labels) for what in ("exemplars", "histograms")]
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 3]


def test_samples_too_far_ahead_are_refused(rw: TestClient, db: str) -> None:
    future = BASE_MS + 7_200_000
    series = [
        ({"__name__": "skew", "s": "a"}, [(T0, 1.0), (future, 2.0)]),
        ({"__name__": "skew", "s": "b"}, [(T0, 3.0)]),
    ]
    answer = remote_write(rw, series)
    assert answer.status_code == 400
    assert "MAX_FUTURE_SKEW" in answer.json()["detail"]
    assert values_of(db, "skew") == {
        (("s", "a"),): [(T0, 1.0)],
        (("s", "b"),): [(T0, 3.0)],
    }


def test_keys_in_the_forms_prometheus_sends(
    make_client: Callable[..., TestClient], database_url: str
) -> None:
    client = make_client(api_keys=["k1"])
    series = [({"__name__": "keyed"}, [(T0, 1.0)])]
    assert remote_write(client, series).status_code == 401
    basic = "Basic " + base64.b64encode(b"prometheus:k1").decode()
    for headers in ({"Authorization": "Bearer k1"}, {"Authorization": basic}, {"X-API-Key": "k1"}):
        assert remote_write(client, series, headers=headers).status_code == 204, headers
    wrong = "Basic " + base64.b64encode(b"prometheus:k2").decode()
    assert remote_write(client, series, headers={"Authorization": wrong}).status_code == 401
    assert len(values_of(database_url, "keyed")[()]) == 1


def test_shutting_down_is_503_with_retry_after(rw: TestClient) -> None:
    rw.app.state.shutting_down = True  # type: ignore[attr-defined]
    answer = remote_write(rw, [({"__name__": "late"}, [(T0, 1.0)])])
    rw.app.state.shutting_down = False  # type: ignore[attr-defined]
    assert answer.status_code == 503
    assert answer.headers["retry-after"].isdigit()


def test_an_unavailable_database_is_503_with_retry_after(
    backend: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: another process holds the write lock; PostgreSQL: nothing listens."""
    from app.main import create_app
    from app.storage import engine as engine_module

    monkeypatch.setattr(engine_module, "SQLITE_BUSY_TIMEOUT_MS", 200)
    url = database_url if backend == "sqlite" else "postgresql://x@127.0.0.1:1/x"
    settings = test_settings(url, db_connect_timeout="1s")
    series = [({"__name__": "down"}, [(T0, 1.0)])]
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        if backend == "sqlite":
            path = make_url(database_url).database
            assert path is not None
            lock = sqlite3.connect(path, isolation_level=None, timeout=10)
            lock.execute("BEGIN IMMEDIATE")
        try:
            answer = remote_write(client, series)
        finally:
            if backend == "sqlite":
                lock.close()
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"].isdigit()


def test_history_goes_to_rollups_and_beyond_retention_is_counted(
    make_client: Callable[..., TestClient],
) -> None:
    """#12's rules for old data hold here too: older than raw retention (7d) into the rollups
    that still hold its time, older than every retention counted and not stored."""
    rw = make_client(
        retention_raw="7d", retention_1m="30d", retention_5m="90d", retention_1h="365d"
    )
    day = 86_400_000
    old, ancient = (BASE_MS // 3_600_000 - 30 * 24) * 3_600_000, BASE_MS - 400 * day
    series = [({"__name__": "hist"}, [(old, 4.0), (old + 60_000, 6.0), (ancient, 1.0)])]
    answer = remote_write(rw, series)
    assert answer.status_code == 204, answer.text
    labels = {"protocol": "remote_write"}
    assert counter(rw, "metrics_protocol_old_samples_total", kind="rollups_only", **labels) == 2
    assert counter(rw, "metrics_protocol_old_samples_total", kind="beyond_retention", **labels) == 1
    window = {"start_time": old // 1000, "end_time": old // 1000 + 3600}
    answer = rw.get("/query/rollup", params={"metric_name": "hist", "window": "1h", **window})
    assert answer.status_code == 200, answer.text
    [bucket] = answer.json()["series"][0]["points"]
    assert (bucket["count"], bucket["sum"]) == (2, 10.0)
