"""Reads: find series by label matchers, select raw ranges and rollups.

A rollup answer is exact at read time. Buckets before the resolution's `materialized_until` come
from the rollup table, except buckets with a pending invalidation, which are aggregated from raw
like the live tail (buckets at or after `materialized_until`); merged history (buckets without
raw samples) comes from the rollup table wherever it lies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.matchers import Matcher, matches_all
from app.services.rollup import Buckets, Resolution, window_bounds
from app.storage import dialect, rollup_blocks, schema
from app.storage.samples.protocol import BucketRange, MarkedBuckets, SampleStore
from app.storage.samples.row_sql import buckets_of, id_list

ID_CHUNK = 1000
MATCH_BLOCK = 2000  # series decoded and matched per turn of the event loop
AGG_COLUMNS = ("count", "sum", "min", "max", "sumsq", "last")


@dataclass(frozen=True)
class SeriesRef:
    id: int
    labels: dict[str, str]


@dataclass
class SeriesData:
    labels: dict[str, str]
    ts: np.ndarray  # int64 ms, ascending
    values: np.ndarray  # float64


@dataclass
class RollupData:
    labels: dict[str, str]
    bucket: np.ndarray  # int64 ms bucket starts, ascending
    count: np.ndarray
    sum: np.ndarray
    min: np.ndarray
    max: np.ndarray
    sumsq: np.ndarray
    last: np.ndarray


async def find_series(
    conn: AsyncConnection, metric: str, matchers: Sequence[Matcher]
) -> list[SeriesRef]:
    """Series of a metric matching every matcher, ordered by their labels."""
    cols = schema.series.c
    query = select(cols.id, cols.labels).where(cols.metric_name == metric)
    for m in matchers:
        if m.is_exact:
            query = query.where(dialect.label_equals(conn, m.name, m.value))
    refs: list[SeriesRef] = []
    rows = await conn.execute(query)
    while block := rows.fetchmany(MATCH_BLOCK):  # a metric may have very many series: the
        refs += [SeriesRef(sid, labels) for sid, labels in block if matches_all(matchers, labels)]
        await asyncio.sleep(0)  # event loop gets a turn between blocks
    refs.sort(key=lambda ref: sorted(ref.labels.items()))
    return refs


async def metric_exists(conn: AsyncConnection, metric: str) -> bool:
    cols = schema.series.c
    found = await conn.execute(select(cols.id).where(cols.metric_name == metric).limit(1))
    return found.first() is not None


async def select_raw(
    conn: AsyncConnection,
    samples: SampleStore,
    refs: Sequence[SeriesRef],
    start_ms: int,
    end_ms: int,
    limit: int,
) -> tuple[list[SeriesData], bool]:
    """Points of each series in [start, end], at most `limit` in all; True if cut short (then
    the series with the highest ids lose their points first)."""
    sids, ts, values = await samples.read(
        conn, sorted(ref.id for ref in refs), start_ms, end_ms, limit + 1
    )
    truncated = ts.size > limit
    if truncated:
        sids, ts, values = sids[:limit], ts[:limit], values[:limit]
    out = []
    for ref in refs:
        lo, hi = np.searchsorted(sids, ref.id, "left"), np.searchsorted(sids, ref.id, "right")
        out.append(SeriesData(ref.labels, ts[lo:hi], values[lo:hi]))
    return out, truncated


async def materialized_until(conn: AsyncConnection, res: Resolution) -> int | None:
    cols = schema.rollup_state.c
    found = await conn.execute(select(cols.materialized_until).where(cols.resolution == res.name))
    return found.scalar_one_or_none()


async def select_rollup(
    conn: AsyncConnection,
    samples: SampleStore,
    refs: Sequence[SeriesRef],
    res: Resolution,
    start_ms: int,
    end_ms: int,
) -> tuple[list[RollupData], int | None]:
    """Buckets of each series whose start lies in [floor(start), end]; and materialized_until."""
    lo, hi = window_bounds(start_ms, end_ms, res)
    until = await materialized_until(conn, res)
    mu = lo if until is None else max(lo, min(until, hi + res.ms))
    parts: list[Buckets] = []
    for first in range(0, len(refs), ID_CHUNK):
        ids = [ref.id for ref in refs[first : first + ID_CHUNK]]
        params = {"lo": lo, "hi": hi}
        stored = buckets_of(
            (await conn.execute(text(_stored_sql(res, id_list(ids))), params)).all()
        )
        parts.append(stored)
        parts.append(await rollup_blocks.read(conn, res, ids, lo, hi, stored))
        parts.append(await samples.aggregate(conn, BucketRange(ids, mu, hi + res.ms), res))
        dirty = MarkedBuckets(f"rollup_dirty_{res.name}", ids, lo, hi, before=mu)
        parts.append(await samples.aggregate(conn, dirty, res))
    return _split_rollups(refs, concat(parts)), until


def _stored_sql(res: Resolution, ids: str) -> str:
    """Stored buckets without a pending mark. Those the job wrote start before
    `materialized_until` (it only computes closed buckets, then moves it past them); those at or
    after it hold merged history, which has no raw samples for the live tail to count again."""
    return (
        "SELECT r.series_id, r.bucket, r.count, r.sum, r.min, r.max, r.sumsq, r.last, r.last_ts"
        f" FROM rollup_{res.name} r WHERE r.series_id IN ({ids}) AND r.bucket >= :lo"
        " AND r.bucket <= :hi AND NOT EXISTS (SELECT 1 FROM"
        f" rollup_dirty_{res.name} d WHERE d.series_id = r.series_id AND d.bucket = r.bucket)"
    )


def concat(parts: Sequence[Buckets]) -> Buckets:
    """Buckets of disjoint parts as one, ordered by series and bucket."""
    if not parts:
        return buckets_of([])
    joined = Buckets(
        *(
            np.concatenate([getattr(p, name) for p in parts])
            for name in Buckets.__dataclass_fields__
        )
    )
    return joined.take(np.lexsort((joined.bucket, joined.sids)))


def _split_rollups(refs: Sequence[SeriesRef], data: Buckets) -> list[RollupData]:
    """Per series (in the order of `refs`), its buckets of `data` (ordered by series, bucket)."""
    out = []
    for ref in refs:
        lo, hi = (
            np.searchsorted(data.sids, ref.id, "left"),
            np.searchsorted(data.sids, ref.id, "right"),
        )
        out.append(
            RollupData(
                ref.labels,
                data.bucket[lo:hi],
                data.count[lo:hi],
                data.sum[lo:hi],
                data.min[lo:hi],
                data.max[lo:hi],
                data.sumsq[lo:hi],
                data.last[lo:hi],
            )
        )
    return out
