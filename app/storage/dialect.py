"""What differs between SQLite and PostgreSQL, in one place.

- Bulk upserts: SQLite takes executemany on the connection's own thread; PostgreSQL takes new rows
  by binary `COPY` (app.storage.pg_copy) and overwrites through `unnest` arrays, one statement per
  batch. Small writes of known series on PostgreSQL: app.storage.pg_small_writes.
- Invalidation marks: on PostgreSQL a mark that already exists is touched (row-locked), so a job
  that claims it concurrently waits for the writer's commit and then sees its samples
  (docs/rollups-and-retention.md).
- Samples on PostgreSQL live in day partitions created on demand.
- Exact values: SQLite keeps NaN and -0.0 as bits beside the value (app.storage.exact_values);
  PostgreSQL's float8 keeps them itself. `counted` and the sum terms are the rollups' view.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
import numpy as np
from sqlalchemy import ColumnElement, func, text, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.services.rollup import SQUARE_FLOOR, SQUARE_LIMIT, SUM_LIMIT
from app.storage import exact_values, pg_copy, schema

DAY_MS = 86_400_000
PARTITION_LOCK_KEY = 7_263_002
SERIES_LOCK_KEY = 7_263_003
T = TypeVar("T")


def is_postgres(conn: AsyncConnection) -> bool:
    return conn.dialect.name == "postgresql"


SQLITE_UPSERT = (
    "INSERT INTO samples (series_id, ts, value) VALUES (?, ?, ?)"
    " ON CONFLICT (series_id, ts) DO UPDATE SET value = excluded.value, bits = NULL"
)
# NaN and -0.0: 0.0 in `value`, the exact bits beside it (app.storage.exact_values).
SQLITE_UPSERT_BITS = (
    "INSERT INTO samples (series_id, ts, value, bits) VALUES (?, ?, 0.0, ?)"
    " ON CONFLICT (series_id, ts) DO UPDATE SET value = 0.0, bits = excluded.bits"
)


async def write_samples(
    conn: AsyncConnection,
    sids: np.ndarray,
    ts: np.ndarray,
    values: np.ndarray,
    marks: Sequence[tuple[str, np.ndarray, np.ndarray]],
) -> None:
    """Upsert samples and record their invalidation marks `(resolution, series, bucket)`."""
    if not is_postgres(conn):
        # All the statements in one call on aiosqlite's thread, inside the open transaction:
        # through SQLAlchemy each small statement costs several round trips to that thread.
        driver = await _driver(conn)
        with driver_errors(SQLITE_UPSERT):
            await driver._execute(sqlite_write, driver._conn, sids, ts, values, marks)
        return
    await _postgres_upsert_samples(conn, sids, ts, values)
    for resolution, mark_sids, buckets in marks:
        await _postgres_mark_dirty(conn, resolution, mark_sids, buckets)


def sqlite_write(
    db: sqlite3.Connection,
    sids: np.ndarray,
    ts: np.ndarray,
    values: np.ndarray,
    marks: Sequence[tuple[str, np.ndarray, np.ndarray]],
) -> None:
    """Upsert samples and their marks through the sqlite3 connection itself (its own thread)."""
    apart = exact_values.kept_apart(values)
    if apart.any():
        bits = exact_values.as_bits(values[apart])
        db.executemany(
            SQLITE_UPSERT_BITS,
            zip(sids[apart].tolist(), ts[apart].tolist(), bits.tolist(), strict=True),
        )
        sids, ts, values = sids[~apart], ts[~apart], values[~apart]
    db.executemany(SQLITE_UPSERT, zip(sids.tolist(), ts.tolist(), values.tolist(), strict=True))
    for resolution, mark_sids, buckets in marks:
        db.executemany(
            f"INSERT INTO rollup_dirty_{resolution} (series_id, bucket) VALUES (?, ?)"
            " ON CONFLICT DO NOTHING",
            zip(mark_sids.tolist(), buckets.tolist(), strict=True),
        )


async def sqlite_transaction(
    conn: AsyncConnection, work: Callable[[sqlite3.Connection], T], unsynced_from: str = ""
) -> T:
    """`work` in one BEGIN IMMEDIATE ... COMMIT, run on aiosqlite's thread: one round trip for
    the whole transaction. `conn` must not be in a transaction of SQLAlchemy's. With
    `unsynced_from` (the configured `synchronous`), committed as `sqlite_unsynced` says."""
    driver = await _driver(conn)
    unsynced = unsynced_from not in ("", "NORMAL")

    def run(db: sqlite3.Connection) -> T:
        if unsynced:
            db.execute("PRAGMA synchronous=NORMAL")
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                result = work(db)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        finally:
            if unsynced:
                db.execute(f"PRAGMA synchronous={unsynced_from}")
        return result

    with driver_errors("BEGIN IMMEDIATE"):
        result: T = await driver._execute(run, driver._conn)
    return result


@contextlib.asynccontextmanager
async def sqlite_unsynced(conn: AsyncConnection, configured: str) -> AsyncIterator[None]:
    """SQLite: the block's commits with `PRAGMA synchronous=NORMAL`, then back to `configured`.
    For the jobs' transactions, whose work can always be redone: in WAL mode such a commit is
    not on disk until a later one is synced (every acknowledged write is, with FULL), and a
    power loss keeps a prefix of the commits, so it can only undo recent job work (marks and
    rows back as they were, or raw samples not dropped yet), never a write. Without it each of
    a job run's many short transactions waited for an fsync (7 ms on the test machine)."""
    if configured == "NORMAL":
        yield
        return
    driver = await _driver(conn)
    with driver_errors("PRAGMA synchronous"):
        await driver.execute("PRAGMA synchronous=NORMAL")
    try:
        yield
    finally:
        with driver_errors("PRAGMA synchronous"):
            await driver.execute(f"PRAGMA synchronous={configured}")


