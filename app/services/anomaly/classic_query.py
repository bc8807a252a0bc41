"""The classic methods (zscore, rolling, mad) over a range: read raw points or rollup buckets
through the store's public reads, score them with `classic`. The route shapes the answer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from app.matchers import Matcher
from app.services.anomaly import classic
from app.services.anomaly.reader import Reads
from app.services.buckets import bucket_avg_stddev
from app.services.rollup import BY_NAME

ClassicMethod = Literal["zscore", "rolling", "mad"]


class TooManyPoints(ValueError):
    """The raw points of the range exceed MAX_QUERY_POINTS."""


@dataclass(frozen=True, eq=False)
class Scored:
    labels: dict[str, str]
    ts: np.ndarray
    values: np.ndarray
    result: classic.SeriesAnomalies


async def detect_classic(
    store: Reads,
    metric: str,
    matchers: Sequence[Matcher],
    start_ms: int,
    end_ms: int,
    *,
    method: ClassicMethod,
    threshold: float,
    lookback_ms: int | None,
    window: str | None,
    max_query_points: int,
) -> list[Scored]:
    """Score raw points (or, with `window`, bucket averages) per series. `lookback_ms` None means
    the default: 1 hour or 60 intervals of the series on raw points, 60 buckets with a window."""
    if window is None:
        raw, truncated = await store.select_raw(
            metric, matchers, start_ms, end_ms, max_query_points
        )
        if truncated:
            raise TooManyPoints(max_query_points)
        out = []
        for s in raw:
            keep = np.isfinite(s.values)  # stale markers are not data
            ts, values = s.ts[keep], s.values[keep]
            out.append(
                Scored(s.labels, ts, values, score(method, ts, values, threshold, lookback_ms))
            )
        return out
    res = BY_NAME[window]
    buckets, _ = await store.select_rollup(metric, matchers, res, start_ms, end_ms)
    out = []
    for b in buckets:
        avg, _ = bucket_avg_stddev(b.count, b.sum, b.sumsq)
        avg = np.where(b.count > 0, avg, 0.0)
        if method == "zscore":
            result = classic.zscore_from_buckets(b.count, b.sum, b.sumsq, avg, threshold)
        else:
            lookback = lookback_ms if lookback_ms is not None else 60 * res.ms
            result = score(method, b.bucket, avg, threshold, lookback)
        out.append(Scored(b.labels, b.bucket, avg, result))
    return out


def score(
    method: ClassicMethod,
    ts: np.ndarray,
    values: np.ndarray,
    threshold: float,
    lookback_ms: int | None,
) -> classic.SeriesAnomalies:
    if method == "rolling":
        lookback = lookback_ms if lookback_ms is not None else classic.default_lookback_ms(ts)
        return classic.rolling_zscore(ts, values, lookback, threshold)
    if method == "mad":
        return classic.mad(values, threshold)
    return classic.zscore(values, threshold)
