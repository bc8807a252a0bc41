"""What differs between SQLite and PostgreSQL outside the sample store (whose backends' sides
are app.storage.samples.sqlite_rows and postgres_rows): the errors drivers raise, the advisory
locks, binary `COPY` into any table, label filters, the claim of invalidation marks, and the
jobs' unsynced commits."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
import numpy as np
from sqlalchemy import ColumnElement, func, text, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.storage import pg_copy, schema

SERIES_LOCK_KEY = 7_263_003
BLOCKS_LOCK_KEY = 7_263_005
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
    """The driver's connection under `conn`: asyncpg's, or aiosqlite's for its public API only
    (sqlite_unsynced; its private API is reached through app.storage.samples.sqlite_thread
    alone)."""
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
    series_in: str | None = None  # an SQL subquery of series ids: of these only

    def sql(self) -> tuple[str, str, dict[str, int]]:
        """(the mark table, the condition, its parameters); ORDER BY and LIMIT are `order`."""
        where, params = _claim_conditions(self.before_ms, self.after, self.series)
        if self.series_in is not None:
            where += f" AND series_id IN {self.series_in}"
        return f"rollup_dirty_{self.resolution}", where, params

    @property
    def order(self) -> str:
        if self.limit is None:
            return ""
        return f" ORDER BY series_id, bucket LIMIT {int(self.limit)}"


async def claim_dirty(conn: AsyncConnection, claim: Claim) -> tuple[int, Key | None]:
    """Move the marks `claim` names into the temp table `claimed`; returns how many were
    claimed and the last one in key order.

    Must be its own statement, before the recomputation reads samples: on PostgreSQL (READ
    COMMITTED) the next statement takes a fresh snapshot that includes every writer whose mark
    was touched before the claim. Marks a writer has locked (touched, not yet committed) are
    skipped: they stay for a later claim, so the job never waits for a write.
    """
    if not is_postgres(conn):
        return await _sqlite_claim(conn, claim)
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


SQLITE_CLAIMED = (
    "CREATE TEMP TABLE IF NOT EXISTS claimed (series_id INTEGER NOT NULL,"
    " bucket INTEGER NOT NULL, PRIMARY KEY (series_id, bucket)) WITHOUT ROWID"
)


def sqlite_claim_on(db: sqlite3.Connection, claim: Claim) -> tuple[int, Key | None]:
    """`_sqlite_claim` through the sqlite3 connection itself, on its thread (the same
    statements, in the caller's open transaction)."""
    table, where, params = claim.sql()
    db.execute(SQLITE_CLAIMED)
    db.execute("DELETE FROM claimed")
    claimed = db.execute(
        f"INSERT INTO claimed SELECT series_id, bucket FROM {table} WHERE {where}{claim.order}",
        params,
    ).rowcount
    if claimed <= 0:
        return 0, None
    ls, lb = db.execute(LAST_CLAIMED).fetchone()
    db.execute(
        f"DELETE FROM {table} WHERE {where} AND (series_id, bucket) <= (:ls, :lb)",
        {**params, "ls": int(ls), "lb": int(lb)},
    )
    return claimed, (int(ls), int(lb))


async def _sqlite_claim(conn: AsyncConnection, claim: Claim) -> tuple[int, Key | None]:
    """SQLite's claim, in the open transaction (the writer's: nothing else writes meanwhile)."""
    table, where, params = claim.sql()
    await conn.exec_driver_sql(SQLITE_CLAIMED)
    await conn.exec_driver_sql("DELETE FROM claimed")
    result = await conn.execute(
        text(
            f"INSERT INTO claimed SELECT series_id, bucket FROM {table} WHERE {where}{claim.order}"
        ),
        params,
    )
    claimed = int(result.rowcount or 0)
    if claimed <= 0:
        return 0, None
    ls, lb = (await conn.execute(text(LAST_CLAIMED))).one()
    # The claimed marks are the first ones in key order up to the last: one range of the key.
    await conn.execute(
        text(f"DELETE FROM {table} WHERE {where} AND (series_id, bucket) <= (:ls, :lb)"),
        {**params, "ls": int(ls), "lb": int(lb)},
    )
    return claimed, (int(ls), int(lb))


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
        # Through SQLAlchemy, not the driver's connection: SQLAlchemy sends BEGIN with its first
        # statement, and a lock taken on the driver before it was taken outside the transaction
        # (released at once), so a bulk write held no lock at all.
        await conn.execute(text(SHARED_RETENTION_LOCK))


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
# The transactions holding the retention lock in shared mode (writes), other than this one: a
# bigint advisory key is (classid, objid) = (high, low 32 bits), objsubid 1.
RETENTION_HOLDERS = (
    "SELECT virtualtransaction FROM pg_locks WHERE locktype = 'advisory' AND granted"
    f" AND mode = 'ShareLock' AND classid = 0 AND objid = {RETENTION_LOCK_KEY}"
    " AND objsubid = 1 AND pid <> pg_backend_pid()"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


async def wait_out_shared_holders(conn: AsyncConnection, patience_s: float) -> bool:
    """PostgreSQL: wait until every transaction that holds the retention lock in shared mode
    now (every write in flight) has ended, without queueing for the lock: writes that start
    meanwhile go ahead. False if some still held it after `patience_s`."""
    holders = list((await conn.execute(text(RETENTION_HOLDERS))).scalars())
    deadline = time.monotonic() + patience_s
    while holders:
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(RETENTION_LOCK_POLL_SECONDS)
        still = await conn.execute(
            text(f"{RETENTION_HOLDERS} AND virtualtransaction = ANY(CAST(:held AS text[]))"),
            {"held": holders},
        )
        holders = list(still.scalars())
    return True


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


async def lock_blocks(conn: AsyncConnection) -> None:
    """Serialize the read-modify-write of blocks (a compaction chunk, a bulk write into closed
    spans) across processes until the transaction ends, so that none rewrites a block from a
    version another has replaced meanwhile (SQLite: the write lock already does)."""
    if is_postgres(conn):
        await conn.execute(text(f"SELECT pg_advisory_xact_lock({BLOCKS_LOCK_KEY})"))
