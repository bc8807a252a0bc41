"""Bulk writes of closed spans straight into blocks (docs/storage.md#bulk-writes-into-blocks):
the raw rows of a write of at least `DIRECT_MIN_ROWS` samples that lie in spans ending by now -
ROLLUP_GRACE (the spans compaction would fold) are written into their blocks inside the write's
own transaction, with no row per sample in the head.

Per write, in the head's transaction (its floors, history, series and marks decided as for any
write, `RowSampleStore.raw_elsewhere`): the blocks lock (PostgreSQL: one writer of blocks at a
time, compaction included), the head rows of each series' closed range taken out (they are
older than this write), the existing blocks of every span touched decoded, the three layers
merged in numpy (block, head rows, this write: the later wins), the spans encoded and upserted.
A write's overwrites are its samples whose key held other bits, in the head or else the block.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.model import SampleBatch
from app.storage.blocks.read import Rows, StoredBlock, decode_range, last_write_wins, no_rows
from app.storage.dialect import lock_blocks
from app.storage.samples import block_table
from app.storage.samples.block_table import SPAN_MS, spans_of
from app.storage.samples.compaction import take_head_where, take_head_where_on
from app.storage.samples.row_sql import id_list
from app.storage.samples.rows import RowSampleStore
from app.storage.samples.sqlite_thread import ThreadWrite

DIRECT_MIN_ROWS = 1000
ID_CHUNK = 500
EVERYTHING = 2**62

# The span end before which this task's write goes into blocks (None: all of it to the head),
# fixed once per write so the block store's count of overwrites and the write agree on it.
_closed_before: ContextVar[int | None] = ContextVar("closed_before", default=None)


class DirectBlocks:
    """The head's `raw_elsewhere` in the block layout."""

    def __init__(self, head: RowSampleStore) -> None:
        self._head = head

    @contextmanager
    def writing(self, closed_before: int | None) -> Iterator[None]:
        """Within: this task's write puts its raw rows before `closed_before` (a span start)
        into blocks."""
        token = _closed_before.set(closed_before)
        try:
            yield
        finally:
            _closed_before.reset(token)

    def takes(self, batch: SampleBatch) -> bool:
        cut = _closed_before.get()
        return cut is not None and batch.ts.size > 0 and int(batch.ts.min()) < cut

    async def write(
        self, conn: AsyncConnection, sids: np.ndarray, ts: np.ndarray, values: np.ndarray
    ) -> tuple[np.ndarray, int]:
        closed = _closed(sids, ts, values, _closed_before.get())
        if closed is None:
            return np.ones(ts.size, dtype=bool), 0
        mask, new = closed
        return mask, await write_closed(conn, self._head, new)

    def on_thread(self) -> ThreadWrite | None:
        """SQLite: `write` as a function of the sqlite3 connection, for the write's one call on
        the writer's thread (SqliteRows.write_known); the span end is read here, in the write's
        own context (the thread does not see its context variables)."""
        if not self._head.backend.writers_exclude_each_other:
            return None
        cut = _closed_before.get()

        def write(
            db: sqlite3.Connection, sids: np.ndarray, ts: np.ndarray, values: np.ndarray
        ) -> tuple[np.ndarray, int]:
            closed = _closed(sids, ts, values, cut)
            if closed is None:
                return np.ones(ts.size, dtype=bool), 0
            mask, new = closed
            return mask, write_closed_on(db, new)

        return write


def _closed(
    sids: np.ndarray, ts: np.ndarray, values: np.ndarray, cut: int | None
) -> tuple[np.ndarray, Rows] | None:
    """The rows left for the head and the rows of closed spans, or None if none is closed."""
    if cut is None or not ts.size:
        return None
    closed = ts < cut
    if not closed.any():
        return None
    return ~closed, Rows(sids[closed], ts[closed], values[closed])


async def write_closed(conn: AsyncConnection, head: RowSampleStore, new: Rows) -> int:
    """Write `new` (rows of closed spans, sorted by (series, ts), one value each) into blocks in
    the caller's transaction; returns how many replaced a stored sample of other bits."""
    if not _sorted(new):
        new = last_write_wins(new)
    await lock_blocks(conn)
    taken = await take_head_where_any(conn, head, head_ranges(new))
    sids, spans = _spans_touched(new, taken)
    existing = await block_table.of_spans(conn, sids, spans)
    params, overwritten = _blocks_of(existing, taken, new)
    if params:
        await conn.execute(text(block_table.UPSERT), params)
    return overwritten