# PostgreSQL's counterpart for the jobs' transactions: the commit returns before its WAL is
# flushed; a crash can lose only the last few, in order, and any later synchronous commit (every
# acknowledged write) flushes them with it.
UNSYNCED_COMMIT = "SET LOCAL synchronous_commit = off"


@contextlib.contextmanager
def driver_errors(statement: str) -> Iterator[None]:
    """Raise what the driver raises as SQLAlchemy would have, for statements sent to the driver
    directly: one kind of error reaches the handlers (503 when the database is unreachable)."""
    try:
        yield
    except DBAPIError:
        raise
    except DRIVER_UNREACHABLE as exc:
        raise OperationalError(statement, None, exc) from exc
    except (sqlite3.Error, asyncpg.PostgresError) as exc:
        raise DBAPIError(statement, None, exc) from exc


# What a driver raises when the database cannot be reached or the connection broke.
DRIVER_UNREACHABLE = (
    sqlite3.OperationalError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,  # the server is shutting down or restarting
    asyncpg.CrashShutdownError,
    ConnectionError,
    OSError,
)


async def _driver(conn: AsyncConnection) -> Any:
    """The driver's connection under `conn`: asyncpg's, or aiosqlite's (whose `_execute`, run a
    function on the connection's thread, is a private API of the pinned version, exercised by
    every write test)."""
    return (await conn.get_raw_connection()).driver_connection


async def _postgres_upsert_samples(
    conn: AsyncConnection, sids: np.ndarray, ts: np.ndarray, values: np.ndarray
) -> None:
    """Insert or overwrite (last write wins). Input holds each (series, ts) at most once."""
    if sids.size == 0:
        return
    if await copy_new_rows(conn, "samples", pg_copy.SAMPLE_COLUMNS, sids, ts, values):
        return
    await conn.execute(
        text(
            "INSERT INTO samples (series_id, ts, value) SELECT * FROM unnest(CAST(:sids AS"
            " integer[]), CAST(:ts AS bigint[]), CAST(:vals AS double precision[]))"
            " ON CONFLICT (series_id, ts) DO UPDATE SET value = EXCLUDED.value"
        ),
        {"sids": sids.tolist(), "ts": ts.tolist(), "vals": values.tolist()},
    )


COPY_MIN_ROWS = 1000


