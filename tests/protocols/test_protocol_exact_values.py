"""Stale markers, NaN payloads, -0.0 and infinities through the protocols: stored bit for bit on
both backends, shown in raw answers as `value: null` with `special`, and left out of anomaly
detection and rollups (a stale marker is no measurement)."""

from __future__ import annotations

import orjson
import pytest
from fastapi.testclient import TestClient
from protocol_clients import (
    BASE_MS,
    PLAIN_NAN_BITS,
    STALE_NAN_BITS,
    bits,
    from_bits,
    remote_write,
    stored,
)

from app.timeutil import format_ms

T = [BASE_MS + i * 15_000 for i in range(6)]
PATTERNS = [
    bits(1.5),
    STALE_NAN_BITS,
    PLAIN_NAN_BITS,
    0x7FF8DEADBEEF0001,  # a NaN with another payload
    bits(-0.0),
    bits(float("inf")),
]


@pytest.fixture
def client(shared_client: TestClient) -> TestClient:
    """One app and database per backend for the module: each test writes its own metrics."""
    return shared_client


@pytest.fixture
def db(shared_url: str) -> str:
    return shared_url


@pytest.mark.parametrize("per_series", [1, 40], ids=["runtime", "numpy"])
def test_remote_write_keeps_every_bit_pattern(client: TestClient, db: str, per_series: int) -> None:
    # 40 samples per series goes through the numpy reader, 1 through the protobuf runtime
    samples = [(T[0] + i, from_bits(PATTERNS[i % len(PATTERNS)])) for i in range(per_series * 6)]
    metric = f"exact_{per_series}"
    answer = remote_write(client, [({"__name__": metric}, samples)])
    assert answer.status_code == 204, answer.text
    assert stored(db, metric)[()] == [(ts, bits(v)) for ts, v in samples]


def test_raw_answers_mark_what_json_cannot_carry(client: TestClient) -> None:
    samples = list(
        zip(T, map(from_bits, [*PATTERNS[:4], bits(float("-inf")), bits(2.0)]), strict=True)
    )
    assert remote_write(client, [({"__name__": "shown"}, samples)]).status_code == 204
    answer = client.get(
        "/query/raw",
        params={
            "metric_name": "shown",
            "start_time": format_ms(T[0]),
            "end_time": format_ms(T[-1]),
        },
    )
    assert answer.status_code == 200
    points = orjson.loads(answer.content)["series"][0]["points"]
    assert points == [
        {"timestamp": format_ms(T[0]), "value": 1.5},
        {"timestamp": format_ms(T[1]), "value": None, "special": "stale"},
        {"timestamp": format_ms(T[2]), "value": None, "special": "NaN"},
        {"timestamp": format_ms(T[3]), "value": None, "special": "NaN"},
        {"timestamp": format_ms(T[4]), "value": None, "special": "-Inf"},
        {"timestamp": format_ms(T[5]), "value": 2.0},
    ]


def test_anomaly_detection_and_rollups_leave_stale_markers_out(client: TestClient) -> None:
    values = [1.0, 2.0, from_bits(STALE_NAN_BITS), 3.0, from_bits(PLAIN_NAN_BITS), 4.0]
    assert (
        remote_write(
            client, [({"__name__": "gappy"}, list(zip(T, values, strict=True)))]
        ).status_code
        == 204
    )
    window = {"start_time": format_ms(T[0]), "end_time": format_ms(T[-1])}
    answer = client.get("/anomaly/detect", params={"metric_name": "gappy", **window})
    assert answer.status_code == 200, answer.text
    assert answer.json()["series"][0]["count"] == 4
    answer = client.get("/query/rollup", params={"metric_name": "gappy", "window": "1h", **window})
    assert answer.status_code == 200, answer.text
    buckets = answer.json()["series"][0]["points"]
    assert sum(b["count"] for b in buckets) == 4
    assert sum(b["sum"] for b in buckets) == 10.0
