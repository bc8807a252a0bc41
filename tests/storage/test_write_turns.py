"""Small writes do not wait behind bulk ones (issue 17, finding 7; app.storage.write_turns).

SQLite: the process' write lock hands a waiting small write (a group commit) the lock before any
waiting bulk write. PostgreSQL: writes take no process-wide lock, so a small write completes while
a bulk write is stuck inside its transaction. Either way a bulk write stays one all-or-nothing
transaction: one that fails after most of its rows were sent leaves nothing behind.

Nothing here is timed: a write is held up by a real database lock (another connection's
transaction), and the tests wait for states (a write queued, a write waiting on a lock), never
for a duration.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable

import asyncpg
import numpy as np
import pytest
from conftest import run_with_store as run

from app.config import Settings
from app.model import SampleBatch
from app.storage.engine import asyncpg_dsn, sqlite_path
from app.storage.store import Store, WriteTimeout
from app.storage.write_turns import WriteTurns
from app.validation import series_key

GUARD_SECONDS = 120  # not a timing assertion: a state that never comes fails the test
BULK_SERIES = 20
BULK_POINTS = 500  # 10,000 samples, as the mixed-load benchmark's backfills


def bulk(metric: str, start: int, points: int = BULK_POINTS) -> SampleBatch:
    keys = [series_key(metric, f'{{"host":"b{s:02d}"}}'.encode()) for s in range(BULK_SERIES)]
    return SampleBatch(
        keys=keys,
        series_index=np.repeat(np.arange(BULK_SERIES, dtype=np.int64), points),
        ts=np.tile(start + np.arange(points, dtype=np.int64) * 10_000, BULK_SERIES),
        values=np.arange(BULK_SERIES * points, dtype=np.float64),
    )


def single(metric: str, ts: int, value: float = 1.0) -> SampleBatch:
    return SampleBatch(
        keys=[series_key(metric, b'{"host":"s"}')],
        series_index=np.zeros(1, dtype=np.int64),
        ts=np.array([ts], dtype=np.int64),
        values=np.array([value]),
    )


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + GUARD_SECONDS
    while not await condition():
        assert time.monotonic() < deadline, f"never came: {what}"
        await asyncio.sleep(0.01)


def now_ms() -> int:
    return int(time.time() * 1000)


def open_span_start() -> int:
    """A day ahead: every span the writes here touch is open, so bulk writes go to the head's
    rows (the row locks and triggers these tests use), not straight into blocks."""
    return now_ms() + 86_400_000


# -- the lock itself ---------------------------------------------------------------------------


def test_a_waiting_small_write_goes_before_waiting_bulk_writes() -> None:
    async def go() -> list[str]:
        turns = WriteTurns()
        order: list[str] = []
        release = asyncio.Event()

        async def holder() -> None:
            async with turns:
                order.append("holder")
                await release.wait()

        async def normal(name: str) -> None:
            async with turns:
                order.append(name)

        async def urgent(name: str) -> None:
            async with turns.urgent():
                order.append(name)

        tasks = [asyncio.create_task(holder())]
        await asyncio.sleep(0)
        for make in (normal("bulk 1"), normal("bulk 2"), urgent("small 1"), urgent("small 2")):
            tasks.append(asyncio.create_task(make))
            await asyncio.sleep(0)
        release.set()
        await asyncio.gather(*tasks)
        assert not turns.locked()
        assert turns.overtaken == 2
        return order

    assert asyncio.run(go()) == ["holder", "small 1", "small 2", "bulk 1", "bulk 2"]


def test_a_cancelled_waiter_neither_keeps_nor_loses_the_lock() -> None:
    async def go() -> list[str]:
        turns = WriteTurns()
        order: list[str] = []
        release = asyncio.Event()
        tasks: dict[str, asyncio.Task[None]] = {}

        async def holder() -> None:
            async with turns:
                await release.wait()
            # The lock was just handed to `handed`; it is cancelled before it runs.
            tasks["handed"].cancel()

        async def waiter(name: str, lane: str) -> None:
            async with turns.urgent() if lane == "urgent" else turns:
                order.append(name)

        first = asyncio.create_task(holder())
        await asyncio.sleep(0)
        tasks["cancelled"] = asyncio.create_task(waiter("cancelled while waiting", "urgent"))
        tasks["handed"] = asyncio.create_task(waiter("cancelled once handed the lock", "normal"))
        last = asyncio.create_task(waiter("last", "normal"))
        await asyncio.sleep(0)
        tasks["cancelled"].cancel()
        await asyncio.sleep(0)
        assert turns.waiting() == 2
        release.set()
        await first
        await last
        for task in tasks.values():
            with pytest.raises(asyncio.CancelledError):
                await task
        assert not turns.locked()
        return order

    assert asyncio.run(go()) == ["last"]


# -- through the store, on both backends --------------------------------------------------------


def test_a_small_write_goes_before_queued_bulk_writes_on_sqlite(
    database_url: str, backend: str
) -> None:
    """A bulk write holds the single writer (waiting for another process' transaction), a
    second bulk write and a small one queue behind it: when the first is done, the small write
    goes next, before the second bulk write."""
    if backend != "sqlite":
        pytest.skip("SQLite's single writer; PostgreSQL writes take no process lock")
    path = sqlite_path(database_url)
    assert path is not None
    start = open_span_start()

    async def work(store: Store, settings: Settings) -> list[str]:
        await store.append(bulk("bulk_a", start, 1))  # the series exist: the known road
        await store.append(bulk("bulk_b", start, 1))
        await store.append(single("small", start))
        done: list[str] = []
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process' write: the writer waits for it
        try:
            first = asyncio.create_task(store.append(bulk("bulk_a", start + 60_000_000)))
            first.add_done_callback(lambda _: done.append("bulk a"))

            async def holding() -> bool:
                return store._write_lock.locked()

            await until(holding, "the first bulk write holding the write lock")
            second = asyncio.create_task(store.append(bulk("bulk_b", start + 60_000_000)))
            second.add_done_callback(lambda _: done.append("bulk b"))
            await asyncio.sleep(0)
            small = asyncio.create_task(store.append(single("small", start + 1)))
            small.add_done_callback(lambda _: done.append("small"))

            async def queued() -> bool:
                return store._write_lock.waiting() == 2

            await until(queued, "both writes queued")
        finally:
            other.execute("COMMIT")
            other.close()
        await asyncio.wait_for(asyncio.gather(first, second, small), GUARD_SECONDS)
        return done

    assert run(database_url, work) == ["bulk a", "small", "bulk b"]


BLOCKING_ROW = "INSERT INTO samples (series_id, ts, value) VALUES ($1, $2, 0)"
WAITING = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
    " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
)


async def waiting(database_url: str) -> bool:
    """Whether another connection waits on a lock (asked on a connection of its own, outside
    any transaction: within one, PostgreSQL answers from the statistics snapshot it took
    first)."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return bool(await conn.fetchval(WAITING))
    finally:
        await conn.close()


async def blocker(database_url: str, store: Store, metric: str, ts: int) -> asyncpg.Connection:
    """Another connection's open transaction holding one row a bulk write of `metric` will
    insert (series b00 at `ts`): the bulk write waits for it inside its own transaction."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    sid = await conn.fetchval(
        "SELECT id FROM series WHERE metric_name = $1 AND labels->>'host' = 'b00'", metric
    )
    await conn.execute("BEGIN")
    await conn.execute(BLOCKING_ROW, sid, ts)
    return conn


def test_a_small_write_completes_while_a_bulk_write_waits_in_its_transaction(
    database_url: str, backend: str
) -> None:
    """PostgreSQL: a bulk write stuck on a row lock inside its transaction holds nothing a
    single-sample write of another series needs; the small write is committed and readable
    before the bulk write is, and the bulk write then commits whole."""
    if backend != "postgresql":
        pytest.skip("on SQLite every write waits for the single writer")
    start = open_span_start()

    async def work(store: Store, settings: Settings) -> tuple[int, int]:
        await store.append(bulk("bulk_pg", start, 1))
        await store.append(single("small_pg", start))
        other = await blocker(database_url, store, "bulk_pg", start + 100_000)
        try:
            write = asyncio.create_task(store.append(bulk("bulk_pg", start + 100_000)))

            await until(lambda: waiting(database_url), "the bulk write waiting on the row lock")
            await asyncio.wait_for(store.append(single("small_pg", start + 1)), GUARD_SECONDS)
            small = await store.read_raw("small_pg", [], 0, 2**62, 10)
            assert not write.done()
        finally:
            await other.execute("ROLLBACK")
            await other.close()
        await asyncio.wait_for(write, GUARD_SECONDS)
        stored = await store.read_raw("bulk_pg", [], 0, 2**62, 10**6)
        return sum(int(s.ts.size) for s in small.series), sum(int(s.ts.size) for s in stored.series)

    small, stored = run(database_url, work)
    assert small == 2
    assert stored == BULK_SERIES + BULK_SERIES * BULK_POINTS


def test_a_bulk_write_cut_off_inside_its_transaction_writes_nothing(
    database_url: str, backend: str
) -> None:
    """PostgreSQL: a bulk write still waiting when DB_WRITE_TIMEOUT runs out is cancelled and
    leaves nothing, while a small write beside it was committed."""
    if backend != "postgresql":
        pytest.skip("DB_WRITE_TIMEOUT is PostgreSQL's")
    start = open_span_start()

    async def work(store: Store, settings: Settings) -> int:
        await store.append(bulk("cut_pg", start, 1))
        other = await blocker(database_url, store, "cut_pg", start + 100_000)
        try:
            with pytest.raises(WriteTimeout):
                await store.append(bulk("cut_pg", start + 100_000))
            await store.append(single("cut_small", start))
        finally:
            await other.execute("ROLLBACK")
            await other.close()
        stored = await store.read_raw("cut_pg", [], 0, 2**62, 10**6)
        return sum(int(s.ts.size) for s in stored.series)

    assert run(database_url, work, db_write_timeout="1s") == BULK_SERIES


FAIL_AT_TS_SQLITE = (
    "CREATE TRIGGER fail_at BEFORE INSERT ON samples WHEN NEW.ts = {ts}"
    " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
)
FAIL_AT_TS_PG = (
    "CREATE FUNCTION fail_at() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " IF NEW.ts = {ts} THEN RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$;"
    " CREATE TRIGGER fail_at BEFORE INSERT ON samples FOR EACH ROW EXECUTE FUNCTION fail_at()"
)
DROP_FAIL_AT_PG = "DROP TRIGGER fail_at ON samples; DROP FUNCTION fail_at()"


def test_a_bulk_write_that_fails_after_most_of_its_rows_writes_nothing(
    database_url: str, backend: str
) -> None:
    """The database refuses the 9,500th row of a 10,000-sample import (after two full
    statements' worth of rows on SQLite, inside the COPY on PostgreSQL): nothing of the import
    is stored, no mark is left, and the same import goes in whole once the refusal is gone."""
    start = open_span_start()
    batch = bulk("fails", start + 100_000)
    refused = int(batch.ts[9_499])

    async def work(store: Store, settings: Settings) -> tuple[int, int, int]:
        await store.append(bulk("fails", start, 1))
        async with store.engines.writer.begin() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            if backend == "sqlite":
                await driver.execute(FAIL_AT_TS_SQLITE.format(ts=refused))
            else:
                await driver.execute(FAIL_AT_TS_PG.format(ts=refused))
        marks_before = await store.pending_invalidations()
        with pytest.raises(Exception, match="refused by the test"):
            await store.append(batch)
        after_failure = await stored_count(store, "fails")
        marks_after = await store.pending_invalidations()
        assert marks_after == marks_before
        async with store.engines.writer.begin() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            drop = "DROP TRIGGER fail_at" if backend == "sqlite" else DROP_FAIL_AT_PG
            await driver.execute(drop)
        await store.append(batch)
        return after_failure, await stored_count(store, "fails"), len(batch)

    after_failure, after_retry, sent = run(database_url, work)
    assert after_failure == BULK_SERIES
    assert after_retry == BULK_SERIES + sent


async def stored_count(store: Store, metric: str) -> int:
    selection = await store.read_raw(metric, [], 0, 2**62, 10**6)
    return sum(int(s.ts.size) for s in selection.series)
