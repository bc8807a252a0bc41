"""SQLite's side of the row tables: statements sent as one function on aiosqlite's thread
(app.storage.samples.sqlite_thread), bulk rows many to a statement (not executemany), and exact
values kept apart as bits (app.storage.exact_values).

- A write of known series is one BEGIN IMMEDIATE ... COMMIT on the thread: the policy read, the
  decision, the sample and mark inserts. A group of 16 samples took 1.2 ms instead of 3.1 ms.
- The general write sends its samples and marks in one call inside SQLAlchemy's transaction.
- A raw read goes from the cursor straight into one numpy array on the thread.
"""

from __future__ import annotations

import functools
import itertools
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.services.retention import RetentionPlan
from app.storage import exact_values, maintenance
from app.storage.dialect import driver_errors
from app.storage.samples.protocol import Points, RawDrop
from app.storage.samples.row_sql import RowSql, delete_series_before
from app.storage.samples.sqlite_thread import SqliteThread, ThreadWrite
from app.storage.writes import Marks, Policies

# A raw write inserts its rows skipping those that exist; only if fewer went in than were sent
# does it upsert them all again, replacing (and counting) those whose exact value differs. A
# write of new rows costs what it did (one statement per MAX_STATEMENT_ROWS); the same value
# again changes nothing. `{rows}`: the VALUES rows of one statement (`multi_row`).
SQLITE_INSERT = "INSERT INTO samples (series_id, ts, value) VALUES {rows} ON CONFLICT DO NOTHING"
SQLITE_UPSERT = (
    "INSERT INTO samples (series_id, ts, value) VALUES {rows}"
    " ON CONFLICT (series_id, ts) DO UPDATE SET value = excluded.value, bits = NULL"
    " WHERE samples.value IS NOT excluded.value OR samples.bits IS NOT NULL"
)
# NaN and -0.0: 0.0 in `value`, the exact bits beside it (app.storage.exact_values). A plain
# value has NULL bits and is compared by `value`, where distinct doubles are distinct.
SQLITE_INSERT_BITS = (
    "INSERT INTO samples (series_id, ts, value, bits) VALUES {rows} ON CONFLICT DO NOTHING"
)
SQLITE_UPSERT_BITS = (
    "INSERT INTO samples (series_id, ts, value, bits) VALUES {rows}"
    " ON CONFLICT (series_id, ts) DO UPDATE SET value = 0.0, bits = excluded.bits"
    " WHERE samples.bits IS NOT excluded.bits"
)
SQLITE_MARK = (
    "INSERT INTO rollup_dirty_{resolution} (series_id, bucket) VALUES {rows} ON CONFLICT DO NOTHING"
)
# Rows go many to a statement, not one per `executemany` step: sqlite3 lets go of the GIL around
# every step, and while the event loop is busy each step then waits up to the interpreter's
# switch interval (5 ms) to get it back. A 10,000-row executemany that takes 11 ms on a quiet
# process took 216-585 ms beside a busy thread (holding the one writer all that time); as three
# statements of up to 4,096 rows, 33-50 ms. A statement holds a power of two of rows, the last
# ones repeated to fill it (a repeat is a no-op: it conflicts with the row just written, and an
# upsert finds the same value), so a connection prepares at most 13 texts per statement and
# keeps them in its statement cache: a 4,096-row text takes 9 ms to prepare the first time.
MAX_STATEMENT_ROWS = 4096
STALE_BITS = 0x7FF0000000000002
BITS_OF = (
    "SELECT series_id, ts, bits FROM samples INDEXED BY ix_samples_bits WHERE bits IS NOT NULL"
)
# The raw rows of a write and their marks: sids, ts, values, marks.
RawRows = tuple[np.ndarray, np.ndarray, np.ndarray, Marks]


def write_rows(
    db: sqlite3.Connection, sids: np.ndarray, ts: np.ndarray, values: np.ndarray, marks: Marks
) -> int:
    """Upsert samples and their marks through the sqlite3 connection itself (its own thread);
    returns how many replaced a stored sample of a different value."""
    overwritten = 0
    apart = exact_values.kept_apart(values)
    if apart.any():
        bits = exact_values.as_bits(values[apart])
        columns = (sids[apart], ts[apart], np.zeros(bits.size), bits)  # value 0.0 beside the bits
        overwritten += _upsert(db, SQLITE_INSERT_BITS, SQLITE_UPSERT_BITS, columns)
        sids, ts, values = sids[~apart], ts[~apart], values[~apart]
    overwritten += _upsert(db, SQLITE_INSERT, SQLITE_UPSERT, (sids, ts, values))
    for resolution, mark_sids, buckets in marks:
        insert_rows(db, SQLITE_MARK.replace("{resolution}", resolution), (mark_sids, buckets))
    return overwritten


