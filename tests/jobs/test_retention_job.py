"""The retention job: raw goes, rollups keep it; per-metric overrides; writes into dropped data."""

from __future__ import annotations

import time

from conftest import run_inline, run_job, sql_rows
from fastapi.testclient import TestClient

from app.timeutil import format_ms

HOUR = 3_600_000
DAY = 24 * HOUR


def aligned_now() -> int:
    now = int(time.time() * 1000)
    return now - now % HOUR


def write(client: TestClient, metric: str, stamps: list[int], value: float = 2.0) -> None:
    body = {
        "metrics": [{"metric_name": metric, "value": value, "timestamp": t / 1000} for t in stamps]
    }
    answer = client.post("/backfill/import", json=body)
    assert answer.status_code == 201, answer.text


def raw_count(client: TestClient, metric: str, start: int, end: int) -> int:
    params = {"metric_name": metric, "start_time": format_ms(start), "end_time": format_ms(end)}
    answer = client.get("/query/raw", params=params)
    assert answer.status_code == 200, answer.text
    return sum(len(s["points"]) for s in answer.json()["series"])


def rollup_counts(client: TestClient, metric: str, window: str, start: int, end: int) -> int:
    params = {
        "metric_name": metric,
        "window": window,
        "start_time": format_ms(start),
        "end_time": format_ms(end),
    }
    answer = client.get("/query/rollup", params=params)
    assert answer.status_code == 200, answer.text
    return sum(p["count"] for s in answer.json()["series"] for p in s["points"])


def test_retention_drops_raw_but_rollups_keep_it(
    client: TestClient, database_url: str, backend: str
) -> None:
    old = aligned_now() - 10 * DAY
    recent = aligned_now() - 2 * HOUR
    write(client, "cpu", [old + i * 60_000 for i in range(120)])
    write(client, "cpu", [recent + i * 60_000 for i in range(60)])
    # No rollup job has run: retention must roll the old raw data up before dropping it.
    done = run_job(database_url, "retention")
    assert "raw rows: 120" in done.stdout
    if backend == "postgresql":
        # The old day went as a whole partition, not as row deletes.
        partitions = sql_rows(
            database_url,
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid",
        )
        assert (f"samples_d{old // DAY}",) not in partitions
        assert (f"samples_d{recent // DAY}",) in partitions
        assert sql_rows(database_url, "SELECT count(*) FROM samples WHERE ts < " + str(recent)) == [
            (0,)
        ]
    assert raw_count(client, "cpu", old - HOUR, old + 3 * HOUR) == 0
    assert raw_count(client, "cpu", recent, recent + HOUR) == 60
    assert rollup_counts(client, "cpu", "1m", old, old + 2 * HOUR - 1) == 120
    assert rollup_counts(client, "cpu", "1h", old, old + 2 * HOUR - 1) == 120
    status = client.get("/jobs/status").json()["jobs"]["retention"]
    assert status["rows_dropped"] == 120 and status["status"] == "ok"


def test_rollups_expire_by_their_own_retention(client: TestClient, database_url: str) -> None:
    old = aligned_now() - 40 * DAY  # older than RETENTION_1M (30d), younger than 5m's 90d
    write(client, "cpu", [old + i * 60_000 for i in range(10)])
    run_inline(database_url, "retention")
    assert rollup_counts(client, "cpu", "1m", old, old + HOUR) == 0
    assert rollup_counts(client, "cpu", "5m", old, old + HOUR) == 10
    assert rollup_counts(client, "cpu", "1h", old, old + HOUR) == 10


def test_per_metric_override_applies_to_that_metric_only(
    client: TestClient, database_url: str
) -> None:
    start = aligned_now() - 5 * HOUR
    stamps = [start + i * 60_000 for i in range(180)]  # 3 hours, ending 2 hours ago
    write(client, "short", stamps)
    write(client, "kept", stamps)
    answer = client.put("/retention/short", json={"raw": "1h", "1m": "2h"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["policy"] == {"raw": "1h", "1m": "2h", "5m": "90d", "1h": "365d"}
    listed = client.get("/retention").json()
    assert listed["defaults"]["raw"] == "7d" and listed["overrides"]["short"]["raw"] == "1h"

    run_inline(database_url, "retention")
    assert raw_count(client, "short", start, start + 4 * HOUR) == 0
    assert raw_count(client, "kept", start, start + 4 * HOUR) == 180
    assert rollup_counts(client, "short", "5m", start, start + 4 * HOUR) == 180
    assert rollup_counts(client, "short", "1m", start, start + 4 * HOUR) == 0

    # A write into raw data retention has already dropped is refused: it could not be exact.
    late = {"metric_name": "short", "value": 1.0, "timestamp": (start + 30_000) / 1000}
    refused = client.post("/metrics/ingest", json=late)
    assert refused.status_code == 422
    assert "retention has already dropped" in refused.json()["detail"]
    assert client.post("/metrics/ingest", json={**late, "metric_name": "kept"}).status_code == 201

    assert client.delete("/retention/short").status_code == 200
    assert client.get("/retention").json()["overrides"] == {}


def test_override_validation(client: TestClient) -> None:
    assert client.put("/retention/cpu", json={"raw": "10m"}).status_code == 422
    assert client.put("/retention/cpu", json={"daily": "2d"}).status_code == 422
    assert client.put("/retention/cpu", json={"raw": "soon"}).status_code == 422
    assert client.put("/retention/bad-name", json={"raw": "2d"}).status_code == 422
