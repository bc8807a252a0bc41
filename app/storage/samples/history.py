"""History: samples older than their metric's raw floor, placed exactly
(docs/rollups-and-retention.md#writes-older-than-raw-retention).

- A sample in an hour whose raw samples of its series still exist (retention has not run since
  they aged out) goes on the raw path with its marks: the rollup job, or retention before it drops
  them, rolls the hour up from raw as a whole. What is stored then never depends on whether
  retention has run yet, and nothing it has not dropped is called dropped.
- Otherwise it is merged straight into every rollup resolution that still retains its time,
  exactly (count, sum, min, max, sumsq and last add up), provided that (series, resolution,
  bucket) holds nothing yet. If it holds data, the raw samples behind that data are gone (dropped
  by retention, or never kept: history merged before), so a re-sent sample would be counted
  twice: the write is refused, naming the first such sample, and nothing of it is written.

Hours are either wholly backed by raw samples or not at all: raw floors and retention cut-offs
are whole hours, and raw samples never enter an hour that holds merged history (its time lies
before the floor, which only moves forward: the merge records it as the metric's raw horizon).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy.ext.asyncio import AsyncConnection

from app.model import SeriesKey
from app.services.retention import HISTORY
from app.services.rollup import RESOLUTIONS, Buckets, Resolution, aggregate
from app.storage import rollup_blocks
from app.storage.exact_values import KEY
from app.storage.samples.row_sql import RowSql
from app.storage.writes import HistoryConflict, Rows, WritePlan

HOUR_MS = 3_600_000
CHUNK = 500
ROLLUP_LAYOUT = (
    ("series_id", ">i4"),
    ("bucket", ">i8"),
    ("count", ">i8"),
    ("sum", ">f8"),
    ("min", ">f8"),
    ("max", ">f8"),
    ("sumsq", ">f8"),
    ("last", ">f8"),
    ("last_ts", ">i8"),
)


@dataclass
class Placement:
    to_raw: np.ndarray  # per row: a history row that goes on the raw path
    merged: dict[str, Buckets]  # per resolution: the new rollup rows


# Per (series, hour start) pair, whether raw samples back the hour: a layout that keeps raw
# samples beside the row tables (the block layout) says so for both.
RawBacked = Callable[[AsyncConnection, np.ndarray, np.ndarray], Awaitable[np.ndarray]]


async def place(
    conn: AsyncConnection,
    sql: RowSql,
    rows: Rows,
    plan: WritePlan,
    keys: Sequence[SeriesKey],
    backed_by: RawBacked | None = None,
) -> Placement:
    """Decide where each history row goes; raise HistoryConflict if one cannot be merged."""
    history = np.flatnonzero(rows.kinds == HISTORY)
    ts = rows.ts[history]
    sids, hours = rows.sids[history], ts - ts % HOUR_MS
    if backed_by is None:
        backed = await raw_backed(conn, sql, sids, hours)
    else:
        backed = await backed_by(conn, sids, hours)
    to_raw = np.zeros(len(rows), dtype=bool)
    to_raw[history[backed]] = True
    merge = history[~backed]
    merged: dict[str, Buckets] = {}
    conflicts: list[HistoryConflict] = []
    for res in RESOLUTIONS:
        retained = rows.ts[merge] >= plan.key_floors(keys, res.name)[rows.keys[merge]]
        chosen = merge[retained]
        buckets = aggregate(rows.sids[chosen], rows.ts[chosen], rows.values[chosen], res.ms)
        taken = await _stored(conn, sql, res, buckets)
        if taken.any():
            conflicts.append(_conflict(rows.take(chosen), buckets.take(taken), res, plan, keys))
        merged[res.name] = buckets
    if conflicts:
        raise min(conflicts, key=lambda c: c.position)
    return Placement(to_raw, merged)


def _pairs(sids: np.ndarray, starts: np.ndarray) -> np.ndarray:
    pairs = np.empty(sids.size, dtype=KEY)
    pairs["series"], pairs["ts"] = sids, starts
    return pairs


def _member(pairs: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Which of `pairs` are in `sorted_set` (both of dtype KEY; the set sorted)."""
    if sorted_set.size == 0 or pairs.size == 0:
        return np.zeros(pairs.size, dtype=bool)
    at = np.minimum(np.searchsorted(sorted_set, pairs), sorted_set.size - 1)
    found: np.ndarray = sorted_set[at] == pairs
    return found