def write_closed_on(db: sqlite3.Connection, new: Rows) -> int:
    """`write_closed` through the sqlite3 connection on its thread (SQLite: the write lock
    serializes writers of blocks already)."""
    if not _sorted(new):
        new = last_write_wins(new)
    taken = _sorted_union([take_head_where_on(db, where) for where in head_ranges(new)])
    sids, spans = _spans_touched(new, taken)
    params, overwritten = _blocks_of(block_table.of_spans_on(db, sids, spans), taken, new)
    if params:
        db.executemany(block_table.UPSERT, params)
    return overwritten


def _spans_touched(new: Rows, taken: Rows) -> tuple[np.ndarray, np.ndarray]:
    """(series, span_start) of the blocks a write of `new` over the head rows `taken` rewrites."""
    return (
        np.concatenate([new.series, taken.series]),
        np.concatenate([spans_of(new.ts), spans_of(taken.ts)]),
    )


def _blocks_of(
    existing: Sequence[StoredBlock], taken: Rows, new: Rows
) -> tuple[list[dict[str, Any]], int]:
    """The blocks rows (UPSERT's parameters) of the three layers merged, and how many of `new`
    replace other bits."""
    base = decode_range(existing, -EVERYTHING, EVERYTHING) if existing else no_rows()
    merged, overwritten = merge_layers(base, taken, new)
    return block_table.block_rows(merged), overwritten


def head_ranges(new: Rows) -> list[str]:
    """WHERE conditions of the head rows a write of `new` folds in: per series, the spans from
    its first row's to its last row's (all closed), series of one range in one IN list."""
    first = np.flatnonzero(np.r_[True, new.series[1:] != new.series[:-1]])
    last = np.r_[first[1:], len(new)] - 1
    series = new.series[first]
    lo, hi = spans_of(new.ts[first]), spans_of(new.ts[last]) + SPAN_MS
    ranges = np.column_stack([lo, hi])
    found, group = np.unique(ranges, axis=0, return_inverse=True)
    group = group.reshape(-1)
    out = []
    for g, (a, b) in enumerate(found.tolist()):
        ids = series[group == g].tolist()
        for at in range(0, len(ids), ID_CHUNK):
            out.append(
                f"series_id IN ({id_list(ids[at : at + ID_CHUNK])}) AND ts >= {a} AND ts < {b}"
            )
    return out


async def take_head_where_any(
    conn: AsyncConnection, head: RowSampleStore, wheres: list[str]
) -> Rows:
    """The head rows matching any of `wheres`, deleted; sorted by (series, ts)."""
    return _sorted_union([await take_head_where(conn, head, where) for where in wheres])


def _sorted_union(parts: Sequence[Rows]) -> Rows:
    """Rows of disjoint parts, each sorted, together sorted by (series, ts)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return no_rows()
    if len(parts) == 1:
        return parts[0]
    rows = Rows(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in ("series", "ts", "values"))
    )
    return rows.take(np.lexsort((rows.ts, rows.series)))


def merge_layers(base: Rows, head: Rows, new: Rows) -> tuple[Rows, int]:
    """The samples of blocks (`base`), head rows over them and `new` over both (each sorted by
    (series, ts), one value per key), and how many of `new` replace other bits: at a key, the
    head row if there is one, else the block's sample, is what `new` replaces."""
    if not len(base) and not len(head):
        return new, 0
    series = np.concatenate([base.series, head.series, new.series])
    ts = np.concatenate([base.ts, head.ts, new.ts])
    values = np.concatenate([base.values, head.values, new.values])
    layer = np.repeat(np.array([0, 1, 2], dtype=np.int8), [len(base), len(head), len(new)])
    order = np.lexsort((layer, ts, series))
    series, ts, values, layer = series[order], ts[order], values[order], layer[order]
    same = (series[1:] == series[:-1]) & (ts[1:] == ts[:-1])  # element i + 1 replaces i
    bits = values.view(np.uint64)
    overwritten = int((same & (layer[1:] == 2) & (bits[1:] != bits[:-1])).sum())
    keep = np.ones(ts.size, dtype=bool)
    keep[:-1] = ~same
    return Rows(series[keep], ts[keep], values[keep]), overwritten


def _sorted(rows: Rows) -> bool:
    ds, dt = np.diff(rows.series), np.diff(rows.ts)
    return bool(((ds > 0) | ((ds == 0) & (dt > 0))).all())
