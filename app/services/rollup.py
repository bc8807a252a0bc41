"""Pure rollup arithmetic: resolutions, epoch-aligned buckets, which buckets are closed, and the
aggregation of samples into buckets (the same as the database's, app.storage.reads)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Resolution:
    name: str  # "1m", "5m", "1h": also the query `window` value
    ms: int


RESOLUTIONS = (Resolution("1m", 60_000), Resolution("5m", 300_000), Resolution("1h", 3_600_000))
BY_NAME = {res.name: res for res in RESOLUTIONS}


def bucket_start(ts_ms: int, res: Resolution) -> int:
    """The start of the epoch-aligned bucket holding ts (floor, also for times before 1970)."""
    return ts_ms - ts_ms % res.ms


def closed_before(now_ms: int, grace_ms: int, res: Resolution) -> int:
    """Buckets starting before this are closed: their end plus the grace lies in the past."""
    return bucket_start(now_ms - grace_ms, res)


def window_bounds(start_ms: int, end_ms: int, res: Resolution) -> tuple[int, int]:
    """The first and last bucket starts a rollup query over [start, end] answers with."""
    return bucket_start(start_ms, res), bucket_start(end_ms, res)


# NaN values are left out of buckets; the terms of the sums are bounded so that no sum over the
# samples of one series and hour (at most 3,600,000) leaves the range of a double, where
# PostgreSQL would raise an error instead (docs/rollups-and-retention.md#what-a-bucket-holds).
SUM_LIMIT = 1e300  # a value beyond ±SUM_LIMIT adds ±infinity to `sum`
SQUARE_LIMIT = 1e150  # beyond it, a value adds infinity to `sumsq`
SQUARE_FLOOR = 1e-150  # below it in magnitude, a value adds 0 to `sumsq`


@dataclass
class Buckets:
    """Aggregates per (series, bucket), ordered by series, then bucket."""

    sids: np.ndarray
    bucket: np.ndarray
    count: np.ndarray
    sum: np.ndarray
    min: np.ndarray
    max: np.ndarray
    sumsq: np.ndarray
    last: np.ndarray
    last_ts: np.ndarray

    def __len__(self) -> int:
        return int(self.sids.size)

    def take(self, keep: np.ndarray) -> Buckets:
        return Buckets(*(getattr(self, name)[keep] for name in self.__dataclass_fields__))


def aggregate(sids: np.ndarray, ts: np.ndarray, values: np.ndarray, width_ms: int) -> Buckets:
    """Buckets `width_ms` wide of samples sorted by (series, ts), each (series, ts) once."""
    counted = ~np.isnan(values)
    sids, ts, values = sids[counted], ts[counted], values[counted]
    bucket = ts - ts % width_ms
    first = np.ones(sids.size, dtype=bool)
    first[1:] = (sids[1:] != sids[:-1]) | (bucket[1:] != bucket[:-1])
    starts = np.flatnonzero(first)
    if starts.size == 0:
        empty = np.empty(0, dtype=np.float64)
        ints = np.empty(0, dtype=np.int64)
        return Buckets(ints, ints, ints, empty, empty, empty, empty, empty, ints)
    ends = np.append(starts[1:], sids.size) - 1
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        magnitude = np.abs(values)
        terms = np.where(values > SUM_LIMIT, np.inf, np.where(values < -SUM_LIMIT, -np.inf, values))
        squares = np.where(
            magnitude > SQUARE_LIMIT,
            np.inf,
            np.where(magnitude < SQUARE_FLOOR, 0.0, values * values),
        )
        total = np.add.reduceat(terms, starts)
        sumsq = np.add.reduceat(squares, starts)
    return Buckets(
        sids=sids[starts],
        bucket=bucket[starts],
        count=ends - starts + 1,
        sum=total,
        min=np.minimum.reduceat(values, starts),
        max=np.maximum.reduceat(values, starts),
        sumsq=sumsq,
        last=values[ends],
        last_ts=ts[ends],
    )
