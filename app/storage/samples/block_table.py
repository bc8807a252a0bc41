"""The `blocks` table of the block layout (docs/storage.md#the-block-layout): one row per series
and closed span, (series_id, span_start, first_ts, last_ts, count, nans, payload), the payload
encoded by app.storage.blocks.codec. What the block store and its compaction read and write;
the same SQL on both backends.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.storage.blocks.batch import encode_series
from app.storage.blocks.merge import span_starts
from app.storage.blocks.read import Rows, StoredBlock
from app.storage.samples.row_sql import id_list

SPAN_MS = 2 * 3_600_000  # divides a day, a multiple of the widest bucket (docs/storage-blocks.md)
STALE_BITS = 0x7FF0000000000002
ID_CHUNK = 500
UPSERT = (
    "INSERT INTO blocks (series_id, span_start, first_ts, last_ts, count, nans, payload)"
    " VALUES (:series_id, :span_start, :first_ts, :last_ts, :count, :nans, :payload)"
    " ON CONFLICT (series_id, span_start) DO UPDATE SET first_ts = excluded.first_ts,"
    " last_ts = excluded.last_ts, count = excluded.count, nans = excluded.nans,"
    " payload = excluded.payload"
)


def bad_nans(values: np.ndarray) -> np.ndarray:
    """Which values are NaN other than the Prometheus stale marker."""
    found: np.ndarray = np.isnan(values) & (values.view(np.uint64) != np.uint64(STALE_BITS))
    return found


def overlapping(ids: Sequence[int], lo: int, hi: int) -> str:
    """WHERE of the blocks of these series with a sample possibly in [lo, hi]: the key's range
    first (a block's samples lie in [span_start, span_start + SPAN_MS)), then the exact bounds."""
    return (
        f"series_id IN ({id_list(ids)}) AND span_start > {int(lo) - SPAN_MS}"
        f" AND span_start <= {int(hi)} AND first_ts <= {int(hi)} AND last_ts >= {int(lo)}"
    )


def under_marks(marks: str, where: str = "") -> str:
    """SQL: whether a block holds the span of a (series, bucket) pair of the marks table
    `marks` (with its ` AND ...` conditions `where`). Every bucket lies in one span (SPAN_MS is
    a multiple of every resolution), so the block's key range finds it."""
    return (
        f"SELECT 1 FROM {marks} JOIN blocks b ON b.series_id = {marks}.series_id"
        f" AND b.span_start <= {marks}.bucket AND b.span_start > {marks}.bucket - {SPAN_MS}"
        f" WHERE true{where} LIMIT 1"
    )


def stored(rows: Sequence[Sequence[Any]]) -> list[StoredBlock]:
    """Rows of (series_id, first_ts, last_ts, payload) as blocks."""
    return [StoredBlock(int(r[0]), int(r[1]), int(r[2]), bytes(r[3])) for r in rows]


async def payloads(conn: AsyncConnection, where: str) -> list[StoredBlock]:
    """The blocks matching `where`, ordered by series and span."""
    sql = (
        "SELECT series_id, first_ts, last_ts, payload FROM blocks"
        f" WHERE {where} ORDER BY series_id, span_start"
    )
    return stored((await conn.execute(text(sql))).all())


async def sizes(conn: AsyncConnection, where: str) -> np.ndarray:
    """(series_id, span_start, first_ts, last_ts, count) of the blocks matching `where`, as an
    int64 table ordered by series and span: what a bounded read plans with."""
    sql = (
        "SELECT series_id, span_start, first_ts, last_ts, count FROM blocks"
        f" WHERE {where} ORDER BY series_id, span_start"
    )
    rows = (await conn.execute(text(sql))).all()
    return np.array([tuple(r) for r in rows], dtype=np.int64).reshape(-1, 5)


def _span_queries(sids: np.ndarray, spans: np.ndarray) -> tuple[set[tuple[int, int]], list[str]]:
    """The wanted (series, span_start) pairs and the statements that read their blocks (a
    superset, by series and span lists of at most ID_CHUNK each)."""
    order = np.lexsort((spans, sids))
    sids, spans = sids[order], spans[order]
    new = np.ones(sids.size, dtype=bool)
    new[1:] = (sids[1:] != sids[:-1]) | (spans[1:] != spans[:-1])
    wanted = set(zip(sids[new].tolist(), spans[new].tolist(), strict=True))
    series = sorted({s for s, _ in wanted})
    queries = []
    for first in range(0, len(series), ID_CHUNK):
        chunk = series[first : first + ID_CHUNK]
        members = set(chunk)
        starts = sorted({p for s, p in wanted if s in members})
        for at in range(0, len(starts), ID_CHUNK):
            queries.append(
                "SELECT series_id, first_ts, last_ts, payload, span_start FROM blocks"
                f" WHERE series_id IN ({id_list(chunk)})"
                f" AND span_start IN ({id_list(starts[at : at + ID_CHUNK])})"
            )
    return wanted, queries


def _of_wanted(rows: Sequence[Sequence[Any]], wanted: set[tuple[int, int]]) -> list[StoredBlock]:
    found = stored([r for r in rows if (int(r[0]), int(r[4])) in wanted])
    return sorted(found, key=lambda b: (b.series, b.first_ts))


async def of_spans(conn: AsyncConnection, sids: np.ndarray, spans: np.ndarray) -> list[StoredBlock]:
    """The blocks of exactly these (series, span_start) pairs."""
    wanted, queries = _span_queries(sids, spans)
    rows = [row for sql in queries for row in (await conn.execute(text(sql))).all()]
    return _of_wanted(rows, wanted)


def of_spans_on(db: sqlite3.Connection, sids: np.ndarray, spans: np.ndarray) -> list[StoredBlock]:
    """`of_spans` through a sqlite3 connection, on its thread."""
    wanted, queries = _span_queries(sids, spans)
    return _of_wanted([row for sql in queries for row in db.execute(sql)], wanted)


async def write(conn: AsyncConnection, rows: Rows) -> int:
    """Upsert the blocks holding exactly `rows` (sorted by series and ts, one value each) in the
    spans they touch; returns the blocks written."""
    params = block_rows(rows)
    if params:
        await conn.execute(text(UPSERT), params)
    return len(params)


def block_rows(rows: Rows) -> list[dict[str, Any]]:
    """The `blocks` rows (UPSERT's parameters) holding exactly `rows` (sorted by series and ts,
    one value each), a block per series and span they touch."""
    params: list[dict[str, Any]] = []
    change = np.flatnonzero(rows.series[1:] != rows.series[:-1]) + 1
    for lo, hi in zip([0, *change.tolist()], [*change.tolist(), len(rows)], strict=True):
        if lo == hi:
            continue
        ts, values = rows.ts[lo:hi], rows.values[lo:hi]
        for piece, payload in encode_series(ts, values, SPAN_MS):
            params.append(
                {
                    "series_id": int(rows.series[lo]),
                    "span_start": piece.span_start,
                    "first_ts": int(ts[piece.lo]),
                    "last_ts": int(ts[piece.hi - 1]),
                    "count": piece.hi - piece.lo,
                    "nans": int(bad_nans(values[piece.lo : piece.hi]).sum()),
                    "payload": payload,
                }
            )
    return params


def spans_of(ts: np.ndarray) -> np.ndarray:
    return span_starts(ts, SPAN_MS)