def _upsert(
    db: sqlite3.Connection, insert: str, upsert: str, columns: tuple[np.ndarray, ...]
) -> int:
    """Rows inserted where none exists; if some did, all upserted again where the stored value
    differs. Returns the rows replaced (no trigger on `samples`: total_changes counts rows)."""
    sent = int(columns[0].size)
    if not sent:
        return 0
    if insert_rows(db, insert, columns) == sent:
        return 0
    return insert_rows(db, upsert, columns)


def insert_rows(db: sqlite3.Connection, template: str, columns: Sequence[np.ndarray]) -> int:
    """Run `template` (an INSERT with `{rows}` where its VALUES rows go) over rows given as
    columns, MAX_STATEMENT_ROWS at most per statement; returns total_changes' count."""
    before = db.total_changes
    count = int(columns[0].size)
    for start in range(0, count, MAX_STATEMENT_ROWS):
        part = [column[start : start + MAX_STATEMENT_ROWS] for column in columns]
        sql, params = multi_row(template, part)
        db.execute(sql, params)
    return db.total_changes - before


def multi_row(template: str, columns: Sequence[np.ndarray]) -> tuple[str, list[Any]]:
    """One statement of `template` over these rows, padded to a power of two by repeating the
    last row, and its parameters, row by row."""
    rows = int(columns[0].size)
    size = 1 << (rows - 1).bit_length()
    width = len(columns)
    params: list[Any] = [None] * (size * width)
    for i, column in enumerate(columns):
        values = column.tolist()
        params[i : rows * width : width] = values
        if size > rows:
            params[rows * width + i :: width] = [values[-1]] * (size - rows)
    return template.replace("{rows}", _placeholders(size, width)), params


@functools.lru_cache(maxsize=64)
def _placeholders(rows: int, width: int) -> str:
    one = "(" + ", ".join("?" * width) + ")"
    return ", ".join([one] * rows)


def _fetch_sql(where: str) -> str:
    return f"SELECT series_id, ts, value FROM samples WHERE {where} ORDER BY series_id, ts"


def fetch_on(db: sqlite3.Connection, where: str, limit: int) -> Points:
    """`SqliteRows.fetch` on the connection's thread: straight from the cursor into one array,
    no list of row tuples, and the event loop is not the one converting them. Milliseconds and
    series ids are exact in a double (below 2**53). Then the exact bits of the few NaN and -0.0
    values, through their partial index (the planner needs telling before ANALYZE)."""
    rows = db.execute(f"{_fetch_sql(where)} LIMIT {int(limit)}")
    table = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.float64).reshape(-1, 3)
    apart = db.execute(f"{BITS_OF} AND {where}").fetchall()
    sids, stamps = table[:, 0].astype(np.int64), table[:, 1].astype(np.int64)
    values = table[:, 2].copy()
    exact_values.put_back(sids, stamps, values, apart)
    return sids, stamps, values