def _conflict(
    rows: Rows, taken: Buckets, res: Resolution, plan: WritePlan, keys: Sequence[SeriesKey]
) -> HistoryConflict:
    """The refusal naming the first sample, in request order, that falls in a taken bucket."""
    hit = _member(_pairs(rows.sids, rows.ts - rows.ts % res.ms), _pairs(taken.sids, taken.bucket))
    first = int(np.argmin(np.where(hit, rows.positions, np.iinfo(np.int64).max)))
    key = keys[int(rows.keys[first])]
    bucket = int(rows.ts[first] - rows.ts[first] % res.ms)
    return HistoryConflict(
        int(rows.positions[first]),
        key.metric,
        key.labels_json,
        res.name,
        bucket,
        plan.floors[key.metric].raw,
    )


async def raw_backed(
    conn: AsyncConnection, sql: RowSql, sids: np.ndarray, hours: np.ndarray
) -> np.ndarray:
    """Per (series, hour start) pair, whether raw samples of the series exist in that hour. Only
    hours at or after a series' first raw sample are probed, one index seek each: usually none
    at all."""
    pairs = _pairs(sids, hours)
    unique = np.unique(pairs)
    if unique.size == 0:
        return np.zeros(sids.size, dtype=bool)
    first = await _first_raw(conn, sql, np.unique(unique["series"]))
    starts = np.array([first.get(int(s), np.iinfo(np.int64).max) for s in unique["series"]])
    candidates = unique[unique["ts"] + HOUR_MS > starts]
    found: list[tuple[int, int]] = []
    for i in range(0, candidates.size, CHUNK):
        chunk = candidates[i : i + CHUNK]
        values = ", ".join(f"({int(s)}, {int(h)})" for s, h in chunk.tolist())
        found += await sql.fetch_small(
            conn,
            f"WITH p(sid, h) AS (VALUES {values}) SELECT p.sid, p.h FROM p WHERE EXISTS (SELECT 1"
            " FROM samples s WHERE s.series_id = p.sid AND s.ts >= p.h"
            f" AND s.ts < p.h + {HOUR_MS})",
        )
    backed = np.sort(np.array(found, dtype=np.int64).reshape(-1, 2).view(KEY).ravel())
    return _member(pairs, backed)


async def _first_raw(conn: AsyncConnection, sql: RowSql, sids: np.ndarray) -> dict[int, int]:
    """The earliest raw sample of each series (that has one)."""
    first: dict[int, int] = {}
    for i in range(0, sids.size, CHUNK):
        values = ", ".join(f"({int(s)})" for s in sids[i : i + CHUNK].tolist())
        rows = await sql.fetch_small(
            conn,
            f"WITH v(sid) AS (VALUES {values}) SELECT v.sid, (SELECT min(s.ts) FROM samples s"
            " WHERE s.series_id = v.sid) FROM v",
        )
        first.update({int(sid): int(ts) for sid, ts in rows if ts is not None})
    return first


async def _stored(
    conn: AsyncConnection, sql: RowSql, res: Resolution, buckets: Buckets
) -> np.ndarray:
    """Per bucket, whether the rollup table holds a row for it already."""
    if len(buckets) == 0:
        return np.zeros(0, dtype=bool)
    # a day folded into a rollup block is rows again first (rolled back with a refusal)
    await rollup_blocks.unpack_buckets(conn, res, buckets.sids, buckets.bucket)
    lo, hi = int(buckets.bucket.min()), int(buckets.bucket.max())
    found: list[tuple[int, int]] = []
    ids = np.unique(buckets.sids)
    for i in range(0, ids.size, CHUNK):
        id_list = ",".join(str(int(s)) for s in ids[i : i + CHUNK].tolist())
        found += await sql.fetch_small(
            conn,
            f"SELECT series_id, bucket FROM rollup_{res.name} WHERE series_id IN ({id_list})"
            f" AND bucket >= {lo} AND bucket <= {hi}",
        )
    stored = np.sort(np.array(found, dtype=np.int64).reshape(-1, 2).view(KEY).ravel())
    return _member(_pairs(buckets.sids, buckets.bucket), stored)


async def write_merged(conn: AsyncConnection, sql: RowSql, merged: dict[str, Buckets]) -> bool:
    """Insert the merged rollup rows; False if a row turned out to exist (nothing is then
    guaranteed written: the caller rolls back)."""
    for name, b in merged.items():
        if len(b) == 0:
            continue
        table = f"rollup_{name}"
        columns = (b.sids, b.bucket, b.count, b.sum, b.min, b.max, b.sumsq, b.last, b.last_ts)
        written = await sql.insert_new_rows(conn, table, ROLLUP_LAYOUT, columns)
        if written < len(b):
            return False
    return True
