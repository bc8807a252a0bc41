"""What differs between SQLite and PostgreSQL outside the sample store (whose backends' sides
are app.storage.samples.sqlite_rows and postgres_rows): the errors drivers raise, the advisory
locks, binary `COPY` into any table, the day partitions of `samples`, label filters, and the
claim of invalidation marks.

The bucket SQL below (`buckets_join`, `counted`, the sum terms) serves the rollup job's
recomputation until it moves behind the sample store too (app.storage.samples.row_sql holds the
same, per backend).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
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


async def claim_dirty(conn: AsyncConnection, resolution: str, before_ms: int) -> int:
    """Move marks of buckets starting before `before_ms` into the temp table `claimed`.

    Must be its own statement, before the recomputation reads samples: on PostgreSQL (READ
    COMMITTED) the next statement takes a fresh snapshot that includes every writer whose mark
    this claim waited for.
    """
    table = f"rollup_dirty_{resolution}"
    if is_postgres(conn):
        await conn.execute(
            text(
                "CREATE TEMP TABLE IF NOT EXISTS claimed (series_id integer NOT NULL,"
                " bucket bigint NOT NULL) ON COMMIT DELETE ROWS"
            )
        )
        await conn.execute(text("DELETE FROM claimed"))  # several claims may share a transaction
        result = await conn.execute(
            text(
                f"WITH gone AS (DELETE FROM {table} WHERE bucket < :before"
                " RETURNING series_id, bucket) INSERT INTO claimed SELECT * FROM gone"
            ),
            {"before": before_ms},
        )
        return int(result.rowcount or 0)
    await conn.exec_driver_sql(
        "CREATE TEMP TABLE IF NOT EXISTS claimed (series_id INTEGER NOT NULL,"
        " bucket INTEGER NOT NULL, PRIMARY KEY (series_id, bucket)) WITHOUT ROWID"
    )
    await conn.exec_driver_sql("DELETE FROM claimed")
    result = await conn.execute(
        text(f"INSERT INTO claimed SELECT series_id, bucket FROM {table} WHERE bucket < :before"),
        {"before": before_ms},
    )
    await conn.execute(text(f"DELETE FROM {table} WHERE bucket < :before"), {"before": before_ms})
    return int(result.rowcount or 0)


async def rows_written(conn: AsyncConnection, result: Any) -> int:
    """Rows the last INSERT/UPDATE/DELETE wrote (upserted rows included). SQLite's driver gives
    no rowcount for a statement that starts with WITH; changes() has it."""
    if is_postgres(conn):
        return int(result.rowcount or 0)
    return int((await conn.execute(text("SELECT changes()"))).scalar_one())


RETENTION_LOCK_KEY = 7_263_004
SHARED_RETENTION_LOCK = f"SELECT pg_advisory_xact_lock_shared({RETENTION_LOCK_KEY})"


async def share_retention_lock(conn: AsyncConnection) -> None:
    """Writers share this lock; a retention drop holds it alone, so no write lands in data being
    dropped, and every write sees the horizon of drops committed before it (SQLite: write lock)."""
    if is_postgres(conn):
        raw = await _driver(conn)
        with driver_errors(SHARED_RETENTION_LOCK):
            await raw.execute(SHARED_RETENTION_LOCK)


async def exclusive_retention_lock(conn: AsyncConnection) -> None:
    if is_postgres(conn):
        await conn.execute(text(f"SELECT pg_advisory_xact_lock({RETENTION_LOCK_KEY})"))


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


async def drop_partition(conn: AsyncConnection, day: int) -> int:
    """Drop one whole day of raw samples; returns how many rows went with it."""
    name = partition_name(day)
    count = (await conn.execute(text(f"SELECT count(*) FROM {name}"))).scalar_one()
    await conn.execute(text(f"DROP TABLE {name}"))
    return int(count)


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
