"""Cardinality limits: MAX_SERIES_PER_METRIC and MAX_SERIES_TOTAL answer 429, write nothing of the
rejected request, keep accepting samples of existing series, hold after a restart and under
concurrent requests to several processes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from conftest import LiveServer
from fastapi.testclient import TestClient

T0 = "2025-12-03T12:00:00Z"
T0_S = 1_764_763_200
WINDOW = {"start_time": "2025-12-03T11:00:00Z", "end_time": "2025-12-03T13:00:00Z"}


def ingest(client: TestClient, metric: str, value: float, ts: object = T0, **labels: str) -> Any:
    return client.post(
        "/metrics/ingest",
        json={"metric_name": metric, "value": value, "timestamp": ts, "labels": labels},
    )


def item(metric: str, value: float, ts: object = T0, **labels: str) -> dict[str, Any]:
    return {"metric_name": metric, "value": value, "timestamp": ts, "labels": labels}


def stored(client: TestClient, metric: str) -> dict[str, list[tuple[str, float]]]:
    """host label -> [(timestamp, value)] of a metric ({} if it does not exist)."""
    answer = client.get("/query/raw", params={"metric_name": metric, **WINDOW})
    if answer.status_code == 404:
        return {}
    assert answer.status_code == 200, answer.text
    return {
        s["labels"].get("host", ""): [(p["timestamp"], p["value"]) for p in s["points"]]
        for s in answer.json()["series"]
    }


def names(client: TestClient) -> list[str]:
    return client.get("/metrics/names").json()["names"]  # type: ignore[no-any-return]


def assert_429(answer: Any, metric: str, limit: int, setting: str) -> None:
    assert answer.status_code == 429, answer.text
    detail = answer.json()["detail"]
    assert repr(metric) in detail or f'"{metric}"' in detail, detail
    assert str(limit) in detail
    assert setting in detail


def test_per_metric_limit(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_series_per_metric=3)
    for i, host in enumerate("abc"):
        assert ingest(client, "cpu", i, host=host).status_code == 201
    assert_429(ingest(client, "cpu", 9, host="d"), "cpu", 3, "MAX_SERIES_PER_METRIC")
    # Only new series are refused: existing ones keep taking samples, other metrics are separate.
    for i, host in enumerate("abc"):
        assert ingest(client, "cpu", 10 + i, T0_S + 60, host=host).status_code == 201
    for host in "xyz":
        assert ingest(client, "mem", 1, host=host).status_code == 201
    assert_429(ingest(client, "cpu", 9, T0_S + 120, host="e"), "cpu", 3, "MAX_SERIES_PER_METRIC")
    assert stored(client, "cpu") == {
        "a": [(T0, 0.0), ("2025-12-03T12:01:00Z", 10.0)],
        "b": [(T0, 1.0), ("2025-12-03T12:01:00Z", 11.0)],
        "c": [(T0, 2.0), ("2025-12-03T12:01:00Z", 12.0)],
    }
    assert sorted(stored(client, "mem")) == ["x", "y", "z"]
    assert names(client) == ["cpu", "mem"]


def test_label_order_does_not_count_as_a_new_series(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_series_per_metric=1)
    answer = client.post(
        "/metrics/ingest",
        json={"metric_name": "m", "value": 1, "timestamp": T0, "labels": {"a": "1", "b": "2"}},
    )
    assert answer.status_code == 201
    answer = client.post(
        "/metrics/ingest",
        json={
            "metric_name": "m",
            "value": 2,
            "timestamp": T0_S + 1,
            "labels": {"b": "2", "a": "1"},
        },
    )
    assert answer.status_code == 201, answer.text


def test_backfill_over_the_limit_writes_nothing(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_series_per_metric=3)
    assert ingest(client, "cpu", 1, host="a").status_code == 201
    assert ingest(client, "cpu", 2, host="b").status_code == 201
    items = [
        item("cpu", 100, T0, host="a"),  # overwrite of an existing sample
        item("cpu", 101, T0_S + 60, host="b"),  # new sample of an existing series
        item("mem", 1, T0, host="x"),  # another metric, under its own limit
        item("cpu", 102, T0, host="c"),  # the third series: would fit
        item("cpu", 103, T0, host="d"),  # the fourth: over the limit
    ]
    answer = client.post("/backfill/import", json={"metrics": items})
    assert_429(answer, "cpu", 3, "MAX_SERIES_PER_METRIC")
    assert stored(client, "cpu") == {"a": [(T0, 1.0)], "b": [(T0, 2.0)]}
    assert names(client) == ["cpu"]
    # Without the fourth series the same import goes through.
    answer = client.post("/backfill/import", json={"metrics": items[:4]})
    assert answer.status_code == 201, answer.text
    assert answer.json()["imported"] == 4
    assert stored(client, "cpu") == {
        "a": [(T0, 100.0)],
        "b": [(T0, 2.0), ("2025-12-03T12:01:00Z", 101.0)],
        "c": [(T0, 102.0)],
    }


def test_backfill_of_only_new_series_over_the_limit(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_series_per_metric=3)
    items = [item("cpu", i, T0, host=h) for i, h in enumerate("abcd")]
    assert_429(client.post("/backfill/import", json={"metrics": items}), "cpu", 3, "MAX_SERIES")
    columnar = {
        "series": [
            {"metric_name": "cpu", "labels": {"host": h}, "timestamps": [T0_S], "values": [1]}
            for h in "abcd"
        ]
    }
    assert_429(client.post("/backfill/import", json=columnar), "cpu", 3, "MAX_SERIES")
    assert names(client) == []


def test_total_limit_across_metrics(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_series_total=3)
    assert ingest(client, "m1", 1, host="a").status_code == 201
    assert ingest(client, "m2", 2, host="a").status_code == 201
    assert ingest(client, "m2", 3, host="b").status_code == 201
    assert_429(ingest(client, "m3", 4, host="a"), "m3", 3, "MAX_SERIES_TOTAL")
    assert_429(ingest(client, "m1", 5, host="b"), "m1", 3, "MAX_SERIES_TOTAL")
    backfill = [item("m1", 6, T0_S + 1, host="a"), item("m4", 7, host="a")]
    assert_429(
        client.post("/backfill/import", json={"metrics": backfill}), "m4", 3, "MAX_SERIES_TOTAL"
    )
    answer = client.post("/backfill/import", json={"metrics": backfill[:1]})
    assert answer.status_code == 201, answer.text
    assert names(client) == ["m1", "m2"]
    assert stored(client, "m1") == {"a": [(T0, 1.0), ("2025-12-03T12:00:01Z", 6.0)]}
    assert stored(client, "m2") == {"a": [(T0, 2.0)], "b": [(T0, 3.0)]}


def test_limit_holds_after_restart(make_client: Callable[..., TestClient]) -> None:
    first = make_client(max_series_per_metric=3)
    for host in "abc":
        assert ingest(first, "cpu", 1, host=host).status_code == 201
    # A new app on the same database knows nothing in memory: the limit comes from the database.
    second = make_client(max_series_per_metric=3)
    assert_429(ingest(second, "cpu", 2, host="d"), "cpu", 3, "MAX_SERIES_PER_METRIC")
    assert ingest(second, "cpu", 2, T0_S + 1, host="a").status_code == 201
    items = [item("cpu", 3, T0_S + 2, host="b"), item("cpu", 3, T0_S + 2, host="e")]
    assert_429(second.post("/backfill/import", json={"metrics": items}), "cpu", 3, "MAX_SERIES")
    assert sorted(stored(second, "cpu")) == ["a", "b", "c"]


def test_lowered_limit_keeps_existing_series(make_client: Callable[..., TestClient]) -> None:
    roomy = make_client()
    for host in "abcde":
        assert ingest(roomy, "cpu", 1, host=host).status_code == 201
    tight = make_client(max_series_per_metric=3)
    for host in "abcde":
        assert ingest(tight, "cpu", 2, T0_S + 1, host=host).status_code == 201
    assert_429(ingest(tight, "cpu", 3, host="f"), "cpu", 3, "MAX_SERIES_PER_METRIC")
    raised = make_client(max_series_per_metric=6)
    assert ingest(raised, "cpu", 3, host="f").status_code == 201
    assert_429(ingest(raised, "cpu", 3, host="g"), "cpu", 6, "MAX_SERIES_PER_METRIC")
    assert sorted(stored(raised, "cpu")) == ["a", "b", "c", "d", "e", "f"]


def test_limit_holds_under_concurrent_requests_to_two_processes(database_url: str) -> None:
    env = {"MAX_SERIES_PER_METRIC": "5"}
    servers = [LiveServer(database_url, env=env), LiveServer(database_url, env=env)]
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(LiveServer.start, servers))  # in parallel; re-raises a failed start
        hosts = [f"h{i:02d}" for i in range(20)]
        barrier = threading.Barrier(len(hosts))

        def send(i: int) -> int:
            body = {
                "metric_name": "conc",
                "value": i,
                "timestamp": T0,
                "labels": {"host": hosts[i]},
            }
            url = f"{servers[i % 2].base_url}/metrics/ingest"
            barrier.wait(timeout=30)
            return httpx.post(url, json=body, timeout=30).status_code

        with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
            codes = list(pool.map(send, range(len(hosts))))
        assert sorted(set(codes)) == [201, 429], codes
        assert codes.count(201) == 5
        accepted = sorted(h for h, code in zip(hosts, codes, strict=True) if code == 201)
        answer = httpx.get(
            f"{servers[0].base_url}/query/raw", params={"metric_name": "conc", **WINDOW}, timeout=30
        )
        assert answer.status_code == 200
        series = answer.json()["series"]
        assert len(series) == 5
        assert sorted(s["labels"]["host"] for s in series) == accepted
        # The other process agrees, and still refuses a sixth series.
        late = {"metric_name": "conc", "value": 0, "timestamp": T0, "labels": {"host": "late"}}
        assert httpx.post(f"{servers[1].base_url}/metrics/ingest", json=late).status_code == 429
    finally:
        for server in servers:
            if server.process is not None:
                server.stop()
