"""PostgreSQL: small writes of known series (group-committed single samples) on a connection kept
for them.

Steady single-sample ingestion is a stream of small transactions, one per group commit. Through
the pool each took eight round trips (the pre-ping's three, BEGIN, the retention lock, the
horizons, the write, COMMIT) and SQLAlchemy's work around each. Here a write takes four on one
asyncpg connection: BEGIN with the shared retention lock (one simple-protocol message), the
retention policies of its metrics (raw horizons and overrides), the write (samples and the marks
of all three resolutions in one prepared statement; three more when a sample existed), COMMIT.
The store's write lock lets one write in at a time, so one connection serves them all.

The connection opens on first use, and again after the server closed it (a restart). If the
kept connection fails on the first message of a write, before anything is written, the write is
tried once more on a new one. After any other failure than a refusal by the caller once it has
seen the policies (history to be placed on the general path, say: answered with a rollback) it
is closed, and the next write opens a new one.
Errors are raised as SQLAlchemy's (`app.storage.dialect.driver_errors`): a database that cannot be
reached or is shutting down answers 503 as on every other path.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import asyncpg
import numpy as np

from app.storage.dialect import SHARED_RETENTION_LOCK, driver_errors
from app.storage.maintenance import POLICY_SQL_ASYNCPG

BEGIN_LOCKED = f"BEGIN; {SHARED_RETENTION_LOCK}; SAVEPOINT write"

# Samples and the marks of all three resolutions in one statement. A mark that exists is touched
# (row-locked) so a job claiming it concurrently waits for this commit (app.storage.dialect).
# PostgreSQL runs the main statement first (here it reads `fresh`, so the samples' insert runs
# whole), then the data-modifying WITH parts it does not read from the last one listed to the
# first: so samples, 1m, 5m, 1h, the order in which the pool's path (PostgresRows.write) takes
# its row locks. Two processes writing the same rows, one on each path, would otherwise deadlock
# (tests/storage/test_pg_small_writes.py).
#
# Samples are only inserted here (`ON CONFLICT DO NOTHING`), and the command tag says how many
# went in. If one existed, the write goes back to the savepoint taken with BEGIN (releasing the
# marks' row locks), inserts the new samples alone, then upserts the samples where the stored
# bits differ (OVERWRITE: its row count is the overwrites, every row existing by then) and writes
# the marks: so the locks are taken as on the pool's path (new samples, existing samples,
# marks); updating samples after the marks' locks could deadlock with it. A write of new samples
# costs what it did (the savepoint is part of the first message, and was not measurable); one
# that finds stored samples three round trips more.
MARKS = """
marked_1h AS (
  INSERT INTO rollup_dirty_1h (series_id, bucket) SELECT * FROM unnest($8::integer[], $9::bigint[])
  ON CONFLICT (series_id, bucket) DO UPDATE SET bucket = EXCLUDED.bucket
), marked_5m AS (
  INSERT INTO rollup_dirty_5m (series_id, bucket) SELECT * FROM unnest($6::integer[], $7::bigint[])
  ON CONFLICT (series_id, bucket) DO UPDATE SET bucket = EXCLUDED.bucket
), marked_1m AS (
  INSERT INTO rollup_dirty_1m (series_id, bucket) SELECT * FROM unnest($4::integer[], $5::bigint[])
  ON CONFLICT (series_id, bucket) DO UPDATE SET bucket = EXCLUDED.bucket
)"""
SAMPLES = """
INSERT INTO samples (series_id, ts, value)
SELECT * FROM unnest($1::integer[], $2::bigint[], $3::double precision[])"""
WRITE = f"WITH{MARKS}{SAMPLES}\nON CONFLICT DO NOTHING"
INSERT_NEW = f"{SAMPLES}\nON CONFLICT DO NOTHING"
OVERWRITE = (
    f"WITH{MARKS}{SAMPLES}\nON CONFLICT (series_id, ts) DO UPDATE SET value = EXCLUDED.value"
    " WHERE float8send(samples.value) IS DISTINCT FROM float8send(EXCLUDED.value)"
)


READ_ONLY_SQL = "SELECT current_setting('transaction_read_only') = 'on'"


class SmallWrites:
    def __init__(self, dsn: str, connect: Mapping[str, Any]) -> None:
        self._dsn = dsn
        self._connect = dict(connect)
        self._conn: asyncpg.Connection | None = None
        self._turn = asyncio.Lock()  # one conversation at a time: a write or a ping

    async def ping(self) -> bool:
        """A round trip on the connection writes use; True if the server is read-only (a
        standby, or default_transaction_read_only)."""
        async with self._turn:
            conn = await self._connection()
            try:
                with driver_errors(READ_ONLY_SQL):
                    return bool(await conn.fetchval(READ_ONLY_SQL))
            except BaseException:
                self._drop()
                raise

    @staticmethod
    def arguments(
        sids: np.ndarray,
        ts: np.ndarray,
        values: np.ndarray,
        marks: Sequence[tuple[str, np.ndarray, np.ndarray]],
    ) -> list[list[Any]]:
        """WRITE's parameters: samples and their marks `(resolution, series, bucket)` for 1m,
        5m and 1h."""
        assert [m[0] for m in marks] == ["1m", "5m", "1h"]
        args = [sids.tolist(), ts.tolist(), values.tolist()]
        for _, mark_sids, buckets in marks:
            args += [mark_sids.tolist(), buckets.tolist()]
        return args

    async def write(
        self,
        metrics: Sequence[str],
        prepare: Callable[[Sequence[Sequence[Any]]], list[list[Any]]],
    ) -> int:
        """One transaction: `prepare` sees the policy rows of `metrics` (maintenance.policy_sql)
        and returns WRITE's parameters (`arguments`), or raises to refuse the write. Returns the
        samples that replaced a stored one of other bits."""
        async with self._turn:
            return await self._write(metrics, prepare)

    async def _write(
        self,
        metrics: Sequence[str],
        prepare: Callable[[Sequence[Sequence[Any]]], list[list[Any]]],
    ) -> int:
        conn = await self._begin()
        try:
            with driver_errors(POLICY_SQL_ASYNCPG):
                policies = await conn.fetch(POLICY_SQL_ASYNCPG, list(metrics))
            try:
                args = prepare(policies)
            except Exception:
                with driver_errors("ROLLBACK"):
                    await conn.execute("ROLLBACK")
                raise
            with driver_errors(WRITE):
                status = await conn.execute(WRITE, *args)
            overwritten = 0
            if _rows(status) < len(args[0]):
                overwritten = await self._overwrite(conn, args)
            with driver_errors("COMMIT"):
                await conn.execute("COMMIT")
            return overwritten
        except Exception:
            if conn.is_closed() or conn.is_in_transaction():
                self._drop()
            raise
        except BaseException:  # cancelled mid-conversation: the connection's state is unknown
            self._drop()
            raise

    @staticmethod
    async def _overwrite(conn: asyncpg.Connection, args: list[list[Any]]) -> int:
        """Samples of which some exist: back to the savepoint, then in the pool path's lock
        order (module comment). Returns the samples that replaced other bits."""
        with driver_errors("ROLLBACK TO SAVEPOINT write"):
            await conn.execute("ROLLBACK TO SAVEPOINT write")
        with driver_errors(INSERT_NEW):
            await conn.execute(INSERT_NEW, *args[:3])
        with driver_errors(OVERWRITE):
            return _rows(await conn.execute(OVERWRITE, *args))

    async def _begin(self) -> asyncpg.Connection:
        """The connection, in a transaction holding the shared retention lock. A kept connection
        that fails here is replaced once: the server may have closed it (a restart) without the
        client having noticed yet, and nothing has been written on it."""
        for last_try in (self._conn is None, True):
            conn = await self._connection()
            try:
                with driver_errors(BEGIN_LOCKED):
                    await conn.execute(BEGIN_LOCKED)
                return conn
            except Exception:
                self._drop()
                if last_try:
                    raise
            except BaseException:
                self._drop()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=5)

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            with driver_errors("connect"):
                self._conn = await asyncpg.connect(self._dsn, **self._connect)
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None


def _rows(status: str) -> int:
    """The row count of a command tag (`INSERT 0 16`)."""
    return int(status.rsplit(" ", 1)[-1])
