"""The retention job: raw goes, rollups keep it; per-metric overrides; writes into dropped data.

Data is written while it is recent, and retention runs at a later `now`, as it would days later.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
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


DEFAULTS = {
    "retention_raw": "7d",
    "retention_1m": "30d",
    "retention_5m": "90d",
    "retention_1h": "365d",
}


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    """A server with the service's default retention, not the test suite's."""
    return make_client(**DEFAULTS)


def retention_at(database_url: str, now: int) -> str:
    return run_inline(database_url, "retention", now=now, **DEFAULTS).detail


def test_retention_drops_raw_but_rollups_keep_it(
    client: TestClient, database_url: str, backend: str
) -> None:
    old = aligned_now() - 6 * DAY
    recent = aligned_now() - 2 * HOUR
    write(client, "cpu", [old + i * 60_000 for i in range(120)])
    write(client, "cpu", [recent + i * 60_000 for i in range(60)])
    # Five days later the old samples are past raw retention. No rollup job has run: retention
    # must roll the old raw data up before dropping it.
    assert "raw rows: 120" in retention_at(database_url, aligned_now() + 5 * DAY)
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


def test_the_job_runs_as_a_process(client: TestClient, database_url: str) -> None:
    write(client, "cpu", [aligned_now() - 2 * HOUR + i * 60_000 for i in range(3)])
    env = {key.upper(): value for key, value in DEFAULTS.items()}
    done = run_job(database_url, "retention", **{**env, "RETENTION_RAW": "1h"})
    # (On PostgreSQL today's day partition stays: raw data goes by whole days there.)
    assert re.fullmatch(r"retention: raw rows: [03], rollup rows: 0, partitions: 0\n", done.stdout)
    assert rollup_counts(client, "cpu", "1m", aligned_now() - 3 * HOUR, aligned_now()) == 3


def test_rollups_expire_by_their_own_retention(client: TestClient, database_url: str) -> None:
    old = aligned_now() - 29 * DAY  # history: merged into 1m (30d), 5m and 1h rollups
    write(client, "cpu", [old + i * 60_000 for i in range(10)])
    assert rollup_counts(client, "cpu", "1m", old, old + HOUR) == 10
    retention_at(database_url, aligned_now() + 2 * DAY)  # 1m keeps 30 days: 31 days old now
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

    # A write into a bucket whose raw data retention has dropped is refused: it could not be
    # exact. The 1m rollups of that time have expired too, so it is the 5m bucket.
    late = {"metric_name": "short", "value": 1.0, "timestamp": (start + 30_000) / 1000}
    refused = client.post("/metrics/ingest", json=late)
    assert refused.status_code == 422
    assert refused.json()["detail"] == (
        f"sample 0: series short{{}}: its 5m bucket starting {format_ms(start)} already holds"
        " data whose raw samples are not kept (raw samples of 'short' are kept from"
        f" {format_ms(aligned_now() - HOUR)} on), so merging more into it could count a re-sent"
        " sample twice; nothing of this request was written"
    )
    kept = client.post("/metrics/ingest", json={**late, "metric_name": "kept"})
    assert kept.status_code == 201 and kept.json()["raw"] == 1

    assert client.delete("/retention/short").status_code == 200
    assert client.get("/retention").json()["overrides"] == {}


def test_override_validation(client: TestClient) -> None:
    assert client.put("/retention/cpu", json={"raw": "10m"}).status_code == 422
    assert client.put("/retention/cpu", json={"daily": "2d"}).status_code == 422
    assert client.put("/retention/cpu", json={"raw": "soon"}).status_code == 422
    assert client.put("/retention/bad-name", json={"raw": "2d"}).status_code == 422
