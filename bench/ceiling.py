"""The backends' own bulk-insert rate on the same rows: the ceiling the import is compared with.

SQLite: executemany in one transaction into a (series_id, ts) keyed table without rowid.
PostgreSQL: COPY into a table with the same primary key.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import asyncpg
import numpy as np

from bench.workload import Workload


def _rows(work: Workload) -> list[tuple[int, int, float]]:
    sids = np.repeat(np.arange(1, len(work.labels) + 1), work.ts.size)
    ts = np.tile(work.ts, len(work.labels))
    return list(zip(sids.tolist(), ts.tolist(), work.values.ravel().tolist(), strict=True))


def sqlite_ceiling(work: Workload, path: Path) -> float:
    rows = _rows(work)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        "CREATE TABLE s (series_id INTEGER, ts INTEGER, value REAL,"
        " PRIMARY KEY (series_id, ts)) WITHOUT ROWID"
    )
    started = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO s VALUES (?, ?, ?)", rows)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return len(rows) / elapsed


def postgres_ceiling(work: Workload, dsn: str) -> float:
    return asyncio.run(_postgres_ceiling(work, dsn))


async def _postgres_ceiling(work: Workload, dsn: str) -> float:
    rows = _rows(work)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE TABLE bench_ceiling (series_id integer, ts bigint, value double precision,"
            " PRIMARY KEY (series_id, ts))"
        )
        started = time.perf_counter()
        async with conn.transaction():
            await conn.copy_records_to_table("bench_ceiling", records=rows)
        elapsed = time.perf_counter() - started
        await conn.execute("DROP TABLE bench_ceiling")
    finally:
        await conn.close()
    return len(rows) / elapsed