async def copy_new_rows(
    conn: AsyncConnection, table: str, layout: Sequence[tuple[str, str]], *arrays: np.ndarray
) -> bool:
    """PostgreSQL's bulk path: binary COPY, in a savepoint. False (and nothing written) if a row
    already existed, so the caller takes the upsert path instead."""
    if arrays[0].size < COPY_MIN_ROWS:
        return False
    raw = await _driver(conn)
    data = pg_copy.encode(layout, arrays)
    columns = [name for name, _ in layout]
    try:
        async with conn.begin_nested():
            with driver_errors(f"COPY {table}"):
                await raw.copy_to_table(
                    table, source=memoryview(data), columns=columns, format="binary"
                )
    except DBAPIError as exc:  # the unique violation: a row exists
        if getattr(exc.orig, "sqlstate", None) == "23505":
            return False
        raise
    return True


SQL_ARRAY_TYPES = {">i4": "integer[]", ">i8": "bigint[]", ">f8": "double precision[]"}


async def insert_new_rows(
    conn: AsyncConnection,
    table: str,
    layout: Sequence[tuple[str, str]],
    arrays: Sequence[np.ndarray],
) -> int:
    """PostgreSQL: insert rows given as columns in one statement, skipping any that exist;
    returns how many were inserted."""
    names = ", ".join(name for name, _ in layout)
    sources = ", ".join(
        f"CAST(:c{i} AS {SQL_ARRAY_TYPES[kind]})" for i, (_, kind) in enumerate(layout)
    )
    result = await conn.execute(
        text(
            f"INSERT INTO {table} ({names}) SELECT * FROM unnest({sources}) ON CONFLICT DO NOTHING"
        ),
        {f"c{i}": column.tolist() for i, column in enumerate(arrays)},
    )
    return int(result.rowcount or 0)


async def sqlite_insert_rows(
    conn: AsyncConnection,
    table: str,
    layout: Sequence[tuple[str, str]],
    arrays: Sequence[np.ndarray],
) -> int:
    """SQLite: insert rows given as columns (inside the open transaction), skipping any that
    exist; returns how many were inserted."""
    names = ", ".join(name for name, _ in layout)
    statement = (
        f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(layout))})"
        " ON CONFLICT DO NOTHING"
    )

    def insert(db: sqlite3.Connection) -> int:
        before = db.total_changes
        db.executemany(statement, zip(*(column.tolist() for column in arrays), strict=True))
        return db.total_changes - before

    driver = await _driver(conn)
    with driver_errors(statement):
        inserted: int = await driver._execute(insert, driver._conn)
    return inserted


async def _postgres_mark_dirty(
    conn: AsyncConnection, resolution: str, sids: np.ndarray, buckets: np.ndarray
) -> None:
    """Record that these (series, bucket) pairs changed. Pairs are unique and sorted. New marks
    go by COPY; a mark that exists is touched instead (row lock, see the module doc)."""
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


Key = tuple[int, int]  # (series_id, bucket): the order marks are claimed in


@dataclass(frozen=True)
class Claim:
    """Which marks a claim takes: of buckets starting before `before_ms`; with `limit`, the
    first `limit` in (series, bucket) order after `after`; with `series`, of these only."""

    resolution: str
    before_ms: int
    after: Key | None = None
    limit: int | None = None
    series: Sequence[int] | None = None

    def sql(self) -> tuple[str, str, dict[str, int]]:
        """(the mark table, the condition, its parameters), ORDER BY and LIMIT included."""
        where, params = _claim_conditions(self.before_ms, self.after, self.series)
        return f"rollup_dirty_{self.resolution}", where, params

    @property
    def order(self) -> str:
        if self.limit is None:
            return ""
        return f" ORDER BY series_id, bucket LIMIT {int(self.limit)}"


