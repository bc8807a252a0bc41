"""Property: whatever the order of writes and jobs, every stored rollup bucket equals a brute-force
aggregation of the acknowledged samples (last write wins), and raw queries return exactly the
samples retention has not dropped.

Writes come in random order with duplicates and overwrites, late into already materialized
buckets; jobs run in random interleavings, retention before rollup, and two at once.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import defaultdict
from typing import Any

from conftest import sql_rows, test_settings
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.jobs.runner import run_once
from app.storage.store import Store
from app.timeutil import format_ms

HOUR = 3_600_000
WIDTHS = {"1m": 60_000, "5m": 300_000, "1h": HOUR}
HOSTS = ("a", "b", "c")
_metric_numbers = itertools.count()

sample = st.tuples(
    st.sampled_from(HOSTS),
    st.integers(0, 3 * 60 - 1).map(lambda minute: minute * 60_000),  # offsets over 3 hours
    st.integers(0, 3).map(lambda s: s * 15_000),  # a few timestamps per minute
    st.integers(-50, 50).map(lambda v: v / 4),  # exact in binary floating point
)
step = st.one_of(
    st.tuples(st.just("write"), st.lists(sample, min_size=1, max_size=25)),
    st.tuples(st.just("job"), st.sampled_from(["rollup", "retention", "both"])),
)


async def _jobs(database_url: str, names: list[str]) -> None:
    """Run jobs concurrently, each with its own store, as separate runners would."""
    cfg = test_settings(database_url)
    stores = [Store.open(cfg) for _ in names]
    try:
        await asyncio.gather(
            *(run_once(s, cfg, n, wait_seconds=60) for s, n in zip(stores, names, strict=True))
        )
    finally:
        for store in stores:
            await store.close()


def run_step(database_url: str, job: str) -> None:
    asyncio.run(_jobs(database_url, ["rollup", "retention"] if job == "both" else [job]))


class Model:
    """The truth: every acknowledged sample, last write wins."""

    def __init__(self, metric: str, t0: int) -> None:
        self.metric, self.t0 = metric, t0
        self.truth: dict[tuple[str, int], float] = {}

    def write(self, client: TestClient, samples: list[tuple[str, int, int, float]]) -> None:
        body = [
            {
                "metric_name": self.metric,
                "value": value,
                "timestamp": format_ms(self.t0 + minute + second),
                "labels": {"host": host},
            }
            for host, minute, second, value in samples
        ]
        if len(body) == 1:
            answer = client.post("/metrics/ingest", json=body[0])
        else:
            answer = client.post("/backfill/import", json={"metrics": body})
        if answer.status_code == 422:  # only into raw data retention already dropped
            assert "retention has already dropped" in answer.text
            return
        assert answer.status_code == 201, answer.text
        for host, minute, second, value in samples:
            self.truth[(host, self.t0 + minute + second)] = value

    def buckets(self, width: int) -> dict[tuple[str, int], tuple[int, float, float, float, float]]:
        grouped: dict[tuple[str, int], list[tuple[int, float]]] = defaultdict(list)
        for (host, ts), value in self.truth.items():
            grouped[(host, ts - ts % width)].append((ts, value))
        out = {}
        for key, points in grouped.items():
            values = [v for _, v in points]
            last = max(points)[1]
            out[key] = (len(values), sum(values), min(values), max(values), last)
        return out


def stored_buckets(database_url: str, metric: str, window: str) -> dict[tuple[str, int], Any]:
    rows = sql_rows(
        database_url,
        f"SELECT s.labels, r.bucket, r.count, r.sum, r.min, r.max, r.last FROM rollup_{window} r"
        f" JOIN series s ON s.id = r.series_id WHERE s.metric_name = '{metric}'",
    )
    out = {}
    for labels, bucket, *agg in rows:
        host = (labels if isinstance(labels, dict) else json.loads(labels))["host"]
        out[(host, int(bucket))] = tuple(agg)
    return out


def query(client: TestClient, path: str, model: Model, **extra: str) -> list[dict[str, Any]]:
    params = {
        "metric_name": model.metric,
        "start_time": format_ms(model.t0),
        "end_time": format_ms(model.t0 + 3 * HOUR),
        **extra,
    }
    answer = client.get(path, params=params)
    if not model.truth:  # nothing acknowledged: the metric does not exist
        assert answer.status_code == 404, answer.text
        return []
    assert answer.status_code == 200, answer.text
    return list(answer.json()["series"])


def check(client: TestClient, database_url: str, model: Model) -> None:
    run_step(database_url, "rollup")  # materialize whatever is still pending
    for window, width in WIDTHS.items():
        expected = model.buckets(width)
        assert stored_buckets(database_url, model.metric, window) == expected, window
        series = query(client, "/query/rollup", model, window=window)
        served = {
            (s["labels"]["host"], p["timestamp"]): (p["count"], p["sum"], p["min"], p["max"])
            for s in series
            for p in s["points"]
        }
        assert served == {(h, format_ms(b)): v[:4] for (h, b), v in expected.items()}
    check_raw(client, database_url, model)


def check_raw(client: TestClient, database_url: str, model: Model) -> None:
    """Raw answers hold exactly the acknowledged samples after the recorded retention horizon."""
    found = sql_rows(
        database_url,
        f"SELECT dropped_before FROM raw_horizon WHERE metric_name = '{model.metric}'",
    )
    horizon = int(found[0][0]) if found else model.t0
    assert horizon % HOUR == 0 and horizon <= int(time.time() * 1000) - 2 * HOUR
    served = {
        (s["labels"]["host"], p["timestamp"]): p["value"]
        for s in query(client, "/query/raw", model)
        for p in s["points"]
    }
    expected = {
        (host, format_ms(ts)): value for (host, ts), value in model.truth.items() if ts >= horizon
    }
    assert served == expected


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step, min_size=1, max_size=8))
def test_rollups_equal_brute_force_truth(
    client: TestClient, database_url: str, steps: list[tuple[str, Any]]
) -> None:
    now = int(time.time() * 1000)
    t0 = now - now % HOUR - 4 * HOUR  # data spans 4h..1h ago: every bucket is closed
    model = Model(f"prop_{next(_metric_numbers)}", t0)
    # Raw is kept for 2h for this metric, so retention drops part of the data along the way.
    client.put(f"/retention/{model.metric}", json={"raw": "2h"}).raise_for_status()
    for kind, arg in steps:
        if kind == "write":
            model.write(client, arg)
        else:
            run_step(database_url, arg)
    check(client, database_url, model)
