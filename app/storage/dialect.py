"""What differs between SQLite and PostgreSQL outside the sample store (whose backends' sides
are app.storage.samples.sqlite_rows and postgres_rows): the errors drivers raise, the advisory
locks, binary `COPY` into any table, label filters, and the claim of invalidation marks."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import asyncpg
import numpy as np
from sqlalchemy import ColumnElement, func, text, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.storage import pg_copy, schema

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
    """asyncpg's connection under `conn` (PostgreSQL only here: aiosqlite's is reached through
    app.storage.samples.sqlite_thread alone)."""
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


def label_equals(conn: AsyncConnection, name: str, value: str) -> ColumnElement[bool]:
    """`labels[name] == value` in SQL; PostgreSQL uses containment, which the GIN index serves."""
    if is_postgres(conn):
        return type_coerce(schema.series.c.labels, JSONB).contains({name: value})
    return func.json_extract(schema.series.c.labels, f'$."{name}"') == value