async def claim_dirty(conn: AsyncConnection, claim: Claim) -> tuple[int, Key | None]:
    """PostgreSQL: move the marks `claim` names into the temp table `claimed`; returns how many
    were claimed and the last one (SQLite: sqlite_claim).

    Must be its own statement, before the recomputation reads samples: under READ COMMITTED the
    next statement takes a fresh snapshot that includes every writer whose mark was touched
    before the claim. Marks a writer has locked (touched, not yet committed) are skipped: they
    stay for a later claim, so the job never waits for a write.
    """
    table, where, params = claim.sql()
    await conn.execute(
        text(
            "CREATE TEMP TABLE IF NOT EXISTS claimed (series_id integer NOT NULL,"
            " bucket bigint NOT NULL) ON COMMIT DELETE ROWS"
        )
    )
    await conn.execute(text("DELETE FROM claimed"))  # several claims may share a transaction
    result = await conn.execute(
        text(
            f"WITH picked AS (SELECT series_id, bucket FROM {table} WHERE {where}{claim.order}"
            f" FOR UPDATE SKIP LOCKED), gone AS (DELETE FROM {table} d USING picked p"
            " WHERE d.series_id = p.series_id AND d.bucket = p.bucket"
            " RETURNING d.series_id, d.bucket) INSERT INTO claimed SELECT * FROM gone"
        ),
        params,
    )
    claimed = int(result.rowcount or 0)
    if claimed == 0:
        return 0, None
    # Without statistics the planner takes the temp table for a thousand rows and may merge-join
    # it with a whole partition's index: O(table) for each chunk of a run.
    await conn.execute(text("ANALYZE claimed"))
    last = (await conn.execute(text(LAST_CLAIMED))).one()
    return claimed, (int(last[0]), int(last[1]))


LAST_CLAIMED = "SELECT series_id, bucket FROM claimed ORDER BY series_id DESC, bucket DESC LIMIT 1"


def sqlite_claim(db: sqlite3.Connection, claim: Claim) -> tuple[int, Key | None]:
    """SQLite's claim, through the sqlite3 connection itself, in the open transaction."""
    table, where, params = claim.sql()
    db.execute(
        "CREATE TEMP TABLE IF NOT EXISTS claimed (series_id INTEGER NOT NULL,"
        " bucket INTEGER NOT NULL, PRIMARY KEY (series_id, bucket)) WITHOUT ROWID"
    )
    db.execute("DELETE FROM claimed")
    claimed = db.execute(
        f"INSERT INTO claimed SELECT series_id, bucket FROM {table} WHERE {where}{claim.order}",
        params,
    ).rowcount
    if claimed <= 0:
        return 0, None
    last = db.execute(LAST_CLAIMED).fetchone()
    # The claimed marks are the first ones in key order up to `last`: one range of the key.
    # Nothing else writes in between (one writer, this transaction).
    db.execute(
        f"DELETE FROM {table} WHERE {where} AND (series_id, bucket) <= (:ls, :lb)",
        {**params, "ls": int(last[0]), "lb": int(last[1])},
    )
    return claimed, (int(last[0]), int(last[1]))


async def sqlite_call(conn: AsyncConnection, work: Callable[[sqlite3.Connection], T]) -> T:
    """`work` on aiosqlite's thread, inside whatever transaction `conn` has open."""
    driver = await _driver(conn)
    with driver_errors("job statement"):
        result: T = await driver._execute(work, driver._conn)
    return result


def _claim_conditions(
    before_ms: int, after: Key | None, series: Sequence[int] | None
) -> tuple[str, dict[str, int]]:
    where, params = ["bucket < :before"], {"before": int(before_ms)}
    if after is not None:
        where.append("(series_id, bucket) > (:after_s, :after_b)")  # a range of the key
        params.update({"after_s": int(after[0]), "after_b": int(after[1])})
    if series is not None:
        where.append(f"series_id IN ({','.join(str(int(s)) for s in series) or 'NULL'})")
    return " AND ".join(where), params


RETENTION_LOCK_KEY = 7_263_004
SHARED_RETENTION_LOCK = f"SELECT pg_advisory_xact_lock_shared({RETENTION_LOCK_KEY})"


async def share_retention_lock(conn: AsyncConnection) -> None:
    """Writers share this lock; a retention drop holds it alone, so no write lands in data being
    dropped, and every write sees the horizon of drops committed before it (SQLite: write lock)."""
    if is_postgres(conn):
        raw = await _driver(conn)
        with driver_errors(SHARED_RETENTION_LOCK):
            await raw.execute(SHARED_RETENTION_LOCK)


