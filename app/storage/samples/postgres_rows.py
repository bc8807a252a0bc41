"""PostgreSQL's side of the row tables: new rows by binary `COPY` (app.storage.pg_copy), else
through `unnest` arrays: one statement inserting what does not exist, and only if some rows did,
a second one upserting them where the stored bits differ (`float8send`: a stale marker and a
NaN differ, and -0.0 and 0.0), its row count being the overwrites; small writes of known
series on a connection kept for them (app.storage.samples.pg_small_writes); raw reads as one
binary COPY buffer that numpy reads in place. float8 keeps every bit pattern itself.

Invalidation marks: a mark that already exists is touched (row-locked), so a job that claims it
concurrently waits for the writer's commit and then sees its samples
(docs/rollups-and-retention.md#concurrent-jobs-and-writers).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.services.retention import RetentionPlan
from app.storage import maintenance, pg_copy
from app.storage.dialect import (
    COPY_MIN_ROWS,
    copy_new_rows,
    driver_errors,
    exclusive_retention_lock,
    share_retention_lock,
)
from app.storage.samples.partitions import DAY_MS, drop_partition, existing_partition_days
from app.storage.samples.pg_small_writes import SmallWrites
from app.storage.samples.protocol import Points, RawDrop
from app.storage.samples.row_sql import RowSql, delete_series_before
from app.storage.samples.sqlite_thread import ThreadWrite
from app.storage.writes import Marks, Policies

# The primary key (series_id, ts) already holds the rows in the order a raw read returns them, so
# the index scan of each day partition, merged, is the plan for it. Before autovacuum has
# analyzed freshly imported partitions, the planner estimates them at a few hundred rows and
# chooses a bitmap scan and a sort that spills to disk instead: 648 ms against 346 ms for
# 1,000,000 points. These settings last until the read's transaction ends.
ORDERED_READ_SETTINGS = "SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off"
SQL_ARRAY_TYPES = {">i4": "integer[]", ">i8": "bigint[]", ">f8": "double precision[]"}
RawRows = tuple[np.ndarray, np.ndarray, np.ndarray, Marks]
UNNEST_SAMPLES = (
    "INSERT INTO samples (series_id, ts, value) SELECT * FROM unnest(CAST(:sids AS integer[]),"
    " CAST(:ts AS bigint[]), CAST(:vals AS double precision[]))"
)
# PostgreSQL 15 gives no xmax in RETURNING from a partitioned table, the usual way to tell an
# update from an insert in one statement; hence the two. Both take their row locks in the
# order of the rows (series, ts), as the one upsert before them did.
INSERT_NEW = f"{UNNEST_SAMPLES} ON CONFLICT DO NOTHING"
OVERWRITE = (
    f"{UNNEST_SAMPLES} ON CONFLICT (series_id, ts) DO UPDATE SET value = EXCLUDED.value"
    " WHERE float8send(samples.value) IS DISTINCT FROM float8send(EXCLUDED.value)"
)


class PostgresRows(RowSql):
    name = "postgresql"
    infinity = "CAST('Infinity' AS double precision)"
    marks_join = "JOIN"
    last_in_one_pass = True
    # A write holding history takes the retention lock alone, so no write decides on the floor
    # meanwhile: it is redone on the general road with the exclusive lock.
    may_place_history_shared = False

    def __init__(self, dsn: str, connect: Mapping[str, Any]) -> None:
        self._small_writes = SmallWrites(dsn, connect)

    def counted(self, alias: str = "s") -> str:
        return f"{alias}.value <> 'NaN'::float8"

    # -- writes ---------------------------------------------------------------------------------

    def takes_known(self, rows: int) -> bool:
        """Known series below COPY's threshold go on the kept connection."""
        return rows < COPY_MIN_ROWS

    async def write_known(
        self,
        writer: AsyncEngine,
        names: Sequence[str],
        decide: Callable[[Policies], RawRows],
        elsewhere: ThreadWrite | None = None,
    ) -> int:
        """On the connection kept for small writes, in four round trips (not the pool's; five
        when a sample existed). Returns the samples that overwrote a different value. No raw
        rows go `elsewhere` on this road (RawElsewhere.on_thread is SQLite's)."""
        if elsewhere is not None:
            raise ValueError("PostgreSQL writes no raw rows elsewhere on the small-write road")

        def prepare(policy_rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
            return SmallWrites.arguments(*decide(Policies.of(policy_rows)))

        return await self._small_writes.write(names, prepare)

    async def retention_lock(self, conn: AsyncConnection, exclusive: bool) -> None:
        """Writers share the retention lock; a write holding history holds it alone."""
        if exclusive:
            await exclusive_retention_lock(conn)
        else:
            await share_retention_lock(conn)

    async def write(
        self,
        conn: AsyncConnection,
        sids: np.ndarray,
        ts: np.ndarray,
        values: np.ndarray,
        marks: Marks,
    ) -> int:
        """Upsert samples (last write wins; each (series, ts) at most once), then their marks,
        in the order the kept connection's statement takes its row locks (samples, 1m, 5m,
        1h): two processes writing the same rows, one on each road, would otherwise deadlock.
        Returns the samples that replaced a different value."""
        overwritten = await self._upsert_samples(conn, sids, ts, values)
        for resolution, mark_sids, buckets in marks:
            await self._mark_dirty(conn, resolution, mark_sids, buckets)
        return overwritten

    async def _upsert_samples(
        self, conn: AsyncConnection, sids: np.ndarray, ts: np.ndarray, values: np.ndarray
    ) -> int:
        if sids.size == 0:
            return 0
        if await copy_new_rows(conn, "samples", pg_copy.SAMPLE_COLUMNS, sids, ts, values):
            return 0
        params = {"sids": sids.tolist(), "ts": ts.tolist(), "vals": values.tolist()}
        inserted = (await conn.execute(text(INSERT_NEW), params)).rowcount
        if inserted == sids.size:
            return 0
        return int((await conn.execute(text(OVERWRITE), params)).rowcount or 0)

    async def _mark_dirty(
        self, conn: AsyncConnection, resolution: str, sids: np.ndarray, buckets: np.ndarray
    ) -> None:
        """Pairs are unique and sorted. New marks go by COPY; a mark that exists is touched."""
        if sids.size == 0:
            return
        table = f"rollup_dirty_{resolution}"
        if await copy_new_rows(conn, table, pg_copy.MARK_COLUMNS, sids, buckets):
            return
        await conn.execute(
            text(
                f"INSERT INTO {table} (series_id, bucket) SELECT * FROM unnest("
                "CAST(:sids AS integer[]), CAST(:buckets AS bigint[]))"
                " ON CONFLICT (series_id, bucket) DO UPDATE SET bucket = EXCLUDED.bucket"
            ),
            {"sids": sids.tolist(), "buckets": buckets.tolist()},
        )

    async def insert_new_rows(
        self,
        conn: AsyncConnection,
        table: str,
        layout: Sequence[tuple[str, str]],
        arrays: Sequence[np.ndarray],
    ) -> int:
        """Insert rows given as columns, skipping any that exist (COPY from 1,000 rows, else one
        `unnest` statement); returns how many were inserted."""
        if await copy_new_rows(conn, table, layout, *arrays):
            return int(arrays[0].size)
        names = ", ".join(name for name, _ in layout)
        sources = ", ".join(
            f"CAST(:c{i} AS {SQL_ARRAY_TYPES[kind]})" for i, (_, kind) in enumerate(layout)
        )
        result = await conn.execute(
            text(
                f"INSERT INTO {table} ({names}) SELECT * FROM unnest({sources})"
                " ON CONFLICT DO NOTHING"
            ),
            {f"c{i}": column.tolist() for i, column in enumerate(arrays)},
        )
        return int(result.rowcount or 0)

    async def fetch_small(self, conn: AsyncConnection, sql: str) -> list[tuple[Any, ...]]:
        driver = await _driver(conn)
        with driver_errors(sql):
            return [tuple(row) for row in await driver.fetch(sql)]

    # -- reads ----------------------------------------------------------------------------------

    async def fetch(self, conn: AsyncConnection, where: str, limit: int) -> Points:
        sql = f"SELECT series_id, ts, value FROM samples WHERE {where} ORDER BY series_id, ts"
        raw = await _driver(conn)
        chunks: list[bytes] = []

        async def keep(chunk: bytes) -> None:
            chunks.append(chunk)

        with driver_errors(sql):
            if raw.is_in_transaction():
                await raw.execute(ORDERED_READ_SETTINGS)
            await raw.copy_from_query(f"{sql} LIMIT {int(limit)}", output=keep, format="binary")
        rows = pg_copy.decode(b"".join(chunks), pg_copy.SAMPLE_COLUMNS)
        return (
            rows["value0"].astype(np.int64),
            rows["value1"].astype(np.int64),
            rows["value2"].astype(np.float64),
        )

    async def fetch_at(self, conn: AsyncConnection, where: str) -> np.ndarray:
        """Rows (series_id, ts, value) as a float array, in no particular order."""
        rows = await self.fetch_small(
            conn, f"SELECT series_id, ts, value FROM samples WHERE {where}"
        )
        return np.array(rows, dtype=np.float64).reshape(-1, 3)

    def nan_probe(self, where: str) -> str:
        """A statement with a row if a NaN other than the stale marker matches `where`."""
        return (
            f"SELECT 1 FROM samples WHERE {where} AND value = 'NaN'::float8"
            " AND float8send(value) <> '\\x7ff0000000000002'::bytea LIMIT 1"
        )

    async def rows_written(self, conn: AsyncConnection, result: Any) -> int:
        return int(result.rowcount or 0)

    # -- retention ------------------------------------------------------------------------------

    async def drop_raw(
        self, conn: AsyncConnection, plan: RetentionPlan, series: Sequence[int] | None = None
    ) -> RawDrop:
        """Whole day partitions that every metric's policy lets go; overrides shorter than that
        are row deletes within the remaining partitions (docs/rollups-and-retention.md). The
        raw horizons move with them. With `series`: only the row deletes of these series, in
        the partitions that stay, and no horizon moves."""
        cutoffs = plan.raw_cutoffs
        floor = min(cutoffs.values())
        later = row_delete_cutoffs(plan)
        if series is not None:
            kept_from = floor // DAY_MS * DAY_MS  # earlier rows go with their partitions
            rows = await delete_series_before(conn, series, later, kept_from) if later else 0
            return RawDrop(rows, 0)
        rows = partitions = 0
        for day in await existing_partition_days(conn):
            if (day + 1) * DAY_MS <= floor:
                rows += await drop_partition(conn, day)
                partitions += 1
                await maintenance.record_horizons(conn, {"*": (day + 1) * DAY_MS})
        for metric, cut in later.items():
            of_metric = maintenance.series_of(metric)
            result = await conn.execute(
                text(f"DELETE FROM samples WHERE ts < :cut AND series_id IN {of_metric}"),
                {"cut": cut},
            )
            rows += int(result.rowcount or 0)
            await maintenance.record_horizons(conn, {metric: cut})
        return RawDrop(rows, partitions)

    async def writer_read_only(self) -> bool | None:
        return await self._small_writes.ping()

    async def close(self) -> None:
        await self._small_writes.close()


def row_delete_cutoffs(plan: RetentionPlan) -> dict[str, int]:
    """The metrics whose raw samples a retention run deletes row by row (overrides shorter than
    the longest raw retention in effect), with their cut-offs: the horizons those deletes set."""
    cutoffs = plan.raw_cutoffs
    floor = min(cutoffs.values())
    return {m: cutoffs[m] for m in sorted(plan.overridden) if cutoffs[m] > floor}


async def _driver(conn: AsyncConnection) -> Any:
    """asyncpg's connection under a SQLAlchemy connection."""
    return (await conn.get_raw_connection()).driver_connection
