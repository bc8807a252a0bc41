"""Query limits and input shapes that once reached a 500: each answered with a clear 4xx/503."""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi.testclient import TestClient

from app.services.retention import plan_retention

HOUR = 3_600_000


def write(client: TestClient, count: int) -> None:
    now = time.time()
    body = {
        "metrics": [
            {"metric_name": "cpu", "value": float(i), "timestamp": now - 600 + i}
            for i in range(count)
        ]
    }
    assert client.post("/backfill/import", json=body).status_code == 201


def test_an_unhashable_metric_name_is_a_422(client: TestClient) -> None:
    for body in ({"metric_name": ["x"], "value": 1}, {"metric_name": {"a": 1}, "value": 1}):
        answer = client.post("/metrics/ingest", json=body)
        assert answer.status_code == 422
        assert answer.json()["detail"].startswith("metric_name:")
        answer = client.post("/backfill/import", json={"metrics": [body]})
        assert answer.status_code == 422
        assert answer.json()["detail"].startswith("metrics[0].metric_name:")


def test_queries_past_query_timeout_are_cancelled_with_a_503(
    make_client: Callable[..., TestClient],
) -> None:
    write(make_client(), 5)
    slow = make_client(query_timeout="0s")
    for path, extra in (("/query/raw", {}), ("/query/rollup", {"window": "1m"})):
        answer = slow.get(path, params={"metric_name": "cpu", **extra})
        assert answer.status_code == 503
        assert "QUERY_TIMEOUT" in answer.json()["detail"]


def test_anomaly_detection_honours_max_query_points(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_query_points=5)
    write(client, 10)
    answer = client.get("/anomaly/detect", params={"metric_name": "cpu"})
    assert answer.status_code == 422
    assert "MAX_QUERY_POINTS" in answer.json()["detail"]
    rollups = client.get("/anomaly/detect", params={"metric_name": "cpu", "window": "1m"})
    assert rollups.status_code == 200


def test_raw_not_yet_rolled_up_at_every_resolution_is_never_dropped() -> None:
    now = 100 * HOUR + 42
    defaults = {"raw": 0, "1m": 30 * 24 * HOUR, "5m": 90 * 24 * HOUR, "1h": 365 * 24 * HOUR}
    plan = plan_retention(now, defaults, {"m": {"raw": 0}}, rolled_up_before=99 * HOUR)
    assert plan.raw_cutoffs == {"*": 99 * HOUR, "m": 99 * HOUR}
    unbounded = plan_retention(now, defaults, {})
    assert unbounded.raw_cutoffs == {"*": 100 * HOUR}
