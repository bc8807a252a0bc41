"""GET /anomaly/detect?method=auto over the real app on both backends: the causal detector with
its warm-up read from before start_time, the resolution chosen from the data, and the answer."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.timeutil import format_ms

MINUTE = 60_000
HOUR = 3_600_000


def now_minute() -> int:
    now = int(time.time() * 1000)
    return now - now % MINUTE


def backfill(
    client: TestClient, metric: str, ts: np.ndarray, values: np.ndarray, **labels: str
) -> None:
    body = {
        "series": [
            {
                "metric_name": metric,
                "labels": labels,
                "timestamps": (ts / 1000).tolist(),
                "values": values.tolist(),
            }
        ]
    }
    answer = client.post("/backfill/import", json=body)
    assert answer.status_code == 201, answer.text


def auto(client: TestClient, metric: str, **params: Any) -> dict[str, Any]:
    answer = client.get(
        "/anomaly/detect", params={"metric_name": metric, "method": "auto", **params}
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def minutes(end: int, n: int) -> np.ndarray:
    return end - MINUTE * np.arange(n, dtype=np.int64)[::-1]


def noisy(n: int, seed: int = 3) -> np.ndarray:
    return 50.0 + np.random.default_rng(seed).normal(0.0, 2.0, n)


def iso(ms: int) -> str:
    return format_ms(int(ms))


def test_auto_judges_the_range_with_a_warm_up_from_before_it(client: TestClient) -> None:
    end = now_minute()
    ts, x = minutes(end, 2 * 1440), noisy(2 * 1440)
    x[-20] += 40.0  # twenty sigmas, twenty minutes ago
    backfill(client, "cpu", ts, x, host="a")
    backfill(client, "cpu", ts, noisy(2 * 1440, seed=4) + 10, host="b")
    body = auto(client, "cpu", end_time=iso(end))  # the default range: the last hour
    assert body["method"] == "auto"
    assert body["threshold"] == 0.99999
    assert body["threshold_kind"] == "likelihood"
    assert body["resolution"] == "raw"
    series = {s["labels"]["host"]: s for s in body["series"]}
    a, b = series["a"], series["b"]
    assert a["count"] == a["judged"] == 61  # every point of the hour judged: warm-up before it
    assert (a["interval_ms"], a["block"]) == (60_000, "5m")
    [spike] = a["anomalies"]
    assert spike["timestamp"] == iso(int(ts[-20]))
    assert spike["value"] == x[-20]
    assert spike["likelihood"] > 0.99999
    assert spike["zscore"] > 10
    assert abs(spike["expected"] - 50.0) < 2.0
    [event] = a["events"]
    assert (event["kind"], event["start"], event["end"]) == (
        "spike",
        spike["timestamp"],
        spike["timestamp"],
    )
    assert event["peak"]["timestamp"] == spike["timestamp"]
    assert b["anomalies"] == [] and b["events"] == []
    # The same point judged from a range starting five hours earlier: the same verdict.
    wide = auto(client, "cpu", end_time=iso(end), start_time=iso(end - 6 * HOUR), label="host:a")
    [again] = wide["series"][0]["anomalies"]
    # Equal up to summation order: there the warm-up blocks are stored rollups, here raw points.
    assert again == {**spike, "zscore": pytest.approx(spike["zscore"], rel=1e-9)}


def test_auto_threshold_is_a_likelihood(client: TestClient) -> None:
    end = now_minute()
    backfill(client, "mem", minutes(end, 600), noisy(600))
    for bad in ("3", "1", "1.5"):
        answer = client.get(
            "/anomaly/detect", params={"metric_name": "mem", "method": "auto", "threshold": bad}
        )
        assert answer.status_code == 422, answer.text
        assert "likelihood" in answer.json()["detail"]
    loose = auto(client, "mem", threshold=0.9, end_time=iso(end))
    assert loose["threshold"] == 0.9
    assert len(loose["series"][0]["anomalies"]) >= 1  # one point in ten at 0.9


def test_auto_on_hourly_data_with_the_default_range(client: TestClient) -> None:
    """The 1-hour default range (both ends included) holds two hourly points: both are judged,
    on 40 days of warm-up read from before it."""
    end = now_minute() - now_minute() % HOUR
    ts = end - HOUR * np.arange(40 * 24, dtype=np.int64)[::-1]
    x = noisy(ts.size, seed=9)
    x[-1] += 30.0
    backfill(client, "hourly", ts, x)
    [series] = auto(client, "hourly", end_time=iso(end))["series"]
    assert (series["count"], series["judged"], series["block"]) == (2, 2, "1h")
    assert [a["timestamp"] for a in series["anomalies"]] == [iso(end)]


def test_auto_picks_a_rollup_for_long_ranges_and_follows_a_given_window(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(max_query_points=2000)
    end = now_minute()
    ts, x = minutes(end, 3 * 1440), noisy(3 * 1440, seed=5)
    x[-200:] += 25.0  # a level shift 200 minutes ago
    backfill(client, "lat", ts, x)
    body = auto(client, "lat", start_time=iso(end - 2 * 1440 * MINUTE), end_time=iso(end))
    assert body["resolution"] == "5m"  # 2,880 raw points exceed MAX_QUERY_POINTS
    [series] = body["series"]
    assert series["interval_ms"] == 300_000 and series["block"] == "1h"
    assert [e["kind"] for e in series["events"]] == ["level_shift"]
    assert len(series["anomalies"]) == 1  # reported once
    windowed = auto(
        client, "lat", window="1h", start_time=iso(end - 1440 * MINUTE), end_time=iso(end)
    )
    assert (windowed["window"], windowed["resolution"]) == ("1h", "1h")


def test_auto_leaves_out_series_without_points_in_the_range(client: TestClient) -> None:
    end = now_minute()
    backfill(client, "disk", minutes(end, 600), noisy(600), host="now")
    backfill(client, "disk", minutes(end - 2 * 1440 * MINUTE, 600), noisy(600), host="old")
    body = auto(client, "disk", end_time=iso(end))
    assert [s["labels"] for s in body["series"]] == [{"host": "now"}]
    assert (
        client.get("/anomaly/detect", params={"metric_name": "nope", "method": "auto"}).status_code
        == 404
    )


@pytest.mark.parametrize("method", ["zscore", "rolling", "mad"])
def test_classic_methods_answer_likelihoods_and_events(client: TestClient, method: str) -> None:
    end = now_minute()
    x = noisy(60)
    x[[20, 21]] += 40.0
    backfill(client, "io", minutes(end, 60), x)
    params = {"metric_name": "io", "method": method, "end_time": iso(end)}
    [series] = client.get("/anomaly/detect", params=params).json()["series"]
    spikes = [iso(int(t)) for t in minutes(end, 60)[[20, 21]]]
    assert set(spikes) <= {a["timestamp"] for a in series["anomalies"]}
    assert all(0.99 < a["likelihood"] <= 1 for a in series["anomalies"])
    [event] = [e for e in series["events"] if e["start"] <= spikes[0] <= e["end"]]
    assert event["points"] >= 2 and event["kind"] == "spike"
    assert event["end"] >= spikes[1]
