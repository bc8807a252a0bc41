"""The row tables as a sample store: one row per sample in `samples` (primary key (series_id,
ts); day partitions on PostgreSQL), the marks in `rollup_dirty_<res>`.

One write transaction, travelling one of two roads chosen by the backend when the store opens:
known series (every id in the store's cache, no history) go by the backend's short road (SQLite:
the whole transaction as one call on aiosqlite's thread; PostgreSQL below 1,000 rows: the
connection kept for small writes); anything else by the general road through the writer engine,
where series are resolved and history placed (app.storage.samples.history). Both make the same
decision (`_plan`: floors and kinds; `Rows.of`: the rows, de-duplicated; `_raw`: the raw rows,
their marks and the partitions they need) in the same order of statements. A batch found
to hold history on a road that cannot place it is redone on the general road holding the
retention lock alone; one that needs day partitions not made sure of yet is redone after
creating them.

Overwrites are counted by the backend's raw write without a cost where nothing exists yet: the
rows are first inserted skipping those that exist, and only when fewer went in than were sent
are the rest upserted where their bits differ (`AppendResult.overwritten`).

Nothing here asks which backend it runs on: what differs is in `SqliteRows` and `PostgresRows`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import numpy as np
from sqlalchemy import ColumnElement, literal, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.config import Settings
from app.model import SampleBatch
from app.services.retention import HISTORY, RAW, RetentionPlan, metric_floors
from app.services.rollup import Buckets, Resolution
from app.storage import dialect, maintenance, rollup_blocks, schema
from app.storage.engine import Engines, asyncpg_dsn, postgres_connect_args
from app.storage.samples import history, sqlite_thread
from app.storage.samples.partitions import Partitions
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
from app.storage.samples.row_sql import buckets_of, id_list
from app.storage.samples.sqlite_rows import SqliteRows
from app.storage.samples.sqlite_thread import ThreadWrite
from app.storage.writes import (
    AppendResult,
    Marks,
    NeedsExclusive,
    NeedsPartitions,
    Policies,
    Rows,
    WritePlan,
    metrics_of,
    plan_write,
    policy_names,
)

WRITE_ATTEMPTS = 4
ID_CHUNK = 1000
STAMP_CHUNK = 1000
ROLLUP_COLUMNS = "series_id, bucket, count, sum, min, max, sumsq, last, last_ts"
UPSERT_SET = ", ".join(
    f"{c} = excluded.{c}" for c in ("count", "sum", "min", "max", "sumsq", "last", "last_ts")
)
RawRows = tuple[np.ndarray, np.ndarray, np.ndarray, Marks]


class RawElsewhere(Protocol):
    """Where a layout keeping raw samples outside the head too (the block layout) writes some
    raw rows of a write itself, in the write's transaction: `takes` says whether a batch may
    have such rows (it then goes by the general road), `write` writes those of the raw rows
    it takes (sorted by (series, ts), one value each; their marks are the head's) and returns
    which rows are left for the head and how many it wrote over other stored bits;
    `on_thread`, where it can, the same write as a function of the sqlite3 connection, so a
    write of known series keeps its one call on the writer's thread."""

    def takes(self, batch: SampleBatch) -> bool: ...

    def on_thread(self) -> ThreadWrite | None: ...

    async def write(
        self, conn: AsyncConnection, sids: np.ndarray, ts: np.ndarray, values: np.ndarray
    ) -> tuple[np.ndarray, int]: ...


def open_backend(settings: Settings, engines: Engines) -> SqliteRows | PostgresRows:
    """The backend's side, chosen once; on SQLite the driver is checked for what it needs."""
    if engines.backend != "postgresql":
        sqlite_thread.check()
        return SqliteRows()
    return PostgresRows(
        asyncpg_dsn(settings.database_url),
        postgres_connect_args(
            settings,
            name="metrics-service-ingest",
            read_timeout=settings.db_write_timeout.total_seconds(),
        ),
    )


class RowSampleStore:
    def __init__(
        self,
        settings: Settings,
        engines: Engines,
        clock: Callable[[], int],
        defaults: Mapping[str, int],
        grace_ms: int,
    ) -> None:
        self._engines = engines
        self._clock = clock  # what "now" is for retention floors
        self._defaults = defaults
        self._grace_ms = grace_ms
        self.backend = open_backend(settings, engines)
        # Which hours raw samples back, for history placement: the row tables' own answer unless
        # a layout that keeps raw samples elsewhere too (the block layout) gives its own.
        self.hours_backed: history.RawBacked | None = None
        # Raw rows the block layout writes into blocks itself (bulk writes of closed spans).
        self.raw_elsewhere: RawElsewhere | None = None
        self._partitions = Partitions(
            isinstance(self.backend, PostgresRows),
            lambda: metric_floors(self._clock(), defaults, None, None, grace_ms).raw,
        )

    async def close(self) -> None:
        await self.backend.close()

    async def writer_read_only(self) -> bool | None:
        return await self.backend.writer_read_only()

    # -- writes ---------------------------------------------------------------------------------

    async def append(
        self, batch: SampleBatch, ids: np.ndarray, missing: list[int], resolve: SeriesResolver
    ) -> AppendResult:
        if len(batch) == 0:
            return AppendResult()
        exclusive = False
        for _ in range(WRITE_ATTEMPTS):
            try:
                return await self._append_once(batch, ids, missing, resolve, exclusive)
            except NeedsExclusive:
                exclusive = True
            except NeedsPartitions as needed:
                await self._partitions.create(self._engines.writer, needed.days)
        raise RuntimeError("the write kept finding day partitions missing; retry it")

    async def _append_once(
        self,
        batch: SampleBatch,
        ids: np.ndarray,
        missing: list[int],
        resolve: SeriesResolver,
        exclusive: bool,
    ) -> AppendResult:
        if missing:  # a rolled-back attempt may have filled some in
            ids[missing] = -1
        await self._partitions.ensure(self._engines.writer, batch)
        names = policy_names(metrics_of(batch))
        elsewhere = self.raw_elsewhere is not None and self.raw_elsewhere.takes(batch)
        on_thread = self.raw_elsewhere.on_thread() if self.raw_elsewhere and elsewhere else None
        known = not missing and not exclusive and self.backend.takes_known(len(batch))
        if known and (not elsewhere or on_thread is not None):
            return await self._append_known(batch, ids, names, on_thread)
        async with self._engines.writer.begin() as conn:
            await self.backend.retention_lock(conn, exclusive)
            policies = await maintenance.read_policies(conn, names)
            plan = self._plan(batch, policies, exclusive or self.backend.may_place_history_shared)
            rejected = await resolve(conn, ids, missing) if missing else {}
            rows = Rows.of(batch, ids, plan.kinds)
            overwritten = await self._write_rows(conn, batch, rows, plan)
        self._partitions.learn(plan)
        return rows.result(plan.kinds, rejected, overwritten)

    async def _append_known(
        self,
        batch: SampleBatch,
        ids: np.ndarray,
        names: Sequence[str],
        elsewhere: ThreadWrite | None = None,
    ) -> AppendResult:
        """Every series known: the short road, without series resolution or history (and the
        raw rows some go `elsewhere` on the same call, SQLite)."""
        done: list[tuple[WritePlan, AppendResult]] = []

        def decide(policies: Policies) -> RawRows:
            plan = self._plan(batch, policies, may_place_history=False)
            rows = Rows.of(batch, ids, plan.kinds)
            raw = self._raw(rows.take(rows.kinds == RAW))
            done.append((plan, rows.result(plan.kinds, {})))
            return raw

        overwritten = await self.backend.write_known(self._engines.writer, names, decide, elsewhere)
        plan, result = done[-1]
        self._partitions.learn(plan)
        result.overwritten = overwritten
        return result

    def _plan(self, batch: SampleBatch, policies: Policies, may_place_history: bool) -> WritePlan:
        """Each sample's kind by its metric's floors; NeedsExclusive if history must wait for
        the general road holding the retention lock alone."""
        plan = plan_write(batch, policies, self._clock(), self._defaults, self._grace_ms)
        if plan.has_history and not may_place_history:
            raise NeedsExclusive
        return plan

    def _raw(self, raw: Rows) -> RawRows:
        """The raw rows to write and their marks; NeedsPartitions if a day partition they need
        is not made sure of."""
        self._partitions.check(raw.ts)
        return raw.sids, raw.ts, raw.values, raw.marks()

    async def _write_rows(
        self, conn: AsyncConnection, batch: SampleBatch, rows: Rows, plan: WritePlan
    ) -> int:
        """Raw rows with their marks; history placed (app.storage.samples.history) and its
        metrics' raw horizons moved to the floor it was placed behind. Returns the raw rows
        that overwrote a different value."""
        to_raw = rows.kinds == RAW
        placement = None
        if plan.has_history:
            placement = await history.place(
                conn, self.backend, rows, plan, batch.keys, self.hours_backed
            )
            to_raw |= placement.to_raw
        sids, ts, values, marks = self._raw(rows.take(to_raw))
        if self.raw_elsewhere is not None:
            head, overwritten = await self.raw_elsewhere.write(conn, sids, ts, values)
            sids, ts, values = sids[head], ts[head], values[head]
        else:
            overwritten = 0
        overwritten += await self.backend.write(conn, sids, ts, values, marks)
        if placement is None:
            return overwritten
        if not await history.write_merged(conn, self.backend, placement.merged):
            # A bucket filled since it was checked: say which, and roll back.
            await history.place(conn, self.backend, rows, plan, batch.keys, self.hours_backed)
            raise RuntimeError("a rollup row appeared during the write; retry it")
        merged_keys = np.unique(rows.keys[rows.kinds == HISTORY])
        metrics = {batch.keys[int(k)].metric for k in merged_keys}
        await maintenance.record_horizons(conn, {m: plan.floors[m].raw for m in metrics})
        return overwritten

    # -- reads ----------------------------------------------------------------------------------

    async def read(
        self, conn: AsyncConnection, ids: Sequence[int], start_ms: int, end_ms: int, limit: int
    ) -> Points:
        if not ids:
            return no_points()
        where = f"series_id IN ({id_list(ids)}) AND ts >= {int(start_ms)} AND ts <= {int(end_ms)}"
        return await self.backend.fetch(conn, where, limit)

    async def read_at(
        self, conn: AsyncConnection, ids: Sequence[int], stamps: Sequence[int]
    ) -> Points:
        parts = []
        for first in range(0, len(ids), ID_CHUNK):
            for start in range(0, len(stamps), STAMP_CHUNK):
                where = (
                    f"series_id IN ({id_list(ids[first : first + ID_CHUNK])})"
                    f" AND ts IN ({id_list(stamps[start : start + STAMP_CHUNK])})"
                )
                parts.append(await self.backend.fetch_at(conn, where))
        table = np.concatenate(parts) if parts else np.empty((0, 3))
        if not table.size:
            return no_points()
        table = table[np.lexsort((table[:, 1], table[:, 0]))]
        return table[:, 0].astype(np.int64), table[:, 1].astype(np.int64), table[:, 2].copy()

    async def has_nan(
        self, conn: AsyncConnection, ids: Sequence[int], start_ms: int, end_ms: int
    ) -> bool:
        for first in range(0, len(ids), ID_CHUNK):
            where = (
                f"series_id IN ({id_list(ids[first : first + ID_CHUNK])})"
                f" AND ts >= {int(start_ms)} AND ts <= {int(end_ms)}"
            )
            if (await conn.execute(text(self.backend.nan_probe(where)))).first() is not None:
                return True
        return False

    async def aggregate(
        self, conn: AsyncConnection, selection: BucketSelection, res: Resolution
    ) -> Buckets:
        if isinstance(selection, BucketRange) and not selection.ids:
            return buckets_of([])
        if isinstance(selection, MarkedBuckets) and selection.ids is not None and not selection.ids:
            return buckets_of([])
        sql = self.backend.selection_rows(selection, res.ms)
        return buckets_of((await conn.execute(text(sql))).all())

    async def store_aggregates(
        self,
        conn: AsyncConnection,
        selection: MarkedBuckets,
        res: Resolution,
        selected: int | None = None,
    ) -> int:
        table, upsert = self._aggregates_upsert(selection, res)
        result = await conn.execute(text(upsert))
        written = await self.backend.rows_written(conn, result)
        if selected is None or written < selected:  # else every selected bucket has a row
            await conn.execute(text(self.backend.emptied_buckets(selection, table, res.ms)))
        return written

    def _aggregates_upsert(self, selection: MarkedBuckets, res: Resolution) -> tuple[str, str]:
        table = f"rollup_{res.name}"
        into = f"INSERT INTO {table} ({ROLLUP_COLUMNS}) "
        statement = self.backend.selection_rows(selection, res.ms, into)
        return table, f"{statement} ON CONFLICT (series_id, bucket) DO UPDATE SET {UPSERT_SET}"

    def recompute_on(
        self, db: sqlite3.Connection, claim: dialect.Claim, res: Resolution
    ) -> tuple[int, dialect.Key | None, bool]:
        """SQLite: `maintenance.recompute` of a claim through the sqlite3 connection itself, on
        its thread, in the caller's open transaction: the claim, then `store_aggregates`, with
        the same statements, and no trip through the event loop between them. Returns how
        many were claimed, the last one, and whether a claimed bucket lies in a folded rollup
        day: then nothing is recomputed, the claim (the temp table `claimed`) is left for the
        async road (rollup_blocks.unpack_claimed, then store_aggregates)."""
        claimed, last = dialect.sqlite_claim_on(db, claim)
        if not claimed:
            return 0, last, False
        if rollup_blocks.claimed_folded_on(db, res):
            return claimed, last, True
        table, upsert = self._aggregates_upsert(MarkedBuckets("claimed"), res)
        db.execute(upsert)
        written = int(db.execute("SELECT changes()").fetchone()[0])  # no rowcount for WITH
        if written < claimed:
            db.execute(self.backend.emptied_buckets(MarkedBuckets("claimed"), table, res.ms))
        return claimed, last, False

    def has_samples_in(
        self, series_id: ColumnElement[int], start_ms: int, end_ms: int
    ) -> ColumnElement[bool]:
        x = schema.samples.c
        return (
            select(literal(1))
            .where(x.series_id == series_id, x.ts >= start_ms, x.ts <= end_ms)
            .exists()
        )

    async def hours_with_samples(
        self, conn: AsyncConnection, sids: np.ndarray, hours: np.ndarray
    ) -> np.ndarray:
        return await history.raw_backed(conn, self.backend, sids, hours)

    # -- retention ------------------------------------------------------------------------------

    async def drop_before(
        self, conn: AsyncConnection, plan: RetentionPlan, series: Sequence[int] | None = None
    ) -> RawDrop:
        dropped = await self.backend.drop_raw(conn, plan, series)
        if dropped.partitions:
            self._partitions.forget()
        return dropped
