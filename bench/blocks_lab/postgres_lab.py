"""Blocks in a real PostgreSQL database (a scratch database created and dropped here): the
1,000,000-sample workload written as one transaction per 10,000-sample request (default fsync,
synchronous_commit on), for several spans and TOAST settings; relation sizes and where the time
goes."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import asyncpg

from bench.blocks_lab import ingest

HOUR = 3_600_000
ADMIN_DSN = os.environ.get("BLOCKS_LAB_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
TABLES = (
    "CREATE TABLE series (id integer PRIMARY KEY, metric_name varchar(255) NOT NULL,"
    " fingerprint varchar(32) NOT NULL, labels jsonb NOT NULL, created_ms bigint NOT NULL,"
    " UNIQUE (metric_name, fingerprint))",
    "CREATE INDEX ix_series_labels ON series USING gin (labels jsonb_path_ops)",
    "CREATE TABLE blocks (series_id integer NOT NULL, span_start bigint NOT NULL,"
    " first_ts bigint NOT NULL, last_ts bigint NOT NULL, count integer NOT NULL,"
    " payload bytea NOT NULL, PRIMARY KEY (series_id, span_start))",
    "CREATE TABLE rollup_blocks (series_id integer NOT NULL, resolution smallint NOT NULL,"
    " day_start bigint NOT NULL, buckets integer NOT NULL, payload bytea NOT NULL,"
    " PRIMARY KEY (series_id, resolution, day_start))",
    "CREATE TABLE block_dirty (series_id integer NOT NULL, span_start bigint NOT NULL,"
    " PRIMARY KEY (series_id, span_start))",
)
RELATIONS = ("series", "blocks", "rollup_blocks", "block_dirty")
INSERT_BLOCKS = (
    "INSERT INTO blocks SELECT * FROM unnest($1::integer[], $2::bigint[], $3::bigint[],"
    " $4::bigint[], $5::integer[], $6::bytea[]) ON CONFLICT (series_id, span_start) DO UPDATE"
    " SET first_ts = excluded.first_ts, last_ts = excluded.last_ts, count = excluded.count,"
    " payload = excluded.payload"
)
INSERT_ROLLUPS = (
    "INSERT INTO rollup_blocks SELECT * FROM unnest($1::integer[], $2::smallint[],"
    " $3::bigint[], $4::integer[], $5::bytea[]) ON CONFLICT (series_id, resolution, day_start)"
    " DO UPDATE SET buckets = excluded.buckets, payload = excluded.payload"
)
INSERT_MARKS = (
    "INSERT INTO block_dirty SELECT * FROM unnest($1::integer[], $2::bigint[])"
    " ON CONFLICT DO NOTHING"
)
EXISTING = (
    "SELECT span_start, payload FROM blocks WHERE series_id = $1 AND span_start BETWEEN $2 AND $3"
    " FOR UPDATE"
)
RESOLUTION = {"1m": 1, "5m": 5, "1h": 60}


def columns(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    return [list(col) for col in zip(*rows, strict=True)]


async def write_all(
    conn: asyncpg.Connection, requests: list[ingest.Request], span_ms: int, rollups: bool
) -> ingest.Stages:
    stages = ingest.Stages()
    for request in requests:
        encoded = ingest.encode_request(request, span_ms, stages, rollups)
        started = time.perf_counter()
        tx = conn.transaction()
        await tx.start()
        sid, first, last = encoded.blocks[0][0], encoded.blocks[0][1], encoded.blocks[-1][1]
        await conn.fetch(EXISTING, sid, first, last)
        started = stages.add("sql_read_existing", started)
        await conn.execute(INSERT_BLOCKS, *columns(encoded.blocks))
        if rollups:
            rows = [(s, RESOLUTION[r], d, n, p) for s, r, d, n, p in encoded.rollups]
            await conn.execute(INSERT_ROLLUPS, *columns(rows))
        else:
            await conn.execute(INSERT_MARKS, *columns([(b[0], b[1]) for b in encoded.blocks]))
        started = stages.add("sql_write", started)
        await tx.commit()
        stages.add("commit_fsync", started)
    return stages


async def sizes(conn: asyncpg.Connection) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in RELATIONS:
        row = await conn.fetchrow(
            "SELECT pg_total_relation_size(c.oid) AS total, pg_relation_size(c.oid) AS main,"
            " pg_indexes_size(c.oid) AS indexes, coalesce(pg_total_relation_size(c.reltoastrelid),"
            " 0) AS toast FROM pg_class c WHERE c.relname = $1",
            name,
        )
        out[name] = dict(row)
    return out


async def measure(
    requests: list[ingest.Request], span_ms: int, storage: str, rollups: bool
) -> dict[str, Any]:
    name = f"blocks_lab_{os.getpid()}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f"DROP DATABASE IF EXISTS {name}")
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        conn = await asyncpg.connect(ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}")
        try:
            return await _measure(conn, requests, span_ms, storage, rollups)
        finally:
            await conn.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name}")
        await admin.close()


async def _measure(
    conn: asyncpg.Connection,
    requests: list[ingest.Request],
    span_ms: int,
    storage: str,
    rollups: bool,
) -> dict[str, Any]:
    for sql in TABLES:
        await conn.execute(sql)
    storage, _, target = storage.partition("+target=")
    for table in ("blocks", "rollup_blocks"):
        if storage != "extended":
            await conn.execute(f"ALTER TABLE {table} ALTER COLUMN payload SET STORAGE {storage}")
        if target:  # payloads longer than this go to TOAST (default about 2 KB)
            await conn.execute(f"ALTER TABLE {table} SET (toast_tuple_target = {int(target)})")
    await conn.executemany(
        "INSERT INTO series VALUES ($1, 'cpu_usage', $2, $3::jsonb, 0)",
        [(i + 1, f"{i:032x}", f'{{"host":"host{i:03d}","region":"us-east"}}') for i in range(100)],
    )
    started = time.perf_counter()
    stages = await write_all(conn, requests, span_ms, rollups)
    elapsed = time.perf_counter() - started
    before = await sizes(conn)
    await conn.execute("VACUUM (ANALYZE)")
    after = await sizes(conn)
    samples = sum(r.samples for r in requests)
    return {
        "span_h": span_ms / HOUR,
        "storage": storage + (f"+target={target}" if target else ""),
        "rollups_at_write": rollups,
        "samples_per_s": samples / elapsed,
        "seconds_per_million": {k: v * 1e6 / samples for k, v in stages.seconds.items()},
        "bytes_per_sample": sum(r["total"] for r in before.values()) / samples,
        "bytes_per_sample_after_vacuum": sum(r["total"] for r in after.values()) / samples,
        "relations": before,
        "relations_after_vacuum": after,
    }


CASES = [
    # (span hours, payload storage, rollups at write: else marks for the rollup job)
    *[(h, "extended", True) for h in (1, 2, 6, 24)],
    (6, "external", True),
    (24, "external", True),
    (2, "external", True),
    (2, "external+target=128", True),
    (2, "extended", False),
    (24, "external", False),
]


def run(repeat: int) -> list[dict[str, Any]]:
    requests = ingest.requests()
    out = []
    for hours, storage, rollups in CASES:
        runs = [
            asyncio.run(measure(requests, int(hours * HOUR), storage, rollups))
            for _ in range(repeat)
        ]
        best = max(runs, key=lambda r: r["samples_per_s"])
        best["samples_per_s_runs"] = [r["samples_per_s"] for r in runs]
        out.append(best)
    return out


def show(results: list[dict[str, Any]]) -> None:
    print("\nPostgreSQL: span, payload storage, rollups at write or marks | bytes/sample of our")
    print("  relations (after VACUUM) | samples/s (each run)")
    for r in results:
        runs = ", ".join(f"{x:,.0f}" for x in r["samples_per_s_runs"])
        how = "rollups" if r["rollups_at_write"] else "marks"
        size = f"{r['bytes_per_sample']:.3f} ({r['bytes_per_sample_after_vacuum']:.3f})"
        print(f"  {r['span_h']:>4}h {r['storage']:>19} {how:>7} | {size} | {runs}")
        parts = ", ".join(
            f"{name} {rel['total'] / 1e6:.2f} MB (toast {rel['toast'] / 1e6:.2f})"
            for name, rel in r["relations"].items()
        )
        print(f"      {parts}")
        stages = ", ".join(f"{k} {v:.3f}" for k, v in r["seconds_per_million"].items())
        print(f"      s per 1M: {stages}")
