"""The block layout as a sample store (STORAGE_LAYOUT=blocks, docs/storage.md#the-block-layout):
a head of rows, the `samples` table exactly as the row layout keeps it (a `RowSampleStore`,
whose writes, marks and horizon rules are used unchanged), and `blocks`, the closed 2 h spans of
each series compressed (app.storage.blocks), which compaction (`samples.compaction`) fills from
the head.

Reads decode the blocks overlapping the range and lay the head's rows over them: a head row is
always newer than the block of its span (compaction deletes the rows it folds in, in the same
transaction), so the head wins. Every read takes the head's rows before the blocks: outside
one snapshot, a compaction committing in between only moves rows from the head into blocks, so
nothing is missed. One Python step per block, none per sample.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from sqlalchemy import ColumnElement, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.config import Settings
from app.model import SampleBatch
from app.services.retention import RetentionPlan
from app.services.rollup import Buckets, Resolution, aggregate
from app.storage import dialect, schema
from app.storage.blocks.codec import decode_block
from app.storage.blocks.read import (
    Rows,
    StoredBlock,
    decode_range,
    keys,
    last_write_wins,
    no_rows,
    overlay,
    read_range,
)
from app.storage.engine import Engines
from app.storage.samples import block_table, compaction
from app.storage.samples.block_retention import drop_blocks
from app.storage.samples.block_table import SPAN_MS, bad_nans, overlapping, spans_of
from app.storage.samples.direct_blocks import DIRECT_MIN_ROWS, DirectBlocks
from app.storage.samples.postgres_rows import PostgresRows
from app.storage.samples.protocol import (
    BucketRange,
    BucketSelection,
    MarkedBuckets,
    Points,
    RawDrop,
    SeriesResolver,
    no_points,
)
from app.storage.samples.row_sql import marks_where
from app.storage.samples.rows import RowSampleStore
from app.storage.samples.sqlite_rows import SqliteRows, fetch_on
from app.storage.writes import AppendResult, CardinalityExceeded

SERIES_GROUP = 100  # series read together: memory is bounded by the group and the limit
RANGES_PER_READ = 200  # series' ranges of marked buckets per head read
ROWS_FIELDS = ("series", "ts", "values")
EVERYTHING = 2**62
ROLLUP_COLUMNS = ("series_id", "bucket", "count", "sum", "min", "max", "sumsq", "last", "last_ts")
FLOAT = "double precision"
ROLLUP_TYPES = ("integer", "bigint", "bigint", FLOAT, FLOAT, FLOAT, FLOAT, FLOAT, "bigint")


def as_points(rows: Rows) -> Points:
    return rows.series, rows.ts, rows.values


def as_rows(points: Points) -> Rows:
    return Rows(*points)


class BlockSampleStore:
    def __init__(
        self,
        settings: Settings,
        engines: Engines,
        clock: Callable[[], int],
        defaults: Mapping[str, int],
        grace_ms: int,
    ) -> None:
        self._engines = engines
        self._clock, self._grace_ms = clock, grace_ms
        self._latest_cut = -EVERYTHING  # the latest span end this store compacted up to
        self.head = RowSampleStore(settings, engines, clock, defaults, grace_ms)
        # History placement asks which hours raw samples back: the blocks' too.
        self.head.hours_backed = self.hours_with_samples
        # Bulk writes put their raw rows of closed spans straight into blocks
        # (samples.direct_blocks); smaller ones go to the head.
        self.direct_min_rows = DIRECT_MIN_ROWS
        self._direct = DirectBlocks(self.head)
        self.head.raw_elsewhere = self._direct

    @property
    def backend(self) -> SqliteRows | PostgresRows:
        """The head's backend: the connections and SQL its writes use."""
        return self.head.backend

    async def close(self) -> None:
        await self.head.close()

    async def writer_read_only(self) -> bool | None:
        return await self.head.writer_read_only()

    async def append(
        self, batch: SampleBatch, ids: np.ndarray, missing: list[int], resolve: SeriesResolver
    ) -> AppendResult:
        """The head's write; a bulk one (`direct_min_rows` samples or more) writes its raw rows
        of closed spans into their blocks in the same transaction (samples.direct_blocks,
        which counts what they overwrite). The count of overwrites is completed by the head's
        rows that replace samples in blocks (`_replacing_blocks`): with every series known,
        read before the write (under the store's write lock, so no compaction of this process
        comes between); otherwise inside the write's transaction, once its series are
        resolved."""
        replaced = [0]
        direct = self._direct_before(batch)

        async def resolving(
            conn: AsyncConnection, ids: np.ndarray, missing: list[int]
        ) -> dict[int, CardinalityExceeded]:
            rejected = await resolve(conn, ids, missing)
            replaced[0] = await self._replacing_blocks(conn, batch, ids, direct)
            return rejected

        with self._direct.writing(direct):
            if not missing and self._may_replace_blocks(batch, ids, direct).any():
                async with self._engines.reader.connect() as conn:
                    replaced[0] = await self._replacing_blocks(conn, batch, ids, direct)
            result = await self.head.append(batch, ids, missing, resolving)
        result.overwritten += replaced[0]
        return result

    def _direct_before(self, batch: SampleBatch) -> int | None:
        """For a bulk write, the end of the closed spans (now - grace, as compaction's rule)
        whose raw rows go straight into blocks; None for a write whose rows all go to the head."""
        if len(batch) < self.direct_min_rows:
            return None
        return compaction.closed_span_end(self._clock() - self._grace_ms)

    def _may_replace_blocks(
        self, batch: SampleBatch, ids: np.ndarray, direct: int | None
    ) -> np.ndarray:
        """Which samples bound for the head may lie in a block: of known series, before the
        open span (or the latest end this store compacted up to), and not of the spans a bulk
        write puts into blocks itself (before `direct`). The usual write has none."""
        now = self._clock() - self._grace_ms
        open_from = max(compaction.closed_span_end(now), self._latest_cut)
        found: np.ndarray = (ids[batch.series_index] >= 0) & (batch.ts < open_from)
        if direct is not None:
            found &= batch.ts >= direct
        return found

    async def _replacing_blocks(
        self, conn: AsyncConnection, batch: SampleBatch, ids: np.ndarray, direct: int | None
    ) -> int:
        """How many of the batch's samples (last write wins within it) will replace a block's
        sample of other float64 bits that no head row covers (a head row's replacement is
        counted by the head's write)."""
        maybe = self._may_replace_blocks(batch, ids, direct)
        if not maybe.any():
            return 0
        sids = ids[batch.series_index][maybe]
        new = last_write_wins(Rows(sids, batch.ts[maybe], batch.values[maybe]))
        blocks = await block_table.of_spans(conn, new.series, spans_of(new.ts))
        if not blocks:
            return 0
        old = decode_range(blocks, int(new.ts.min()), int(new.ts.max()))
        old = old.take(np.isin(keys(old.series, old.ts), keys(new.series, new.ts)))
        if not len(old):
            return 0
        series = sorted(set(old.series.tolist()))
        head = as_rows(await self.head.read_at(conn, series, sorted(set(old.ts.tolist()))))
        old = old.take(~np.isin(keys(old.series, old.ts), keys(head.series, head.ts)))
        now = new.take(np.isin(keys(new.series, new.ts), keys(old.series, old.ts)))
        return int((old.values.view(np.uint64) != now.values.view(np.uint64)).sum())

    async def compact(
        self, closed_before: int, guard: compaction.Guard | None = None
    ) -> compaction.Compacted:
        """Fold the head's rows of spans ending by `closed_before` into blocks, each chunk's
        transaction under `guard` (the store's write lock); the caller holds the job lock."""
        self._latest_cut = max(self._latest_cut, compaction.closed_span_end(closed_before))
        if guard is None:
            return await compaction.compact(self._engines.writer, self.head, closed_before)
        return await compaction.compact(self._engines.writer, self.head, closed_before, guard)

    # -- reads ----------------------------------------------------------------------------------

    async def read(
        self, conn: AsyncConnection, ids: Sequence[int], start_ms: int, end_ms: int, limit: int
    ) -> Points:
        ordered = sorted({int(i) for i in ids})
        parts, remaining = [], limit
        for first in range(0, len(ordered), SERIES_GROUP):
            if remaining <= 0:
                break
            group = ordered[first : first + SERIES_GROUP]
            rows = await self._read_group(conn, group, start_ms, end_ms, remaining)
            parts.append(rows.take(slice(0, remaining)))
            remaining -= len(parts[-1])
        if not parts:
            return no_points()
        return (
            np.concatenate([p.series for p in parts]),
            np.concatenate([p.ts for p in parts]),
            np.concatenate([p.values for p in parts]),
        )

    async def _read_group(
        self, conn: AsyncConnection, group: Sequence[int], lo: int, hi: int, limit: int
    ) -> Rows:
        """The first `limit` samples of these series in [lo, hi]: the head's first `limit` rows
        and the blocks up to the one that completes `limit` samples wholly inside the range
        hold every one of them (the head's rows and the blocks' samples are each sorted and of
        distinct keys)."""
        head = as_rows(await self.head.read(conn, group, lo, hi, limit))
        table = await block_table.sizes(conn, overlapping(group, lo, hi))
        if not table.size:
            return head
        inside = np.where((table[:, 2] >= lo) & (table[:, 3] <= hi), table[:, 4], 0)
        taken = int(np.searchsorted(np.cumsum(inside), limit, "left")) + 1
        table = table[:taken]
        blocks = await block_table.of_spans(conn, table[:, 0], table[:, 1])
        return read_range(blocks, head, lo, hi)

    async def read_at(
        self, conn: AsyncConnection, ids: Sequence[int], stamps: Sequence[int]
    ) -> Points:
        head = as_rows(await self.head.read_at(conn, ids, stamps))
        if not ids or not stamps:
            return as_points(head)
        wanted = np.unique(np.asarray(stamps, dtype=np.int64))
        spans = np.unique(spans_of(wanted))
        sids = np.repeat(np.unique(np.asarray(ids, dtype=np.int64)), spans.size)
        blocks = await block_table.of_spans(conn, sids, np.tile(spans, sids.size // spans.size))
        base = decode_range(blocks, int(wanted[0]), int(wanted[-1]))
        base = base.take(np.isin(base.ts, wanted))
        return as_points(overlay(base, head))

    async def has_nan(
        self, conn: AsyncConnection, ids: Sequence[int], start_ms: int, end_ms: int
    ) -> bool:
        if await self.head.has_nan(conn, ids, start_ms, end_ms):
            return True
        ordered = sorted({int(i) for i in ids})
        for first in range(0, len(ordered), SERIES_GROUP):
            where = overlapping(ordered[first : first + SERIES_GROUP], start_ms, end_ms)
            blocks = await block_table.payloads(conn, f"{where} AND nans > 0")
            found = decode_range(blocks, start_ms, end_ms)
            found = found.take(bad_nans(found.values))
            if not len(found):
                continue
            # A head row at one of these keys replaced the NaN (and is not one: checked above).
            series = sorted(set(found.series.tolist()))
            head = as_rows(await self.head.read_at(conn, series, found.ts.tolist()))
            if not _all_replaced(found, head):
                return True
        return False

    async def _points(self, conn: AsyncConnection, ids: Sequence[int], lo: int, hi: int) -> Rows:
        return as_rows(await self.read(conn, ids, lo, hi, EVERYTHING))

    # -- bucket aggregates ----------------------------------------------------------------------

    async def aggregate(
        self, conn: AsyncConnection, selection: BucketSelection, res: Resolution
    ) -> Buckets:
        rows, _ = await self._selected(conn, selection, res)
        return aggregate(rows.series, rows.ts, rows.values, res.ms)

    async def _selected(
        self, conn: AsyncConnection, selection: BucketSelection, res: Resolution
    ) -> tuple[Rows, np.ndarray]:
        """The samples of the selection (NaN included) and the selected (series, bucket) pairs
        (for a range: those with samples)."""
        if isinstance(selection, BucketRange):
            if not selection.ids:
                return no_rows(), np.empty((0, 2), dtype=np.int64)
            rows = await self._points(conn, selection.ids, selection.start_ms, selection.end_ms - 1)
            return rows, np.column_stack([rows.series, rows.ts - rows.ts % res.ms])
        if selection.ids is not None and not selection.ids:
            return no_rows(), np.empty((0, 2), dtype=np.int64)
        pairs = np.array(
            [tuple(r) for r in (await conn.execute(text(_pairs_sql(selection)))).all()],
            dtype=np.int64,
        ).reshape(-1, 2)
        if not pairs.size:
            return no_rows(), pairs
        return await self._of_pairs(conn, selection, pairs, res), pairs

    async def _of_pairs(
        self, conn: AsyncConnection, selection: MarkedBuckets, pairs: np.ndarray, res: Resolution
    ) -> Rows:
        """The samples in the marked buckets: the head's rows, then the blocks of their spans
        (in this order, as every read: a compaction committing in between moves rows from the
        head into blocks, never the other way). The head is read by each series' range of
        marked buckets (a range scan of its key), then the rows outside the pairs left out."""
        parts = [
            as_rows(await self.head.backend.fetch(conn, where, EVERYTHING))
            for where in _head_wheres(pairs, res)
        ]
        blocks = await block_table.of_spans(conn, pairs[:, 0], spans_of(pairs[:, 1]))
        return _in_pairs(parts, blocks, pairs, res)

    async def store_aggregates(
        self,
        conn: AsyncConnection,
        selection: MarkedBuckets,
        res: Resolution,
        selected: int | None = None,
    ) -> int:
        # The head's SQL first (the row layout's one statement): enough when no block holds a
        # marked bucket's span, as for live data, whose spans are open. Checked after it: a
        # write that folds head rows of a span into its block (direct bulk writes, on
        # PostgreSQL beside this transaction) commits before the check sees the block, so
        # rows the head's statement missed are never left out.
        written = await self.head.store_aggregates(conn, selection, res, selected)
        under = block_table.under_marks(selection.table, marks_where(selection))
        if (await conn.execute(text(under))).first() is None:
            return written
        rows, _ = await self._selected(conn, selection, res)
        buckets, emptied = _aggregates_of(rows, res)
        table = f"rollup_{res.name}"
        if len(buckets):
            await self._upsert_rollups(conn, table, buckets)
        if emptied:  # buckets whose samples are all NaN now aggregate to nothing: their rows go
            await conn.execute(text(_delete_bucket_sql(table)), emptied)
        return len(buckets)

    def recompute_on(
        self, db: sqlite3.Connection, claim: dialect.Claim, res: Resolution
    ) -> tuple[int, dialect.Key | None, bool]:
        """RowSampleStore.recompute_on, then the blocks of the claimed spans
        (store_aggregates_on), unless the claim was left to the async road."""
        claimed, last, folded = self.head.recompute_on(db, claim, res)
        if claimed and not folded:
            self.store_aggregates_on(db, res)
        return claimed, last, folded

    def store_aggregates_on(self, db: sqlite3.Connection, res: Resolution) -> None:
        """SQLite: after the head's statement (RowSampleStore.recompute_on), the blocks' part of
        `store_aggregates` for the claimed marks, through the sqlite3 connection on its thread
        in the caller's open transaction: the same reads and writes, without a trip through
        the event loop between them (app.storage.store: a job chunk as one call)."""
        selection = MarkedBuckets("claimed")
        if (
            db.execute(block_table.under_marks(selection.table, marks_where(selection))).fetchone()
            is None
        ):
            return
        pairs = np.array(db.execute(_pairs_sql(selection)).fetchall(), dtype=np.int64)
        pairs = pairs.reshape(-1, 2)
        if not pairs.size:
            return
        parts = [as_rows(fetch_on(db, where, EVERYTHING)) for where in _head_wheres(pairs, res)]
        blocks = block_table.of_spans_on(db, pairs[:, 0], spans_of(pairs[:, 1]))
        buckets, emptied = _aggregates_of(_in_pairs(parts, blocks, pairs, res), res)
        table = f"rollup_{res.name}"
        if len(buckets):
            db.executemany(_sqlite_upsert_sql(table), _rollup_params(buckets))
        if emptied:
            db.executemany(_delete_bucket_sql(table), emptied)

    async def _upsert_rollups(self, conn: AsyncConnection, table: str, buckets: Buckets) -> None:
        """One statement: on PostgreSQL the rows as arrays (`unnest`, one round trip and one
        statement whatever their number), on SQLite executemany on the connection's thread."""
        columns = ", ".join(ROLLUP_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in ROLLUP_COLUMNS[2:])
        upsert = f" ON CONFLICT (series_id, bucket) DO UPDATE SET {updates}"
        if isinstance(self.head.backend, PostgresRows):
            arrays = ", ".join(
                f"CAST(:{c} AS {kind}[])"
                for c, kind in zip(ROLLUP_COLUMNS, ROLLUP_TYPES, strict=True)
            )
            params = dict(zip(ROLLUP_COLUMNS, _rollup_columns(buckets), strict=True))
            sql = f"INSERT INTO {table} ({columns}) SELECT * FROM unnest({arrays}){upsert}"
            await conn.execute(text(sql), params)
            return
        await conn.execute(text(_sqlite_upsert_sql(table)), _rollup_params(buckets))

    def has_samples_in(
        self, series_id: ColumnElement[int], start_ms: int, end_ms: int
    ) -> ColumnElement[bool]:
        """The head's condition, or a block of the series overlapping [start, end] (to the
        block: like Prometheus' series API, a block spanning the range counts)."""
        b = schema.blocks.c
        in_blocks = (
            select(b.series_id)
            .where(
                b.series_id == series_id,
                b.span_start > start_ms - SPAN_MS,
                b.span_start <= end_ms,
                b.first_ts <= end_ms,
                b.last_ts >= start_ms,
            )
            .exists()
        )
        return or_(self.head.has_samples_in(series_id, start_ms, end_ms), in_blocks)

    async def hours_with_samples(
        self, conn: AsyncConnection, sids: np.ndarray, hours: np.ndarray
    ) -> np.ndarray:
        found: np.ndarray = await self.head.hours_with_samples(conn, sids, hours)
        if not sids.size:
            return found
        blocks = await block_table.of_spans(conn, sids, spans_of(hours))
        for block in blocks:
            ts, _ = decode_block(block.payload)
            pending = np.flatnonzero(~found & (sids == block.series))
            for i in pending:
                start = int(hours[i])
                a = np.searchsorted(ts, start, "left")
                found[i] = a < ts.size and ts[a] < start + 3_600_000
        return found

    # -- retention ------------------------------------------------------------------------------

    async def drop_before(
        self, conn: AsyncConnection, plan: RetentionPlan, series: Sequence[int] | None = None
    ) -> RawDrop:
        dropped = await self.head.drop_before(conn, plan, series)
        return RawDrop(dropped.rows + await drop_blocks(conn, plan, series), dropped.partitions)


PAIR = np.dtype([("s", "<i8"), ("b", "<i8")])


def _pairs_sql(selection: MarkedBuckets) -> str:
    """The (series_id, bucket) pairs of the marks selected."""
    marks = selection.table
    return f"SELECT {marks}.series_id, {marks}.bucket FROM {marks} WHERE true" + marks_where(
        selection
    )


def _head_wheres(pairs: np.ndarray, res: Resolution) -> list[str]:
    """Conditions on the head's rows covering the pairs' buckets: each series' range of marked
    buckets (a range scan of its key), RANGES_PER_READ series per condition (SQLite's
    expression depth: 1,000)."""
    ordered = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
    series, first = np.unique(ordered[:, 0], return_index=True)
    last = np.r_[first[1:], len(ordered)] - 1
    lows, highs = ordered[first, 1], ordered[last, 1] + res.ms - 1
    ranges = [
        f"(series_id = {s} AND ts >= {lo} AND ts <= {hi})"
        for s, lo, hi in zip(series.tolist(), lows.tolist(), highs.tolist(), strict=True)
    ]
    return [
        f"({' OR '.join(ranges[at : at + RANGES_PER_READ])})"
        for at in range(0, len(ranges), RANGES_PER_READ)
    ]


def _in_pairs(
    parts: Sequence[Rows], blocks: Sequence[StoredBlock], pairs: np.ndarray, res: Resolution
) -> Rows:
    """The samples in the pairs' buckets: the head's rows read (`parts`) over the blocks of
    their spans, the rows outside the pairs left out."""
    head = Rows(*(np.concatenate([getattr(p, f) for p in parts]) for f in ROWS_FIELDS))
    rows = overlay(decode_range(blocks, -EVERYTHING, EVERYTHING), head)
    found, wanted = _bucket_codes(
        res.ms, (rows.series, rows.ts - rows.ts % res.ms), (pairs[:, 0], pairs[:, 1])
    )
    return rows.take(np.isin(found, wanted))


def _aggregates_of(rows: Rows, res: Resolution) -> tuple[Buckets, list[dict[str, int]]]:
    """The buckets of `rows`, and (as parameters of _delete_bucket_sql) the pairs whose samples
    are all NaN, so aggregate to nothing."""
    buckets = aggregate(rows.series, rows.ts, rows.values, res.ms)
    held, kept = _bucket_codes(
        res.ms, (rows.series, rows.ts - rows.ts % res.ms), (buckets.sids, buckets.bucket)
    )
    emptied = _pair_keys(rows.series, rows.ts - rows.ts % res.ms)[~np.isin(held, kept)]
    emptied = np.unique(emptied) if emptied.size else emptied
    return buckets, [{"s": int(k["s"]), "b": int(k["b"])} for k in emptied]


def _delete_bucket_sql(table: str) -> str:
    return f"DELETE FROM {table} WHERE series_id = :s AND bucket = :b"


def _sqlite_upsert_sql(table: str) -> str:
    columns = ", ".join(ROLLUP_COLUMNS)
    values = ", ".join(f":{c}" for c in ROLLUP_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in ROLLUP_COLUMNS[2:])
    return (
        f"INSERT INTO {table} ({columns}) VALUES ({values})"
        f" ON CONFLICT (series_id, bucket) DO UPDATE SET {updates}"
    )


def _bucket_codes(step: int, *pairs: tuple[np.ndarray, np.ndarray]) -> list[np.ndarray]:
    """One int64 per (series, bucket) pair, the same for equal pairs across the arrays given,
    ordered as the pairs are: series * buckets spanned + bucket index (numpy sorts and
    compares these natively, where structured keys take a slow path)."""
    given = [b for _, b in pairs if b.size]
    if not given:
        return [np.empty(0, dtype=np.int64) for _ in pairs]
    lo = min(int(b.min()) for b in given)
    width = (max(int(b.max()) for b in given) - lo) // step + 1
    return [s.astype(np.int64) * width + (b - lo) // step for s, b in pairs]


def _pair_keys(series: np.ndarray, bucket: np.ndarray) -> np.ndarray:
    out = np.empty(series.size, dtype=PAIR)
    out["s"], out["b"] = series, bucket
    return out


def _all_replaced(found: Rows, head: Rows) -> bool:
    """Whether every key of `found` has a head row."""
    if len(head) < len(found):
        return False
    return bool(np.isin(_pair_keys(found.series, found.ts), _pair_keys(head.series, head.ts)).all())


def _rollup_columns(b: Buckets) -> list[list[object]]:
    columns = (b.sids, b.bucket, b.count, b.sum, b.min, b.max, b.sumsq, b.last, b.last_ts)
    return [c.tolist() for c in columns]


def _rollup_params(b: Buckets) -> list[dict[str, object]]:
    lists = _rollup_columns(b)
    return [dict(zip(ROLLUP_COLUMNS, row, strict=True)) for row in zip(*lists, strict=True)]
