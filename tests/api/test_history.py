"""Writes older than raw retention (issue #12): merged into the rollups that still hold their
time, refused when that could count a sample twice, counted when beyond every retention; what
raw and rollup answers say about it (docs/rollups-and-retention.md)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from conftest import run_inline
from fastapi.testclient import TestClient

from app.services.retention import cutoff
from app.timeutil import format_ms, parse_time_ms

HOUR = 3_600_000
DAY = 24 * HOUR
# The service's own defaults, not the test suite's (tests/conftest.py).
DEFAULTS = {
    "retention_raw": "7d",
    "retention_1m": "30d",
    "retention_5m": "90d",
    "retention_1h": "365d",
}
KEEP = {"raw": 7 * DAY, "1m": 30 * DAY, "5m": 90 * DAY, "1h": 365 * DAY}
EXAMPLE = {
    "metric_name": "cpu_usage",
    "value": 75.5,
    "timestamp": "2025-12-03T12:00:00Z",
    "labels": {"host": "server1", "region": "us-west"},
}


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(**DEFAULTS)


def now_ms() -> int:
    return int(time.time() * 1000)


def hour_start(ms: int) -> int:
    return ms - ms % HOUR


def item(ts: int, value: float, host: str = "a", metric: str = "hist") -> dict[str, Any]:
    return {"metric_name": metric, "value": value, "timestamp": ts / 1000, "labels": {"host": host}}


def counts(raw: int, rollups_only: int, beyond: int) -> dict[str, int]:
    return {"raw": raw, "rollups_only": rollups_only, "beyond_retention": beyond}


def rollup(client: TestClient, window: str, start: int, end: int, metric: str = "hist") -> Any:
    params = {"metric_name": metric, "window": window, "start_time": start / 1000}
    answer = client.get("/query/rollup", params={**params, "end_time": end / 1000})
    assert answer.status_code == 200, answer.text
    return answer.json()


def raw(client: TestClient, start: int, end: int, metric: str = "hist") -> Any:
    params = {"metric_name": metric, "start_time": start / 1000, "end_time": end / 1000}
    answer = client.get("/query/raw", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def bucket_counts(body: Any) -> dict[tuple[str, str], int]:
    return {
        (s["labels"]["host"], p["timestamp"]): p["count"]
        for s in body["series"]
        for p in s["points"]
    }


def test_the_specification_examples_work_on_a_server_that_has_run_retention(
    client: TestClient, database_url: str
) -> None:
    run_inline(database_url, "retention", **DEFAULTS)  # start-up: retention runs at once
    ts = parse_time_ms(EXAMPLE["timestamp"])
    kept_1h = ts >= cutoff(now_ms(), KEEP["1h"])  # until 2026-12-03T12:00Z (365 days)
    first = client.post("/metrics/ingest", json=EXAMPLE)
    assert first.status_code == 201, first.text
    assert first.json() == {"status": "ok", **(counts(0, 1, 0) if kept_1h else counts(0, 0, 1))}
    again = client.post("/backfill/import", json={"metrics": [EXAMPLE]})
    if kept_1h:  # the same history a second time: it could be counted twice
        assert again.status_code == 422
        assert again.json()["detail"].startswith(
            'sample 0: series cpu_usage{host="server1",region="us-west"}: its 1h bucket'
            " starting 2025-12-03T12:00:00Z already holds data whose raw samples are not kept"
        )
    else:
        assert again.json() == {"status": "ok", "imported": 0, "series": 1, **counts(0, 0, 1)}
    one_day = {"start_time": "2025-12-03T00:00:00Z", "end_time": "2025-12-03T23:59:59Z"}
    for window in ("1m", "5m", "1h"):
        params = {"metric_name": "cpu_usage", "window": window, **one_day}
        body = client.get("/query/rollup", params=params).json()
        seen = [p["avg"] for s in body["series"] for p in s["points"]]
        assert seen == ([75.5] if window == "1h" and kept_1h else []), window
    body = client.get("/query/raw", params={"metric_name": "cpu_usage", **one_day}).json()
    assert body["series"] == []
    assert parse_time_ms(body["raw_retained_from"]) == cutoff(now_ms(), KEEP["raw"])


def test_history_goes_into_the_rollups_that_retain_it(client: TestClient) -> None:
    now = now_ms()
    recent, d20, d60, d200, d400 = (
        now - 60_000,
        hour_start(now - 20 * DAY) + 90_000,
        hour_start(now - 60 * DAY) + 90_000,
        hour_start(now - 200 * DAY) + 90_000,
        now - 400 * DAY,
    )
    body = [item(recent, 1.0), item(d20, 2.0), item(d60, 3.0), item(d200, 4.0), item(d400, 5.0)]
    answer = client.post("/backfill/import", json={"metrics": body})
    assert answer.status_code == 201, answer.text
    assert answer.json() == {"status": "ok", "imported": 4, "series": 1, **counts(1, 3, 1)}

    def seen(window: str) -> list[float]:
        points = rollup(client, window, now - 399 * DAY, now)["series"][0]["points"]
        return [p["sum"] for p in points]

    assert seen("1m") == [2.0, 1.0]  # 60 and 200 days: beyond the 30 days of 1m rollups
    assert seen("5m") == [3.0, 2.0, 1.0]
    assert seen("1h") == [4.0, 3.0, 2.0, 1.0]
    answer = raw(client, now - 399 * DAY, now)
    assert [p["value"] for p in answer["series"][0]["points"]] == [1.0]
    assert answer["raw_retained_from"] == format_ms(cutoff(now_ms(), KEEP["raw"]))
    answer = rollup(client, "5m", now - 399 * DAY, now)
    assert answer["retained_from"] == format_ms(cutoff(now_ms(), KEEP["5m"]))

    # Again, with one new recent sample: the 20-day sample (index 2) would be counted twice in
    # its 1m bucket, so the whole request is refused and the recent sample is not written either.
    again = client.post("/backfill/import", json={"metrics": [item(now - 30_000, 9.0), *body]})
    assert again.status_code == 422
    assert again.json()["detail"] == (
        f'sample 2: series hist{{host="a"}}: its 1m bucket starting {format_ms(d20 - 30_000)}'
        " already holds data whose raw samples are not kept (raw samples of 'hist' are kept"
        f" from {format_ms(cutoff(now_ms(), KEEP['raw']))} on), so merging more into it could"
        " count a re-sent sample twice; nothing of this request was written"
    )
    assert [p["value"] for p in raw(client, now - HOUR, now)["series"][0]["points"]] == [1.0]
    assert seen("1h") == [4.0, 3.0, 2.0, 1.0]
    # Into the next hour, whose buckets hold nothing: exact, accepted.
    late = client.post("/metrics/ingest", json=item(d20 + HOUR, 7.0))
    assert late.json() == {"status": "ok", **counts(0, 1, 0)}
    assert seen("1m") == [2.0, 7.0, 1.0]


def test_aged_out_raw_samples_not_yet_dropped_take_history_exactly(
    client: TestClient, database_url: str
) -> None:
    """Written while recent, then past raw retention before retention has run: a sample into
    the same hour joins them on the raw path, so retention rolls the hour up whole."""
    start = hour_start(now_ms()) - 2 * HOUR
    assert client.post("/metrics/ingest", json=item(start + 60_000, 1.0)).status_code == 201
    later = now_ms() + 8 * DAY
    client.app.state.store.clock = lambda: later  # type: ignore[attr-defined]
    answer = client.post("/metrics/ingest", json=item(start + 120_000, 2.0))
    assert answer.json() == {"status": "ok", **counts(0, 1, 0)}
    window = (start, start + HOUR - 1)
    expected = {("a", format_ms(start)): 2}
    assert bucket_counts(rollup(client, "1h", *window)) == expected
    assert raw(client, *window)["series"] == []  # raw samples are kept from 7 days before `later`
    run_inline(database_url, "retention", now=later, **DEFAULTS)
    assert bucket_counts(rollup(client, "1h", *window)) == expected
    assert bucket_counts(rollup(client, "1m", *window)) == {
        ("a", format_ms(start + 60_000)): 1,
        ("a", format_ms(start + 120_000)): 1,
    }
    # Retention has dropped them now: more history into those buckets could count twice.
    refused = client.post("/metrics/ingest", json=item(start + 120_000, 2.0))
    assert refused.status_code == 422 and "its 1m bucket" in refused.json()["detail"]


def test_streaming_imports_report_what_they_did(client: TestClient) -> None:
    now = now_ms()
    lines = [
        item(now - 60_000, 1.0),
        item(hour_start(now - 20 * DAY), 2.0),
        item(now - 999 * DAY, 3),
    ]
    ndjson = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    headers = {"Content-Type": "application/x-ndjson"}
    answer = client.post("/backfill/import?chunk_size=2", content=ndjson, headers=headers)
    assert answer.status_code == 201, answer.text
    assert answer.json() == {
        "status": "ok",
        "imported": 2,
        "lines": 3,
        "chunks": 2,
        **counts(1, 1, 1),
    }
    again = client.post("/backfill/import?chunk_size=2", content=ndjson, headers=headers)
    assert again.status_code == 422
    body = again.json()
    assert body["detail"].startswith('line 2: series hist{host="a"}: its 1m bucket starting')
    assert {k: body[k] for k in ("imported", "committed_lines", "chunks")} == {
        "imported": 0,
        "committed_lines": 0,
        "chunks": 0,
    }


def test_series_without_points_in_the_range_are_left_out(client: TestClient) -> None:
    now = now_ms()
    client.post("/metrics/ingest", json=item(now - 2 * HOUR, 1.0, host="old")).raise_for_status()
    for i in range(5):
        client.post("/metrics/ingest", json=item(now - 60_000 * (i + 1), 1.0 + i, host="new"))
    start, end = now - HOUR, now
    assert [s["labels"] for s in raw(client, start, end)["series"]] == [{"host": "new"}]
    assert [s["labels"] for s in rollup(client, "1m", start, end)["series"]] == [{"host": "new"}]
    params = {"metric_name": "hist", "start_time": start / 1000, "end_time": end / 1000}
    anomalies = client.get("/anomaly/detect", params=params).json()
    assert [s["labels"] for s in anomalies["series"]] == [{"host": "new"}]
    empty = {
        "metric_name": "hist",
        "start_time": (now - 30 * DAY) / 1000,
        "end_time": (now - 29 * DAY) / 1000,
    }
    assert client.get("/query/raw", params=empty).json()["series"] == []
    assert client.get("/anomaly/detect", params=empty).json()["series"] == []
    assert client.get("/query/raw", params={**empty, "metric_name": "nope"}).status_code == 404
