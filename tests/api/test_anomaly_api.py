"""GET /anomaly/detect over the real app: answers checked against numpy on the same data."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.services import anomaly

T0_MS = 1_764_763_200_000  # 2025-12-03T12:00:00Z
RANGE = {"start_time": "2025-12-03T11:00:00Z", "end_time": "2025-12-03T14:00:00Z"}


def iso(ms: int) -> str:
    text = np.datetime_as_string(np.int64(ms).astype("datetime64[ms]"), unit="ms")
    return f"{text}Z"


def to_ms(stamp: str) -> int:
    return round(datetime.fromisoformat(stamp).timestamp() * 1000)


def backfill(
    client: TestClient, metric: str, ts: np.ndarray, values: np.ndarray, **labels: str
) -> None:
    items = [
        {"metric_name": metric, "value": v, "timestamp": iso(t), "labels": labels}
        for t, v in zip(ts.tolist(), values.tolist(), strict=True)
    ]
    answer = client.post("/backfill/import", json={"metrics": items})
    assert answer.status_code == 201, answer.text


def detect(client: TestClient, metric: str, **params: Any) -> dict[str, Any]:
    answer = client.get("/anomaly/detect", params={"metric_name": metric, **RANGE, **params})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def noisy(n: int, seed: int = 3) -> np.ndarray:
    return np.clip(np.random.default_rng(seed).normal(50.0, 3.0, n), 40.0, 60.0)


def by_host(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["labels"].get("host", ""): s for s in body["series"]}


def assert_anomalies(
    series: dict[str, Any], ts: np.ndarray, values: np.ndarray, z: np.ndarray, idx: list[int]
) -> None:
    found = series["anomalies"]
    assert [to_ms(a["timestamp"]) for a in found] == ts[idx].tolist()
    assert [a["value"] for a in found] == values[idx].tolist()
    assert [a["zscore"] for a in found] == pytest.approx(z[idx].tolist(), rel=1e-9)


def test_zscore_matches_numpy_per_series(client: TestClient) -> None:
    ts = T0_MS + np.arange(300, dtype=np.int64) * 10_000
    values = noisy(300)
    values[[40, 150, 290]] += [45.0, -40.0, 60.0]
    backfill(client, "cpu", ts, values, host="a")
    backfill(client, "cpu", ts, np.full(300, 7.25), host="b")
    body = detect(client, "cpu")
    assert body["metric_name"] == "cpu"
    assert body["threshold"] == 3.0
    assert body["method"] == "zscore"
    series = by_host(body)
    a, b = series["a"], series["b"]
    mean, std = float(np.mean(values)), float(np.std(values))
    assert a["count"] == 300
    assert a["mean"] == pytest.approx(mean, rel=1e-12)
    assert a["stddev"] == pytest.approx(std, rel=1e-12)
    z = (values - mean) / std
    assert_anomalies(a, ts, values, z, np.flatnonzero(np.abs(z) > 3.0).tolist())
    assert [to_ms(x["timestamp"]) for x in a["anomalies"]] == ts[[40, 150, 290]].tolist()
    contract = ("labels", "count", "mean", "stddev", "anomalies")  # API.md; more fields may follow
    assert {k: b[k] for k in contract} == {
        "labels": {"host": "b"},
        "count": 300,
        "mean": 7.25,
        "stddev": 0.0,
        "anomalies": [],
    }
    assert b["events"] == []


def test_threshold_and_label_filters(client: TestClient) -> None:
    ts = T0_MS + np.arange(100, dtype=np.int64) * 1000
    values = noisy(100)
    values[50] += 20.0
    backfill(client, "mem", ts, values, host="a", region="eu")
    backfill(client, "mem", ts, values + 1.0, host="b", region="us")
    loose = detect(client, "mem", threshold=2.0, label="region:eu")
    assert [s["labels"]["host"] for s in loose["series"]] == ["a"]
    assert loose["threshold"] == 2.0
    z = (values - values.mean()) / values.std()
    assert_anomalies(loose["series"][0], ts, values, z, np.flatnonzero(np.abs(z) > 2.0).tolist())
    strict = detect(client, "mem", threshold=4.5, match='{host=~"a|b",region!="eu"}')
    assert [s["labels"]["host"] for s in strict["series"]] == ["b"]
    assert [to_ms(x["timestamp"]) for x in strict["series"][0]["anomalies"]] == [ts[50]]


@pytest.mark.parametrize("threshold", ["0", "-1", "abc", "nan", "inf", ""])
def test_threshold_must_be_positive(client: TestClient, threshold: str) -> None:
    backfill(client, "cpu", np.array([T0_MS]), np.array([1.0]))
    answer = client.get(
        "/anomaly/detect", params={"metric_name": "cpu", "threshold": threshold, **RANGE}
    )
    assert answer.status_code == 422, answer.text
    assert "threshold" in answer.json()["detail"]


def test_unknown_metric_and_bad_range(client: TestClient) -> None:
    assert client.get("/anomaly/detect", params={"metric_name": "nope"}).status_code == 404
    backfill(client, "cpu", np.array([T0_MS]), np.array([1.0]))
    reversed_range = {"start_time": RANGE["end_time"], "end_time": RANGE["start_time"]}
    answer = client.get("/anomaly/detect", params={"metric_name": "cpu", **reversed_range})
    assert answer.status_code == 422


@pytest.mark.parametrize("method", ["zscore", "rolling", "mad"])
@pytest.mark.parametrize("window", [None, "1m"])
def test_degenerate_series_answer_200_without_anomalies(
    client: TestClient, method: str, window: str | None
) -> None:
    """One point, a constant, a gap: no anomalies, and no numpy warning (they are errors here)."""
    backfill(client, "one", np.array([T0_MS]), np.array([42.0]), host="one")
    backfill(client, "one", T0_MS + np.arange(50) * 1000, np.full(50, 0.1), host="flat")
    gappy = T0_MS + np.concatenate([np.arange(3), 7000 + np.arange(3)]) * 1000
    backfill(client, "one", gappy, np.array([1.0, 1.0, 1.0, 5.0, 5.0, 5.0]), host="gap")
    params = {"method": method} | ({"window": window} if window else {})
    answer = detect(client, "one", **params)["series"]
    # count is the number of points scored: buckets for rolling/mad on a window; for zscore the
    # raw samples behind the (exact) mean and stddev.
    buckets = window and method != "zscore"
    assert {s["labels"]["host"]: s["count"] for s in answer} == (
        {"flat": 1, "gap": 2, "one": 1} if buckets else {"flat": 50, "gap": 6, "one": 1}
    )
    assert all(s["anomalies"] == [] for s in answer), answer
    empty = detect(
        client, "one", start_time="2020-01-01T00:00:00Z", end_time="2020-01-01T01:00:00Z", **params
    )
    for series in empty["series"]:
        assert series["count"] == 0
        assert series["mean"] is None
        assert series["stddev"] is None
        assert series["anomalies"] == []


def test_rolling_stops_flagging_a_level_shift(client: TestClient) -> None:
    ts = T0_MS + np.arange(600, dtype=np.int64) * 10_000  # 100 minutes, one point per 10 s
    values = noisy(600)
    values[400:] += 80.0
    backfill(client, "lat", ts, values)
    body = detect(client, "lat", method="rolling", lookback="15m", threshold=4.0)
    assert body["method"] == "rolling"
    [series] = body["series"]
    expected = anomaly.rolling_zscore(ts, values, 900_000, 4.0)
    assert [to_ms(a["timestamp"]) for a in series["anomalies"]] == ts[expected.indices].tolist()
    flagged = [to_ms(a["timestamp"]) for a in series["anomalies"]]
    assert ts[400] in flagged
    assert all(ts[400] <= t < ts[400] + 900_000 for t in flagged)
    assert series["mean"] == pytest.approx(float(np.mean(values)), rel=1e-12)
    assert series["stddev"] == pytest.approx(float(np.std(values)), rel=1e-12)
    zscore_flags = detect(client, "lat", threshold=1.0)["series"][0]["anomalies"]
    assert len(zscore_flags) > 150  # the global z-score keeps flagging the new level


def test_rolling_lookback_validation(client: TestClient) -> None:
    backfill(client, "cpu", np.array([T0_MS]), np.array([1.0]))
    for bad in ("soon", "-5m", "0s"):
        answer = client.get(
            "/anomaly/detect", params={"metric_name": "cpu", "method": "rolling", "lookback": bad}
        )
        assert answer.status_code == 422, (bad, answer.text)
        assert "lookback" in answer.json()["detail"]


def test_mad_sees_what_zscore_masks(client: TestClient) -> None:
    ts = T0_MS + np.arange(500, dtype=np.int64) * 1000
    values = noisy(500)
    values[::5] = 500.0  # a fifth of the points far out
    backfill(client, "io", ts, values)
    assert detect(client, "io")["series"][0]["anomalies"] == []
    [series] = detect(client, "io", method="mad", threshold=3.5)["series"]
    median = np.median(values)
    robust = 0.6745 * (values - median) / np.median(np.abs(values - median))
    assert_anomalies(series, ts, values, robust, np.flatnonzero(np.abs(robust) > 3.5).tolist())
    assert set(ts[::5].tolist()) <= {to_ms(a["timestamp"]) for a in series["anomalies"]}


def test_window_scores_bucket_means_with_exact_overall_moments(client: TestClient) -> None:
    ts = T0_MS + np.arange(360, dtype=np.int64) * 5000  # 30 minutes, 12 points per minute
    values = noisy(360) * 1e4
    values[17 * 12 : 18 * 12] += 3e5  # minute 17 runs hot
    backfill(client, "net", ts, values)
    body = detect(client, "net", window="1m", threshold=2.5)
    [series] = body["series"]
    assert series["count"] == 360
    assert series["mean"] == pytest.approx(float(np.mean(values)), rel=1e-12)
    assert series["stddev"] == pytest.approx(float(np.std(values)), rel=1e-9)
    means = values.reshape(30, 12).mean(axis=1)
    z = (means - np.mean(values)) / np.std(values)
    assert np.flatnonzero(np.abs(z) > 2.5).tolist() == [17]
    [hot] = series["anomalies"]
    assert to_ms(hot["timestamp"]) == T0_MS + 17 * 60_000
    assert hot["value"] == pytest.approx(means[17], rel=1e-12)
    assert hot["zscore"] == pytest.approx(z[17], rel=1e-9)
    for method in ("rolling", "mad"):
        other = detect(client, "net", window="1m", method=method, lookback="10m", threshold=2.5)
        assert other["series"][0]["count"] == 30
    assert (
        client.get(
            "/anomaly/detect", params={"metric_name": "net", "window": "2m", **RANGE}
        ).status_code
        == 422
    )
