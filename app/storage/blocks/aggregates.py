"""Bucket aggregates: computed from raw rows, merged exactly, as numpy columns.

A bucket holds, over the non-NaN samples of one series in [bucket, bucket + width): count, sum,
min, max, m2, last and last_ts. `m2` is the sum of squared deviations from the bucket's mean
(Welford's and Chan's second moment): the population variance is m2 / count, and the sum of
squares, if wanted, is m2 + sum**2 / count. Unlike a stored sum of squares it keeps its precision
when the spread is small against the mean (bench/blocks_lab.py compares the two). NaN samples
(any payload: the Prometheus stale marker too) are left out; a bucket of NaN only has no row.

As in the row tables (app.services.rollup.SUM_LIMIT), a value above 1e300 in magnitude adds
±infinity to `sum`; a bucket whose sum is not finite has m2 NaN.

Merging two aggregates of disjoint sample sets gives the aggregate of their union: count, min,
max, last and last_ts exactly; sum and m2 up to floating-point rounding, since addition in
another order rounds differently (relative error of order count x 2**-52 of the sum of
magnitudes; m2 of the same order relative to m2 + the squared mean differences).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from app.services.rollup import SUM_LIMIT


@dataclass(frozen=True)
class Buckets:
    """One row per (series, bucket), sorted by series then bucket."""

    series: np.ndarray  # int64
    bucket: np.ndarray  # int64 ms, the bucket's start
    count: np.ndarray  # int64, > 0
    sum: np.ndarray  # float64
    min: np.ndarray
    max: np.ndarray
    m2: np.ndarray
    last: np.ndarray  # the value at last_ts
    last_ts: np.ndarray  # int64 ms, the latest non-NaN sample's timestamp

    def __len__(self) -> int:
        return int(self.bucket.size)

    def take(self, index: np.ndarray | slice) -> Buckets:
        return Buckets(*(getattr(self, f.name)[index] for f in fields(self)))

    def sumsq(self) -> np.ndarray:
        """The sum of squares, as the row tables store it."""
        with np.errstate(invalid="ignore", over="ignore"):
            out: np.ndarray = self.m2 + self.sum * self.sum / self.count
        return out

    def stddev(self) -> np.ndarray:
        """The population standard deviation of each bucket."""
        with np.errstate(invalid="ignore"):
            out: np.ndarray = np.sqrt(self.m2 / self.count)
        return out


def empty() -> Buckets:
    ints, floats = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    return Buckets(ints, ints, ints, floats, floats, floats, floats, floats, ints)


def concat(parts: Sequence[Buckets]) -> Buckets:
    if not parts:
        return empty()
    return Buckets(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Buckets)))


def _groups(series: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Starts of the runs of equal (series, key) in rows sorted by them."""
    change = np.ones(keys.size, dtype=bool)
    change[1:] = (series[1:] != series[:-1]) | (keys[1:] != keys[:-1])
    return np.flatnonzero(change)


def _m2(values: np.ndarray, starts: np.ndarray, count: np.ndarray, total: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        mean = total / count
        deviation = values - np.repeat(mean, count)
        m2: np.ndarray = np.add.reduceat(deviation * deviation, starts)
    m2[~np.isfinite(total)] = np.nan
    return m2


def aggregate(series: np.ndarray, ts: np.ndarray, values: np.ndarray, width_ms: int) -> Buckets:
    """The buckets `width_ms` wide (aligned to the epoch) of rows sorted by (series, ts), one
    value per series and timestamp."""
    keep = ~np.isnan(values)
    if not keep.all():
        series, ts, values = series[keep], ts[keep], values[keep]
    if ts.size == 0:
        return empty()
    bucket = ts - np.mod(ts, width_ms)
    starts = _groups(series, bucket)
    ends = np.append(starts[1:], ts.size) - 1
    count = np.diff(np.append(starts, ts.size)).astype(np.int64)
    with np.errstate(over="ignore", invalid="ignore"):
        terms = np.where(np.abs(values) > SUM_LIMIT, np.copysign(np.inf, values), values)
        total = np.add.reduceat(terms, starts)
    return Buckets(
        series[starts],
        bucket[starts],
        count,
        total,
        np.minimum.reduceat(values, starts),
        np.maximum.reduceat(values, starts),
        _m2(values, starts, count, total),
        values[ends],
        ts[ends],
    )


def merge(parts: Sequence[Buckets]) -> Buckets:
    """The aggregate of the union of disjoint sample sets, from the aggregates of each.

    For buckets present in several parts: counts and sums add, min and max of the mins and
    maxes, `last` of the latest last_ts (of equal ones, the later part's), and the parallel form
    of the second moment, m2 = sum_i [m2_i + count_i * (mean_i - mean)**2]."""
    every = concat(parts)
    if len(every) == 0:
        return every
    order = np.lexsort((np.arange(len(every)), every.bucket, every.series))
    every = every.take(order)
    starts = _groups(every.series, every.bucket)
    if starts.size == len(every):
        return every
    count = np.add.reduceat(every.count, starts)
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.add.reduceat(every.sum, starts)
        sizes = np.diff(np.append(starts, len(every)))
        gap = every.sum / every.count - np.repeat(total / count, sizes)
        m2 = np.add.reduceat(every.m2 + every.count * gap * gap, starts)
    m2[~np.isfinite(total)] = np.nan
    # the latest last_ts of each group; of equal ones, the later part's (the later row)
    latest = np.lexsort((np.arange(len(every)), every.last_ts, np.repeat(starts, sizes)))
    ends = latest[np.append(starts[1:], len(every)) - 1]
    return Buckets(
        every.series[starts],
        every.bucket[starts],
        count,
        total,
        np.minimum.reduceat(every.min, starts),
        np.maximum.reduceat(every.max, starts),
        m2,
        every.last[ends],
        every.last_ts[ends],
    )


def replace_range(stored: Buckets, fresh: Buckets, lo: int, hi: int) -> Buckets:
    """`stored` with its buckets starting in [lo, hi) replaced by `fresh` (recomputed from the
    raw samples of that range: a span the rollup job has compacted). Both sorted by
    (series, bucket); `fresh` must lie in [lo, hi)."""
    if len(fresh) and (int(fresh.bucket.min()) < lo or int(fresh.bucket.max()) >= hi):
        raise ValueError(f"fresh buckets outside [{lo}, {hi})")
    kept = stored.take((stored.bucket < lo) | (stored.bucket >= hi))
    both = concat([kept, fresh])
    return both.take(np.lexsort((both.bucket, both.series)))
