"""Which data the causal detector judges, decided from the data itself (pure).

A series sampled every 10 s over a day is judged point by point; over 30 days that is 259,200
points a series, so the 5-minute rollup (8,640 averages) is judged instead. The typical interval
comes from the hourly sample counts of the range and the day before it; the judged resolution is
the finest of raw, 5m, 1h that keeps every series within `MAX_POINTS_PER_SERIES` and the whole
answer within MAX_QUERY_POINTS, and never finer than the data (1-minute buckets of 5-minute data
would be the raw points again). A `window` given by the caller is used as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.services.anomaly.blocks import HOUR_MS
from app.services.anomaly.detector import block_width, warmup_ms
from app.services.rollup import BY_NAME, RESOLUTIONS, Resolution

MAX_POINTS_PER_SERIES = 100_000
AUTO_WINDOWS = ("5m", "1h")


@dataclass(frozen=True)
class SeriesVolume:
    """What the hourly rollups say about one series: points in the range, typical interval."""

    points: int
    interval_ms: float


@dataclass(frozen=True)
class Plan:
    window: str | None  # None: raw points
    interval_ms: float  # of the judged points
    block_ms: int
    warmup_ms: int

    @property
    def resolution(self) -> str:
        return self.window or "raw"


def volume(
    bucket_ms: npt.ArrayLike, count: npt.ArrayLike, start_ms: int, end_ms: int
) -> SeriesVolume:
    """Points of one series in [start, end] and its typical interval, from its hourly buckets
    over the range and the day before it."""
    buckets = np.asarray(bucket_ms, dtype=np.int64)
    counts = np.asarray(count, dtype=np.float64)
    keep = counts > 0
    buckets, counts = buckets[keep], counts[keep]
    in_range = (buckets + HOUR_MS > start_ms) & (buckets <= end_ms)
    points = int(counts[in_range].sum())
    if counts.size == 0:
        return SeriesVolume(0, float(HOUR_MS))
    if counts.max() <= 1:  # at most one sample an hour: the spacing of the buckets holding one
        span = float(buckets[-1] - buckets[0]) if buckets.size > 1 else float(HOUR_MS)
        return SeriesVolume(points, max(float(HOUR_MS), span / max(buckets.size - 1, 1)))
    return SeriesVolume(points, HOUR_MS / float(np.median(counts[counts > 1])))


def plan(
    volumes: Sequence[SeriesVolume],
    start_ms: int,
    end_ms: int,
    max_query_points: int,
    window: str | None = None,
) -> Plan:
    """The resolution judged for a set of series (one plan for all of them: one answer)."""
    interval = float(np.median([v.interval_ms for v in volumes])) if volumes else float(HOUR_MS)
    if window is not None:
        return _plan(window, max(interval, BY_NAME[window].ms))
    per_series = max((v.points for v in volumes), default=0)
    total = sum(v.points for v in volumes)
    if per_series <= MAX_POINTS_PER_SERIES and total <= max_query_points:
        return _plan(None, interval)
    span = end_ms - start_ms + 1
    for name in AUTO_WINDOWS:
        res: Resolution = BY_NAME[name]
        buckets = span // res.ms + 1
        if (
            res.ms >= interval
            and buckets <= MAX_POINTS_PER_SERIES
            and (buckets * len(volumes) <= max_query_points)
        ):
            return _plan(name, float(res.ms))
    return _plan(RESOLUTIONS[-1].name, float(RESOLUTIONS[-1].ms))


def _plan(window: str | None, interval_ms: float) -> Plan:
    block = block_width(interval_ms)
    return Plan(window, interval_ms, block, warmup_ms(block))


def rollup_for_blocks(block_ms: int) -> Resolution:
    """The stored rollup the blocks of `block_ms` are read from (merged when wider)."""
    fitting = [res for res in RESOLUTIONS if block_ms % res.ms == 0]
    return max(fitting, key=lambda res: res.ms)
