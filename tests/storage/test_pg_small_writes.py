"""The connection PostgreSQL keeps for small writes (app.storage.samples.pg_small_writes): a
server-side close the client has not noticed yet costs no write."""

from __future__ import annotations

import asyncio
import threading
import time

import asyncpg
import pytest
from conftest import test_settings

from app.model import Sample
from app.storage.engine import asyncpg_dsn
from app.storage.group_commit import merge
from app.storage.store import Store
from app.validation import series_key

KEPT = "application_name = 'metrics-service-ingest' AND datname = current_database()"


def terminate_kept_connection(database_url: str) -> None:
    """Close the kept connection from the server side and wait until its backend is gone, on a
    thread of its own: the caller's event loop does not run meanwhile, so the client cannot have
    seen the close when its next write starts."""
    errors: list[BaseException] = []

    async def kill() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            pids = [
                r["pid"] for r in await conn.fetch(f"SELECT pid FROM pg_stat_activity WHERE {KEPT}")
            ]
            assert len(pids) == 1, pids
            await conn.execute("SELECT pg_terminate_backend($1)", pids[0])
            deadline = time.monotonic() + 10
            while await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pids[0]
            ):
                assert time.monotonic() < deadline, "the backend did not exit"
                await asyncio.sleep(0.01)
        finally:
            await conn.close()

    def run() -> None:
        try:
            asyncio.run(kill())
        except BaseException as exc:  # handed to the test's thread
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def test_a_close_not_yet_noticed_costs_no_write(database_url: str, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("PostgreSQL only")
    now = int(time.time() * 1000) - 60_000
    key = series_key("cpu", b'{"host":"a"}')

    async def scenario() -> list[float]:
        store = Store.open(test_settings(database_url))
        try:
            await store.append(merge([Sample(key, now, 1.0)])[0])  # creates the series
            await store.append(merge([Sample(key, now + 1, 2.0)])[0])  # opens the kept connection
            for i in range(3):
                terminate_kept_connection(database_url)
                await store.append(merge([Sample(key, now + 2 + i, 3.0 + i)])[0])
            found, _ = await store.select_raw("cpu", [], now, now + 10, 100)
            return found[0].values.tolist()
        finally:
            await store.close()

    assert asyncio.run(scenario()) == [1.0, 2.0, 3.0, 4.0, 5.0]


ORDER_LOG = """
CREATE TABLE write_order_log (n bigserial, tx bigint, tbl text);
CREATE FUNCTION log_write_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO write_order_log (tx, tbl) VALUES (txid_current(), TG_TABLE_NAME);
  RETURN NULL;
END $$;
"""
LOGGED = ("samples", "rollup_dirty_1m", "rollup_dirty_5m", "rollup_dirty_1h")


def test_both_write_paths_lock_the_tables_in_the_same_order(
    database_url: str, backend: str
) -> None:
    """Several server processes write at once, one through the pool (series new to it) and one
    through its kept connection: if the two statements took their row locks table by table in
    different orders they could deadlock (they did: the kept connection's one statement ran its
    parts in the reverse order of the pool's). A BEFORE STATEMENT trigger on each table logs the
    order each write reaches them."""
    if backend != "postgresql":
        pytest.skip("PostgreSQL only")
    now = int(time.time() * 1000) - 60_000
    key = series_key("cpu", b'{"host":"a"}')

    async def admin(*statements: str) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            for statement in statements[:-1]:
                await conn.execute(statement)
            return list(await conn.fetch(statements[-1]))
        finally:
            await conn.close()

    triggers = [
        f"CREATE TRIGGER log_order BEFORE INSERT ON {t} FOR EACH STATEMENT"
        " EXECUTE FUNCTION log_write_order()"
        for t in LOGGED
    ]

    async def scenario() -> list[list[str]]:
        await admin(ORDER_LOG, *triggers, "SELECT 1")
        store = Store.open(test_settings(database_url))
        try:
            await store.append(merge([Sample(key, now, 1.0)])[0])  # a new series: the pool
            await store.append(merge([Sample(key, now + 1, 2.0)])[0])  # the kept connection
        finally:
            await store.close()
        rows = await admin("SELECT tx, tbl FROM write_order_log ORDER BY n")
        by_tx: dict[int, list[str]] = {}
        for row in rows:
            by_tx.setdefault(row["tx"], []).append(row["tbl"])
        return list(by_tx.values())

    try:
        orders = asyncio.run(scenario())
    finally:
        drops = [f"DROP TRIGGER IF EXISTS log_order ON {t}" for t in LOGGED]
        asyncio.run(
            admin(
                *drops,
                "DROP TABLE IF EXISTS write_order_log",
                "DROP FUNCTION IF EXISTS log_write_order()",
            )
        )
    assert len(orders) == 2, orders
    assert orders[0] == orders[1] == list(LOGGED)


def test_the_kept_connection_counts_overwrites_and_marks_their_buckets(
    database_url: str, backend: str
) -> None:
    """A sample that exists makes the kept connection's write a second statement: the samples
    upserted where the bits differ (counted), then the marks, which the first one left out."""
    if backend != "postgresql":
        pytest.skip("PostgreSQL only")
    now = int(time.time() * 1000) - 60_000
    key = series_key("cpu", b'{"host":"a"}')

    async def marks_and_clear() -> int:
        conn = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            tables = ("rollup_dirty_1m", "rollup_dirty_5m", "rollup_dirty_1h")
            found = [int(await conn.fetchval(f"SELECT count(*) FROM {t}")) for t in tables]
            for table in tables:
                await conn.execute(f"DELETE FROM {table}")
            return min(found)
        finally:
            await conn.close()

    async def scenario() -> tuple[list[int], list[int], list[float]]:
        store = Store.open(test_settings(database_url))
        counts, marked = [], []
        try:
            await store.append(merge([Sample(key, now, 1.0)])[0])  # a new series: the pool
            await marks_and_clear()
            for ts, value in ((now + 1, 2.0), (now + 1, 2.0), (now + 1, 0.0), (now, -0.0)):
                result = await store.append(merge([Sample(key, ts, value)])[0])  # kept
                counts.append(result.overwritten)
                marked.append(await marks_and_clear())
            found, _ = await store.select_raw("cpu", [], now, now + 10, 100)
            return counts, marked, found[0].values.tolist()
        finally:
            await store.close()

    counts, marked, values = asyncio.run(scenario())
    assert counts == [0, 0, 1, 1]  # new; the same again; 2.0 -> 0.0; 1.0 -> -0.0
    assert marked == [1, 1, 1, 1]  # every write marks its buckets in all three resolutions
    assert [str(v) for v in values] == ["-0.0", "0.0"]
