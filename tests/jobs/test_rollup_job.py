"""The rollup job: exact, idempotent, per-series invalidation; and the rollup query's live tail."""

from __future__ import annotations

import time
from typing import Any

from conftest import run_inline, run_job, sql_rows
from fastapi.testclient import TestClient

from app.timeutil import format_ms

HOUR = 3_600_000
MINUTE = 60_000


def hour_ago_aligned(hours: int) -> int:
    now = int(time.time() * 1000)
    return now - now % HOUR - hours * HOUR


def backfill(
    client: TestClient, samples: list[tuple[str, int, float]], metric: str = "cpu"
) -> None:
    body = {
        "metrics": [
            {"metric_name": metric, "value": v, "timestamp": ts / 1000, "labels": {"host": host}}
            for host, ts, v in samples
        ]
    }
    answer = client.post("/backfill/import", json=body)
    assert answer.status_code == 201, answer.text


def rollup(client: TestClient, window: str, start: int, end: int, **extra: str) -> dict[str, Any]:
    params = {
        "metric_name": "cpu",
        "window": window,
        "start_time": format_ms(start),
        "end_time": format_ms(end),
        **extra,
    }
    answer = client.get("/query/rollup", params=params)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def by_host(body: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {s["labels"]["host"]: s["points"] for s in body["series"]}


def test_job_materializes_exact_buckets_and_is_idempotent(
    client: TestClient, database_url: str
) -> None:
    t0 = hour_ago_aligned(3)
    samples = [
        (h, t0 + i * 10_000, float(i % 17) + (0.5 if h == "b" else 0))
        for h in "ab"
        for i in range(720)
    ]
    backfill(client, samples)
    first = run_inline(database_url, "rollup")
    assert first.buckets_written == 2 * (120 + 24 + 2)  # 2 series x (1m + 5m + 1h buckets)
    stored = sql_rows(database_url, "SELECT count(*), sum(count) FROM rollup_1m")
    assert stored == [(240, 1440)]
    again = run_inline(database_url, "rollup")
    assert again.buckets_written == 0
    assert sql_rows(database_url, "SELECT count(*), sum(count) FROM rollup_1m") == stored
    body = rollup(client, "1h", t0, t0 + 2 * HOUR - 1)
    assert body["materialized_until"] is not None
    for host, points in by_host(body).items():
        values = [v for h, _, v in samples if h == host]
        assert [p["count"] for p in points] == [360, 360]
        assert points[0]["sum"] == sum(values[:360])
        assert points[1]["min"] == min(values[360:])
        assert points[1]["max"] == max(values[360:])
        assert points[1]["last"] == values[-1]


def test_late_write_recomputes_only_that_series_buckets(
    client: TestClient, database_url: str
) -> None:
    t0 = hour_ago_aligned(3)
    backfill(client, [(h, t0 + i * 30_000, 1.0) for h in "abc" for i in range(240)])
    run_inline(database_url, "rollup")
    # A late sample (new timestamp) and an overwrite, both in series b, in one old minute.
    late_minute = t0 + 37 * MINUTE
    backfill(client, [("b", late_minute + 15_000, 100.0), ("b", late_minute, 50.0)])
    pending = client.get("/jobs/status").json()["pending_invalidations"]
    assert pending == {"1m": 1, "5m": 1, "1h": 1}
    # Before any job runs, the query already reflects the late data (computed from raw).
    points = by_host(rollup(client, "1m", late_minute, late_minute))
    assert points["b"][0]["count"] == 3 and points["b"][0]["sum"] == 151.0
    outcome = run_inline(database_url, "rollup")
    assert outcome.buckets_written == 3  # one 1m, one 5m and one 1h bucket, of series b only
    row = sql_rows(
        database_url,
        "SELECT r.count, r.sum, r.max, r.last FROM rollup_1m r JOIN series s ON s.id = r.series_id"
        f" WHERE r.bucket = {late_minute} AND s.fingerprint IN"
        " (SELECT fingerprint FROM series) AND r.sum > 3",
    )
    assert row == [(3, 151.0, 100.0, 1.0)]
    hour = by_host(rollup(client, "1h", t0, t0))
    assert hour["b"][0]["count"] == 121 and hour["b"][0]["sum"] == 120.0 + 100.0 + (50.0 - 1.0)
    assert hour["a"][0]["count"] == 120 and hour["a"][0]["sum"] == 120.0


def test_live_tail_is_answered_before_any_job(client: TestClient) -> None:
    now = int(time.time() * 1000)
    minute = now - now % MINUTE
    if now - minute < 3000:  # three distinct seconds of the minute must have passed
        minute -= MINUTE
    for i, value in enumerate([3.0, 5.0, 10.0]):
        stamp = minute + i * 1000
        answer = client.post(
            "/metrics/ingest",
            json={
                "metric_name": "cpu",
                "value": value,
                "timestamp": stamp / 1000,
                "labels": {"host": "a"},
            },
        )
        assert answer.status_code == 201
    body = rollup(client, "1m", minute - MINUTE, now + 1000)
    assert body["materialized_until"] is None
    point = by_host(body)["a"][-1]
    assert point["timestamp"] == format_ms(minute)
    assert (point["count"], point["sum"], point["min"], point["max"]) == (3, 18.0, 3.0, 10.0)
    assert point["avg"] == 6.0


def test_job_runs_as_a_process_and_reports_status(client: TestClient, database_url: str) -> None:
    t0 = hour_ago_aligned(2)
    backfill(client, [("a", t0 + i * MINUTE, float(i)) for i in range(60)])
    done = run_job(database_url, "rollup")
    assert "1m: 60, 5m: 12, 1h: 1" in done.stdout
    status = client.get("/jobs/status").json()
    job = status["jobs"]["rollup"]
    assert job["runs"] == 1 and job["status"] == "ok" and job["buckets_written"] == 73
    assert job["last_error"] is None and job["duration_ms"] >= 0
    assert status["pending_invalidations"]["1h"] == 0
    assert status["materialized_until"]["1m"] is not None
