"""Anomaly detection over a range: z-score (default), rolling z-score, or MAD; raw or rollups."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Query

from app.api.deps import FiltersDep, MetricName, RangeDep, ReadKey, SettingsDep, StoreDep
from app.api.responses import FastJSON
from app.config import parse_duration
from app.schemas import AnomalyResponse, ErrorResponse
from app.services import anomaly
from app.services.rollup import BY_NAME
from app.timeutil import format_ms_array, to_ms

router = APIRouter(
    tags=["anomaly detection"], dependencies=[ReadKey], default_response_class=FastJSON
)
Method = Literal["zscore", "rolling", "mad"]


@router.get(
    "/anomaly/detect",
    response_model=AnomalyResponse,
    responses={404: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
    summary="Find anomalous points per series",
)
async def detect(
    metric_name: MetricName,
    time_range: RangeDep,
    filters: FiltersDep,
    store: StoreDep,
    settings: SettingsDep,
    threshold: Annotated[float, Query(gt=0, allow_inf_nan=False)] = 3.0,
    method: Method = "zscore",
    lookback: Annotated[
        str | None,
        Query(
            description="Trailing window for method=rolling, e.g. 1h. Default 1h on raw points,"
            " 60 buckets with `window`."
        ),
    ] = None,
    window: Annotated[
        Literal["1m", "5m", "1h"] | None,
        Query(description="Score rollup bucket averages instead of raw points."),
    ] = None,
) -> dict[str, object]:
    """Per series: |value - mean| / stddev > threshold with the population stddev over the range
    (`zscore`); against a trailing `lookback` window (`rolling`); or the robust
    0.6745·|x - median| / MAD (`mad`). With `window`, bucket averages are scored, and for
    `zscore` the mean and stddev are exact from the stored sums and sums of squares."""
    lookback_ms = _lookback_ms(lookback, window)
    if window is None:
        raw, truncated = await store.select_raw(
            metric_name, filters, time_range.start_ms, time_range.end_ms, settings.max_query_points
        )
        if truncated:
            raise HTTPException(
                422,
                "start_time: the range holds more than MAX_QUERY_POINTS"
                f" ({settings.max_query_points}) raw points; narrow it or score rollups with"
                " window=1m|5m|1h",
            )
        rows = []
        for s in raw:
            finite = np.isfinite(s.values)  # stale markers and NaN are no measurements
            ts, values = (s.ts, s.values) if finite.all() else (s.ts[finite], s.values[finite])
            rows.append((s.labels, ts, values, _score(method, ts, values, threshold, lookback_ms)))
    else:
        buckets, _ = await store.select_rollup(
            metric_name, filters, BY_NAME[window], time_range.start_ms, time_range.end_ms
        )
        rows = []
        for b in buckets:
            avg = b.sum / np.maximum(b.count, 1)
            if method == "zscore":
                try:
                    result = anomaly.zscore_from_buckets(b.count, b.sum, b.sumsq, avg, threshold)
                except ValueError as exc:  # sums of squares beyond float range
                    raise HTTPException(
                        422, f"window: cannot score rollups of these values ({exc}); omit window"
                    ) from None
            else:
                result = _score(method, b.bucket, avg, threshold, lookback_ms)
            rows.append((b.labels, b.bucket, avg, result))
    return {
        "metric_name": metric_name,
        "threshold": threshold,
        "method": method,
        "window": window,
        "series": [_series(labels, ts, values, r) for labels, ts, values, r in rows],
    }


def _lookback_ms(lookback: str | None, window: str | None) -> int:
    if lookback is None:
        return 60 * BY_NAME[window].ms if window else 3_600_000
    try:
        lookback_ms = to_ms(parse_duration(lookback))
    except ValueError as exc:
        raise HTTPException(422, f"lookback: {exc}") from None
    if lookback_ms <= 0:
        raise HTTPException(422, "lookback: must be positive")
    return lookback_ms


def _score(
    method: Method, ts: np.ndarray, values: np.ndarray, threshold: float, lookback_ms: int
) -> anomaly.SeriesAnomalies:
    if method == "rolling":
        return anomaly.rolling_zscore(ts, values, lookback_ms, threshold)
    if method == "mad":
        return anomaly.mad(values, threshold)
    return anomaly.zscore(values, threshold)


def _series(
    labels: dict[str, str], ts: np.ndarray, values: np.ndarray, result: anomaly.SeriesAnomalies
) -> dict[str, object]:
    idx = result.indices
    stamps = format_ms_array(ts[idx])
    return {
        "labels": labels,
        "count": result.count,
        "mean": result.mean,
        "stddev": result.stddev,
        "anomalies": [
            {"timestamp": t, "value": v, "zscore": z}
            for t, v, z in zip(stamps, values[idx].tolist(), result.zscores.tolist(), strict=True)
        ],
    }
