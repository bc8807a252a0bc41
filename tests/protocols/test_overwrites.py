"""Last write wins, counted: `metrics_overwritten_samples_total` on `/metrics` counts the samples
that replaced a stored raw sample at the same (series, ts) holding different float64 bits, on
every write path and both backends; the same value again is a no-op and is not counted."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from protocol_clients import (
    BASE_MS,
    PLAIN_NAN_BITS,
    STALE_NAN_BITS,
    bits,
    counter,
    from_bits,
    remote_write,
    stored,
)

COUNTER = "metrics_overwritten_samples_total"
T0, T1, T2 = BASE_MS, BASE_MS + 15_000, BASE_MS + 30_000
NEG_ZERO_BITS = 1 << 63


@pytest.fixture
def client(shared_client: TestClient) -> TestClient:
    """One app and database per backend for the module: each test writes its own metrics."""
    return shared_client


@pytest.fixture
def db(shared_url: str) -> str:
    return shared_url


@pytest.fixture
def metric() -> str:
    return f"ow_{uuid.uuid4().hex[:10]}"


def overwritten(client: TestClient) -> float:
    return counter(client, COUNTER)


def counted(client: TestClient, write: Callable[[], Any]) -> float:
    """How much the counter moved over `write()`, which must succeed."""
    before = overwritten(client)
    answer = write()
    assert answer.status_code < 300, answer.text
    return overwritten(client) - before


def points(db: str, metric: str) -> list[tuple[int, int]]:
    """The stored (ts, value bits) of the metric's one series."""
    found = stored(db, metric)
    assert len(found) == 1, found
    return next(iter(found.values()))


def ingest(client: TestClient, metric: str, ts_ms: int, value: float) -> Any:
    sample = {
        "metric_name": metric,
        "labels": {"h": "a"},
        "timestamp": ts_ms / 1000,
        "value": value,
    }
    return client.post("/metrics/ingest", json=sample)


def columns(metric: str, stamps: list[int], values: list[float]) -> dict[str, Any]:
    entry = {"metric_name": metric, "labels": {"h": "a"}, "timestamps": [t / 1000 for t in stamps]}
    return {"series": [{**entry, "values": values}]}


def test_the_counter_is_exposed_with_help(client: TestClient) -> None:
    text = client.get("/metrics").text
    assert f"# HELP {COUNTER} Samples that replaced a stored raw sample" in text
    assert f"# TYPE {COUNTER} counter" in text


def test_single_ingest_same_value_is_not_counted_a_new_value_is(
    client: TestClient, db: str, metric: str
) -> None:
    assert counted(client, lambda: ingest(client, metric, T0, 1.5)) == 0  # new
    assert counted(client, lambda: ingest(client, metric, T0, 1.5)) == 0  # the same again
    assert counted(client, lambda: ingest(client, metric, T0, 2.5)) == 1  # last write wins
    assert counted(client, lambda: ingest(client, metric, T1, 2.5)) == 0  # new timestamp
    assert points(db, metric) == [(T0, bits(2.5)), (T1, bits(2.5))]


def test_backfill_items_count_each_replaced_sample(
    client: TestClient, db: str, metric: str
) -> None:
    def items(values: list[float]) -> dict[str, Any]:
        stamps = (T0, T1, T2)
        return {
            "metrics": [
                {"metric_name": metric, "labels": {"h": "a"}, "timestamp": t / 1000, "value": v}
                for t, v in zip(stamps, values, strict=True)
            ]
        }

    assert counted(client, lambda: client.post("/backfill/import", json=items([1, 2, 3]))) == 0
    assert counted(client, lambda: client.post("/backfill/import", json=items([1, 2, 3]))) == 0
    assert counted(client, lambda: client.post("/backfill/import", json=items([1, 5, 6]))) == 2
    assert [from_bits(b) for _, b in points(db, metric)] == [1.0, 5.0, 6.0]


def test_exact_bits_decide_stale_marker_nan_and_signed_zero(
    client: TestClient, db: str, metric: str
) -> None:
    labels = {"__name__": metric, "h": "a"}

    def send(*samples: tuple[int, float]) -> Any:
        return remote_write(client, [(labels, list(samples))])

    stale, nan = from_bits(STALE_NAN_BITS), from_bits(PLAIN_NAN_BITS)
    assert counted(client, lambda: send((T0, stale), (T1, 0.0), (T2, -0.0))) == 0
    assert counted(client, lambda: send((T0, stale), (T1, 0.0), (T2, -0.0))) == 0
    # a stale marker replaced by a plain NaN; 0.0 by -0.0; -0.0 by 0.0: three overwrites
    assert counted(client, lambda: send((T0, nan), (T1, -0.0), (T2, 0.0))) == 3
    assert points(db, metric) == [(T0, PLAIN_NAN_BITS), (T1, NEG_ZERO_BITS), (T2, 0)]
    assert counted(client, lambda: send((T0, nan))) == 0  # the same NaN payload again
    assert counted(client, lambda: send((T0, 7.0), (T1, 7.0))) == 2  # special to plain
    assert points(db, metric) == [(T0, bits(7.0)), (T1, bits(7.0)), (T2, 0)]


def test_line_protocol_overwrite_is_counted(client: TestClient, db: str, metric: str) -> None:
    def write(value: str) -> Any:
        return client.post("/write", content=f"{metric},h=a f={value} {T0 * 1_000_000}".encode())

    assert counted(client, lambda: write("1")) == 0
    assert counted(client, lambda: write("1")) == 0
    assert counted(client, lambda: write("2")) == 1
    found = stored(db, f"{metric}_f")
    assert list(found.values()) == [[(T0, bits(2.0))]]


def test_a_bulk_import_counts_exactly_its_overwrites(
    client: TestClient, db: str, metric: str
) -> None:
    """1,500 rows: PostgreSQL tries COPY first, which finds rows existing and falls back."""
    stamps = [T0 + i * 1000 for i in range(1500)]
    values = [float(i) for i in range(1500)]
    body = columns(metric, stamps, values)
    assert counted(client, lambda: client.post("/backfill/import", json=body)) == 0
    assert counted(client, lambda: client.post("/backfill/import", json=body)) == 0
    changed = {3, 500, 999, 1000, 1499}
    again = [v + 0.5 if i in changed else v for i, v in enumerate(values)]
    more = columns(metric, [*stamps, T0 + 1500 * 1000], [*again, 1.0])  # and one new row
    assert counted(client, lambda: client.post("/backfill/import", json=more)) == len(changed)
    assert [from_bits(b) for _, b in points(db, metric)] == [*again, 1.0]


def test_a_streamed_import_counts_its_overwrites(client: TestClient, db: str, metric: str) -> None:
    def ndjson(values: list[float]) -> bytes:
        items = [
            {"metric_name": metric, "labels": {"h": "a"}, "timestamp": (T0 + i) / 1000, "value": v}
            for i, v in enumerate(values)
        ]
        return b"".join(orjson.dumps(item) + b"\n" for item in items)

    def post(values: list[float]) -> Any:
        headers = {"Content-Type": "application/x-ndjson"}
        params = {"chunk_size": 4}
        return client.post(
            "/backfill/import", content=ndjson(values), headers=headers, params=params
        )

    first = [float(i) for i in range(10)]
    assert counted(client, lambda: post(first)) == 0
    assert counted(client, lambda: post(first)) == 0
    assert counted(client, lambda: post([*first[:8], 80.0, 90.0])) == 2
    assert [from_bits(b) for _, b in points(db, metric)] == [*first[:8], 80.0, 90.0]