async def exclusive_retention_lock(conn: AsyncConnection, patience_s: float = 0.0) -> None:
    """Hold the retention lock alone until the transaction ends. With `patience_s`, first try
    for that long without queueing (every few milliseconds): a waiting exclusive request makes
    every new shared one queue behind it, so a retention transaction waiting for a long write
    would stall all the writes after it too."""
    if not is_postgres(conn):
        return
    deadline = time.monotonic() + patience_s
    while time.monotonic() < deadline:
        try_lock = f"SELECT pg_try_advisory_xact_lock({RETENTION_LOCK_KEY})"
        if (await conn.execute(text(try_lock))).scalar_one():
            return
        await asyncio.sleep(RETENTION_LOCK_POLL_SECONDS)
    await conn.execute(text(f"SELECT pg_advisory_xact_lock({RETENTION_LOCK_KEY})"))


RETENTION_LOCK_POLL_SECONDS = 0.005


async def lock_series_creation(conn: AsyncConnection) -> None:
    """Serialize series creation so cardinality limits hold across processes (SQLite: the write
    lock already does)."""
    if is_postgres(conn):
        await conn.execute(text(f"SELECT pg_advisory_xact_lock({SERIES_LOCK_KEY})"))


def partition_name(day: int) -> str:
    return f"samples_d{day}" if day >= 0 else f"samples_dm{-day}"


async def ensure_partitions(conn: AsyncConnection, days: Iterable[int]) -> None:
    """Create the day partitions of `samples` that these days need (PostgreSQL only)."""
    wanted = sorted(set(days))
    if not wanted or not is_postgres(conn):
        return
    await conn.execute(text(f"SELECT pg_advisory_xact_lock({PARTITION_LOCK_KEY})"))
    for day in wanted:
        await conn.execute(
            text(
                f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF samples"
                f" FOR VALUES FROM ({day * DAY_MS}) TO ({(day + 1) * DAY_MS})"
            )
        )


async def existing_partition_days(conn: AsyncConnection) -> list[int]:
    if not is_postgres(conn):
        return []
    result = await conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'samples'"
        )
    )
    days = []
    for (name,) in result:
        suffix = name.removeprefix("samples_d")
        days.append(-int(suffix[1:]) if suffix.startswith("m") else int(suffix))
    return sorted(days)


async def partition_rows(conn: AsyncConnection, day: int) -> int:
    """How many raw samples one day partition holds."""
    return int(
        (await conn.execute(text(f"SELECT count(*) FROM {partition_name(day)}"))).scalar_one()
    )


async def drop_partition(conn: AsyncConnection, day: int) -> None:
    """Drop one whole day of raw samples."""
    await conn.execute(text(f"DROP TABLE IF EXISTS {partition_name(day)}"))


# The primary key (series_id, ts) already holds the rows in the order a raw read returns them, so
# the index scan of each day partition, merged, is the plan for it. Before autovacuum has
# analyzed freshly imported partitions, the planner estimates them at a few hundred rows and
# chooses a bitmap scan and a sort that spills to disk instead: 648 ms against 346 ms for
# 1,000,000 points. These settings last until the read's transaction ends.
ORDERED_READ_SETTINGS = "SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off"


