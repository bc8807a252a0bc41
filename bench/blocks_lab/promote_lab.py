"""The rollup/compaction pass over what bulk writes left as pending parts (the recommended
layout): 1,000,000 imported samples in `block_parts`, one part per (series, 2 h span), turned
into final blocks (the payload copied, not re-encoded) and their 5m/1h day payloads, the parts
deleted, in one transaction."""

from __future__ import annotations

import asyncio
import itertools
import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

from app.storage.blocks.agg_codec import encode_aggregates
from app.storage.blocks.aggregates import aggregate
from app.storage.blocks.read import StoredBlock, decode_parts
from bench.blocks_lab import ingest, postgres_lab, sqlite_lab

SPAN = 2 * 3_600_000
DAY = 86_400_000
PARTS_SQL = (
    "CREATE TABLE block_parts (seq INTEGER PRIMARY KEY, series_id INTEGER NOT NULL,"
    " span_start INTEGER NOT NULL, first_ts INTEGER NOT NULL, last_ts INTEGER NOT NULL,"
    " count INTEGER NOT NULL, payload BLOB NOT NULL)"
)
PG_PARTS_SQL = (
    "CREATE TABLE block_parts (seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " series_id integer NOT NULL, span_start bigint NOT NULL, first_ts bigint NOT NULL,"
    " last_ts bigint NOT NULL, count integer NOT NULL, payload bytea NOT NULL)"
)
PROMOTE = (
    "INSERT INTO blocks (series_id, span_start, first_ts, last_ts, count, payload)"
    " SELECT series_id, span_start, first_ts, last_ts, count, payload FROM block_parts"
)


def parts_rows() -> list[tuple[int, int, int, int, int, bytes]]:
    stages = ingest.Stages()
    return [
        b for r in ingest.requests() for b in ingest.encode_request(r, SPAN, stages, False).blocks
    ]


def day_payloads(
    parts: list[StoredBlock], stages: ingest.Stages
) -> list[tuple[int, str, int, int, bytes]]:
    started = time.perf_counter()
    rows = decode_parts(parts, -(2**62), 2**62)
    started = stages.add("decode", started)
    out = []
    for res, width in ingest.STORED_ROLLUPS.items():
        buckets = aggregate(rows.series, rows.ts, rows.values, width)
        day = buckets.bucket - np.mod(buckets.bucket, DAY)
        change = np.flatnonzero((np.diff(buckets.series) != 0) | (np.diff(day) != 0)) + 1
        for lo, hi in itertools.pairwise([0, *change.tolist(), len(buckets)]):
            part = buckets.take(slice(lo, hi))
            out.append(
                (int(part.series[0]), res, int(day[lo]), hi - lo, encode_aggregates(part, width))
            )
    stages.add("aggregate_and_encode", started)
    return out


def sqlite_promote(conn: sqlite3.Connection) -> dict[str, float]:
    stages = ingest.Stages()
    started = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    found = conn.execute(
        "SELECT seq, series_id, first_ts, last_ts, payload FROM block_parts"
    ).fetchall()
    parts = [StoredBlock(s, f, last, p, seq) for seq, s, f, last, p in found]
    stages.add("read_parts", started)
    rollups = day_payloads(parts, stages)
    started = time.perf_counter()
    conn.execute(PROMOTE)
    conn.executemany(sqlite_lab.INSERT_ROLLUP, rollups)
    conn.execute("DELETE FROM block_parts")
    started = stages.add("write", started)
    conn.execute("COMMIT")
    stages.add("commit", started)
    return dict(stages.seconds) | {"total": sum(stages.seconds.values())}


def sqlite_run(rows: list[tuple[int, int, int, int, int, bytes]]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="blocks-lab-") as tmp:
        conn = sqlite_lab.open_db(Path(tmp) / "lab.db", 4096, "rowid_and_index")
        conn.execute(PARTS_SQL)
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO block_parts (series_id, span_start, first_ts, last_ts, count, payload)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.execute("COMMIT")
        result = sqlite_promote(conn)
        conn.close()
    return result


async def pg_run(rows: list[tuple[int, int, int, int, int, bytes]]) -> dict[str, float]:
    name = f"blocks_lab_p{os.getpid()}"
    admin = await asyncpg.connect(postgres_lab.ADMIN_DSN)
    await admin.execute(f"DROP DATABASE IF EXISTS {name}")
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        conn = await asyncpg.connect(postgres_lab.ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}")
        try:
            for sql in (*postgres_lab.TABLES, PG_PARTS_SQL):
                await conn.execute(sql)
            cols = postgres_lab.columns(rows)
            await conn.execute(
                "INSERT INTO block_parts (series_id, span_start, first_ts, last_ts, count, payload)"
                " SELECT * FROM unnest($1::integer[], $2::bigint[], $3::bigint[], $4::bigint[],"
                " $5::integer[], $6::bytea[])",
                *cols,
            )
            return await pg_promote(conn)
        finally:
            await conn.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name}")
        await admin.close()


async def pg_promote(conn: asyncpg.Connection) -> dict[str, float]:
    stages = ingest.Stages()
    started = time.perf_counter()
    tx = conn.transaction()
    await tx.start()
    found = await conn.fetch(
        "SELECT seq, series_id, first_ts, last_ts, payload FROM block_parts FOR UPDATE"
    )
    parts = [StoredBlock(r[1], r[2], r[3], r[4], r[0]) for r in found]
    stages.add("read_parts", started)
    rollups = day_payloads(parts, stages)
    started = time.perf_counter()
    await conn.execute(PROMOTE)
    rows = [(s, postgres_lab.RESOLUTION[r], d, n, p) for s, r, d, n, p in rollups]
    await conn.execute(postgres_lab.INSERT_ROLLUPS, *postgres_lab.columns(rows))
    await conn.execute("DELETE FROM block_parts")
    started = stages.add("write", started)
    await tx.commit()
    stages.add("commit", started)
    return dict(stages.seconds) | {"total": sum(stages.seconds.values())}


def run(repeat: int) -> dict[str, Any]:
    rows = parts_rows()
    return {
        "sqlite": [sqlite_run(rows) for _ in range(repeat)],
        "postgres": [asyncio.run(pg_run(rows)) for _ in range(repeat)],
    }


def show(results: dict[str, Any]) -> None:
    print(
        "\npending parts of 1,000,000 imported samples promoted to blocks + 5m/1h day payloads (s)"
    )
    for backend, runs in results.items():
        for r in runs:
            print(f"  {backend}: " + ", ".join(f"{k} {v:.3f}" for k, v in r.items()))