class SqliteRows(RowSql):
    name = "sqlite"
    may_place_history_shared = True  # the write lock excludes retention already
    writers_exclude_each_other = True  # BEGIN IMMEDIATE (app.storage.engine)

    def counted(self, alias: str = "s") -> str:
        return f"({alias}.bits IS NULL OR {alias}.bits = {exact_values.NEG_ZERO_BITS})"

    # -- writes ---------------------------------------------------------------------------------

    def takes_known(self, rows: int) -> bool:
        """Whether a write of known series of this size takes the one-call road."""
        return True

    async def write_known(
        self,
        writer: AsyncEngine,
        names: Sequence[str],
        decide: Callable[[Policies], RawRows],
        elsewhere: ThreadWrite | None = None,
    ) -> int:
        """The whole transaction of a write of known series in one call on the writer
        connection's thread, the raw rows `elsewhere` takes (the block layout's closed spans)
        included; returns the samples that overwrote a different value."""
        statement, params = maintenance.sqlite_policy_query(names)

        def write(db: sqlite3.Connection) -> int:
            sids, ts, values, marks = decide(Policies.of(db.execute(statement, params)))
            overwritten = 0
            if elsewhere is not None:
                head, overwritten = elsewhere(db, sids, ts, values)
                sids, ts, values = sids[head], ts[head], values[head]
            return overwritten + write_rows(db, sids, ts, values, marks)

        async with writer.connect() as conn:
            thread = await SqliteThread.of(conn)
            with driver_errors("BEGIN IMMEDIATE"):
                return await thread.transaction(write)

    async def retention_lock(self, conn: AsyncConnection, exclusive: bool) -> None:
        """Nothing: the write lock already excludes a retention run."""

    async def write(
        self,
        conn: AsyncConnection,
        sids: np.ndarray,
        ts: np.ndarray,
        values: np.ndarray,
        marks: Marks,
    ) -> int:
        """Samples and marks inside the open transaction, in one call on the thread; returns
        the samples that overwrote a different value."""
        thread = await SqliteThread.of(conn)
        with driver_errors(SQLITE_INSERT):
            return await thread.run(lambda db: write_rows(db, sids, ts, values, marks))

    async def insert_new_rows(
        self,
        conn: AsyncConnection,
        table: str,
        layout: Sequence[tuple[str, str]],
        arrays: Sequence[np.ndarray],
    ) -> int:
        """Insert rows given as columns (inside the open transaction), skipping any that exist;
        returns how many were inserted."""
        names = ", ".join(name for name, _ in layout)
        template = f"INSERT INTO {table} ({names}) VALUES {{rows}} ON CONFLICT DO NOTHING"
        thread = await SqliteThread.of(conn)
        with driver_errors(template):
            return await thread.run(lambda db: insert_rows(db, template, arrays))

    async def fetch_small(self, conn: AsyncConnection, sql: str) -> list[tuple[Any, ...]]:
        thread = await SqliteThread.of(conn)
        with driver_errors(sql):
            return await thread.fetch_all(sql)

    # -- reads ----------------------------------------------------------------------------------

    async def fetch(self, conn: AsyncConnection, where: str, limit: int) -> Points:
        thread = await SqliteThread.of(conn)
        with driver_errors(_fetch_sql(where)):
            return await thread.run(lambda db: fetch_on(db, where, limit))

    async def fetch_at(self, conn: AsyncConnection, where: str) -> np.ndarray:
        """Rows (series_id, ts, value) as a float array, sorted, exact values put back."""
        rows = await self.fetch_small(
            conn, f"SELECT series_id, ts, value FROM samples WHERE {where}"
        )
        table = np.array(rows, dtype=np.float64).reshape(-1, 3)
        if not table.size:
            return table
        apart = await self.fetch_small(conn, f"{BITS_OF} AND {where}")
        table = table[np.lexsort((table[:, 1], table[:, 0]))]
        values = table[:, 2].copy()
        sids, ts = table[:, 0].astype(np.int64), table[:, 1].astype(np.int64)
        exact_values.put_back(sids, ts, values, apart)
        table[:, 2] = values
        return table

    def nan_probe(self, where: str) -> str:
        """A statement with a row if a NaN other than the stale marker matches `where`: through
        the partial index of the values kept apart."""
        return (
            f"SELECT 1 FROM samples INDEXED BY ix_samples_bits WHERE bits IS NOT NULL"
            f" AND {where} AND bits NOT IN ({exact_values.NEG_ZERO_BITS}, {STALE_BITS}) LIMIT 1"
        )

    async def rows_written(self, conn: AsyncConnection, result: Any) -> int:
        """Rows the last INSERT wrote: SQLite's driver gives no rowcount for a statement that
        starts with WITH; changes() has it."""
        return int((await conn.execute(text("SELECT changes()"))).scalar_one())

    # -- retention ------------------------------------------------------------------------------

    async def drop_raw(
        self, conn: AsyncConnection, plan: RetentionPlan, series: Sequence[int] | None = None
    ) -> RawDrop:
        """Row deletes, per metric's own cut-off; each metric's raw horizon moves to it (with
        `series`: only these series' rows, no horizon moves). The deletes go series by series
        through the primary key, so a run's last call, after its chunks, finds little to read."""
        if series is not None:
            return RawDrop(await delete_series_before(conn, series, plan.raw_cutoffs), 0)
        rows = 0
        for cut, of_metrics in maintenance.metric_groups(plan):
            result = await conn.execute(
                text(f"DELETE FROM samples WHERE series_id IN {of_metrics} AND ts < :cut"),
                {"cut": cut},
            )
            rows += int(result.rowcount or 0)
        await maintenance.record_horizons(conn, await maintenance.metric_cutoffs(conn, plan))
        return RawDrop(rows, 0)

    async def writer_read_only(self) -> bool | None:
        return None

    async def close(self) -> None:
        """Nothing of its own to close."""