async def fetch_points(
    conn: AsyncConnection, ids: Sequence[int], lo: int, hi: int, limit: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(series_id, ts, value) columns of these series in [lo, hi], ordered by series and time,
    at most `limit` rows. Read through the driver: no per-row objects on the way."""
    if not ids:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0, dtype=np.float64)
    raw = await _driver(conn)
    id_list = ",".join(str(int(i)) for i in ids)
    where = f"series_id IN ({id_list}) AND ts >= {int(lo)} AND ts <= {int(hi)}"
    sql = f"SELECT series_id, ts, value FROM samples WHERE {where} ORDER BY series_id, ts"
    if is_postgres(conn):
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

    def read(db: sqlite3.Connection) -> tuple[np.ndarray, list[Any]]:
        # On the connection's thread, straight from the cursor into one array: no list of row
        # tuples, and the event loop is not the one converting them. Milliseconds and series ids
        # are exact in a double (below 2**53). Then the exact bits of the few NaN and -0.0
        # values, through their partial index (the planner needs telling before ANALYZE).
        rows = db.execute(f"{sql} LIMIT {int(limit)}")
        table = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.float64).reshape(-1, 3)
        apart = db.execute(
            "SELECT series_id, ts, bits FROM samples INDEXED BY ix_samples_bits"
            f" WHERE bits IS NOT NULL AND {where}"
        ).fetchall()
        return table, apart

    with driver_errors(sql):
        table, apart = await raw._execute(read, raw._conn)
    sids, stamps, values = table[:, 0].astype(np.int64), table[:, 1].astype(np.int64), table[:, 2]
    values = values.copy()
    exact_values.put_back(sids, stamps, values, apart)
    return sids, stamps, values


async def fetch_small(conn: AsyncConnection, sql: str) -> list[tuple[Any, ...]]:
    """All rows of a small query without parameters. On SQLite, one round trip to aiosqlite's
    thread instead of the several SQLAlchemy's cursor handling makes (it is on the write path)."""
    driver = await _driver(conn)
    with driver_errors(sql):
        if is_postgres(conn):
            return [tuple(row) for row in await driver.fetch(sql)]
        return [tuple(row) for row in await driver.execute_fetchall(sql)]


def label_equals(conn: AsyncConnection, name: str, value: str) -> ColumnElement[bool]:
    """`labels[name] == value` in SQL; PostgreSQL uses containment, which the GIN index serves."""
    if is_postgres(conn):
        return type_coerce(schema.series.c.labels, JSONB).contains({name: value})
    return func.json_extract(schema.series.c.labels, f'$."{name}"') == value


def buckets_join(conn: AsyncConnection, marks: str, width_ms: int) -> tuple[str, str]:
    """FROM and WHERE for `marks m` (series_id, bucket) joined with the samples in each bucket.

    SQLite is told to start from the marks (CROSS JOIN fixes its join order) so each mark is one
    primary-key range seek; left alone it scans every sample instead."""
    join = "CROSS JOIN" if not is_postgres(conn) else "JOIN"
    condition = (
        f"s.series_id = {marks}.series_id AND s.ts >= {marks}.bucket"
        f" AND s.ts < {marks}.bucket + {width_ms}"
    )
    if join == "JOIN":
        return f"{marks} JOIN samples s ON {condition}", "true"
    return f"{marks} CROSS JOIN samples s", condition


def counted(conn: AsyncConnection, alias: str = "s") -> str:
    """SQL: the sample `alias` takes part in rollups, that is, its value is not a NaN."""
    if is_postgres(conn):
        return f"{alias}.value <> 'NaN'::float8"
    return f"({alias}.bits IS NULL OR {alias}.bits = {exact_values.NEG_ZERO_BITS})"


def _infinity(conn: AsyncConnection) -> str:
    return "CAST('Infinity' AS double precision)" if is_postgres(conn) else "9e999"


def sum_term(conn: AsyncConnection, value: str) -> str:
    """The term a value adds to a bucket's sum: itself, or ±infinity beyond 1e300, so that no
    sum overflows (PostgreSQL raises an error where IEEE arithmetic gives infinity)."""
    inf, limit = _infinity(conn), f"CAST({SUM_LIMIT!r} AS double precision)"
    return (
        f"CASE WHEN {value} > {limit} THEN {inf} WHEN {value} < -{limit} THEN -{inf}"
        f" ELSE {value} END"
    )


def square_term(conn: AsyncConnection, value: str) -> str:
    """The term a value adds to a bucket's sum of squares: its square, infinity beyond 1e150 and
    0 below 1e-150 (PostgreSQL raises an error on overflow and underflow)."""
    inf, limit, floor = _infinity(conn), repr(SQUARE_LIMIT), repr(SQUARE_FLOOR)
    return (
        f"CASE WHEN abs({value}) > CAST({limit} AS double precision) THEN {inf}"
        f" WHEN abs({value}) < CAST({floor} AS double precision) THEN 0.0"
        f" ELSE {value} * {value} END"
    )


def bucket_expr(ts_column: str, width_ms: int) -> str:
    """Floor of a timestamp column to its epoch-aligned bucket, correct before 1970 too."""
    return f"({ts_column} - ((({ts_column} % {width_ms}) + {width_ms}) % {width_ms}))"
