"""The one use of aiosqlite's private API: running a function on the connection's own thread.

Through SQLAlchemy every small statement costs several round trips to aiosqlite's thread; the
write path and the raw reads send a whole transaction, or a whole read straight from the cursor
into numpy, as one function instead. aiosqlite has no public call for that: `Connection._execute`
(queue a function for its thread) and `Connection._conn` (its sqlite3 connection) of the pinned
version are used here and nowhere else, and `check()` fails the start-up, naming the version, if
an upgrade removed them.
"""

from __future__ import annotations

import inspect
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

import aiosqlite
import numpy as np
from sqlalchemy.ext.asyncio import AsyncConnection

T = TypeVar("T")


class DriverMismatch(RuntimeError):
    """The installed aiosqlite lacks the private API this adapter needs."""


def check() -> None:
    """Raise DriverMismatch unless aiosqlite's Connection has `_execute` (a coroutine function)
    and the `_conn` property."""
    connection = aiosqlite.Connection
    execute = getattr(connection, "_execute", None)
    conn = inspect.getattr_static(connection, "_conn", None)
    if not inspect.iscoroutinefunction(execute) or not isinstance(conn, property):
        raise DriverMismatch(
            f"aiosqlite {getattr(aiosqlite, '__version__', '?')} has no Connection._execute"
            " coroutine or _conn property, which app.storage.samples.sqlite_thread uses; install"
            " the version pinned in requirements.txt"
        )


# A write of raw rows (series, ts, values) through the sqlite3 connection on its thread,
# returning which rows are left for the head and how many stored samples of other bits it
# replaced (app.storage.samples.rows.RawElsewhere.on_thread).
ThreadWrite = Callable[
    [sqlite3.Connection, np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, int]
]


class SqliteThread:
    """An aiosqlite connection as the thread it runs on."""

    def __init__(self, driver: Any) -> None:
        self._driver = driver

    @classmethod
    async def of(cls, conn: AsyncConnection) -> SqliteThread:
        """The thread of the aiosqlite connection under a SQLAlchemy connection."""
        return cls((await conn.get_raw_connection()).driver_connection)

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(db)` on the connection's thread, with its sqlite3 connection."""
        result: T = await self._driver._execute(work, self._driver._conn)
        return result

    async def fetch_all(self, sql: str) -> list[tuple[Any, ...]]:
        """All rows of a statement without parameters, in one round trip (public API)."""
        return [tuple(row) for row in await self._driver.execute_fetchall(sql)]

    async def transaction(
        self, work: Callable[[sqlite3.Connection], T], *, unsynced_from: str | None = None
    ) -> T:
        """`work` in one BEGIN IMMEDIATE ... COMMIT on the thread: one round trip for the whole
        transaction. The SQLAlchemy connection must not be in a transaction of its own. With
        `unsynced_from` (the configured `synchronous`), the commit is made with
        `synchronous=NORMAL` and the setting put back after (app.storage.dialect.sqlite_unsynced:
        for the jobs' transactions)."""

        def transact(db: sqlite3.Connection) -> T:
            db.execute("BEGIN IMMEDIATE")
            try:
                result = work(db)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            return result

        def run(db: sqlite3.Connection) -> T:
            if unsynced_from is None or unsynced_from == "NORMAL":
                return transact(db)
            db.execute("PRAGMA synchronous=NORMAL")
            try:
                return transact(db)
            finally:
                db.execute(f"PRAGMA synchronous={unsynced_from}")

        return await self.run(run)
