"""Compaction in real databases: 1,000,000 head rows (the row table of today's samples) turned
into blocks, their 5m/1h aggregates and the deletion of the rows, in one transaction; then a pass
that merges 10,000 late rows scattered over every block (decode, last write wins, re-encode)."""

from __future__ import annotations

import asyncio
import io
import itertools
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

from app.storage import pg_copy
from app.storage.blocks.agg_codec import encode_aggregates
from app.storage.blocks.aggregates import aggregate
from app.storage.blocks.batch import encode_series
from app.storage.blocks.codec import decode_block
from app.storage.blocks.merge import merge_rows, series_spans
from app.storage.blocks.read import Rows, last_write_wins
from bench.blocks_lab import ingest, postgres_lab, sqlite_lab
from bench.blocks_lab.workloads import Lab

SPAN = 2 * 3_600_000
DAY = 86_400_000
LATE = 10_000
PG_HEAD = (
    "CREATE TABLE head (series_id integer, ts bigint, value double precision,"
    " PRIMARY KEY (series_id, ts))"
)
PG_LATE = (
    "INSERT INTO head SELECT * FROM unnest($1::integer[], $2::bigint[], $3::float8[])"
    " ON CONFLICT (series_id, ts) DO UPDATE SET value = excluded.value"
)
# the blocks late rows fall in, locked in key order (two writers lock them in the same order)
PG_LOCK_BLOCKS = (
    "SELECT b.series_id, b.span_start, b.payload FROM blocks b JOIN unnest($1::integer[],"
    " $2::bigint[]) AS k(s, t) ON b.series_id = k.s AND b.span_start = k.t ORDER BY 1, 2"
    " FOR UPDATE OF b"
)


def head_rows(lab: Lab) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n, points = lab.values.shape
    return np.repeat(np.arange(1, n + 1), points), lab.ts.ravel(), lab.values.ravel()


def late_rows(lab: Lab) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Overwrites of existing timestamps, scattered over every series and span."""
    rng = np.random.default_rng(9)
    n, points = lab.values.shape
    series, at = rng.integers(0, n, LATE), rng.integers(0, points, LATE)
    rows = last_write_wins(
        Rows(series + 1, lab.ts[series, at], np.round(rng.normal(50, 3, LATE), 3))
    )
    return rows.series, rows.ts, rows.values


def encode_all(sids: np.ndarray, ts: np.ndarray, values: np.ndarray, stages: ingest.Stages):  # type: ignore[no-untyped-def]
    """Blocks and 5m/1h day aggregates of rows sorted by (series, ts)."""
    started = time.perf_counter()
    blocks, rollups = [], []
    edges = np.flatnonzero(np.diff(sids)) + 1
    for lo, hi in itertools.pairwise([0, *edges.tolist(), sids.size]):
        sid, s_ts, s_values = int(sids[lo]), ts[lo:hi], values[lo:hi]
        for p, payload in encode_series(s_ts, s_values, SPAN):
            blocks.append(
                (sid, p.span_start, int(s_ts[p.lo]), int(s_ts[p.hi - 1]), p.hi - p.lo, payload)
            )
    started = stages.add("encode_blocks", started)
    for res, width in ingest.STORED_ROLLUPS.items():
        buckets = aggregate(sids, ts, values, width)
        for lo, hi in itertools.pairwise(
            series_spans(buckets.series, buckets.bucket, DAY).tolist()
        ):
            day = buckets.take(slice(lo, hi))
            start = int(day.bucket[0] - day.bucket[0] % DAY)
            rollups.append(
                (int(day.series[0]), res, start, len(day), encode_aggregates(day, width))
            )
    stages.add("encode_rollups", started)
    return blocks, rollups


def merged_blocks(
    old: dict[tuple[int, int], bytes], sids: np.ndarray, ts: np.ndarray, values: np.ndarray
):  # type: ignore[no-untyped-def]
    """Late rows (arrival order) merged into the blocks they fall in."""
    out = []
    order = np.lexsort((np.arange(ts.size), ts, sids))
    sids, ts, values = sids[order], ts[order], values[order]
    spans = ts - np.mod(ts, SPAN)
    for lo, hi in itertools.pairwise(series_spans(sids, ts, SPAN).tolist()):
        key = (int(sids[lo]), int(spans[lo]))
        block_ts, block_values = decode_block(old[key])
        m_ts, m_values = merge_rows(block_ts, block_values, ts[lo:hi], values[lo:hi])
        ((_, payload),) = encode_series(m_ts, m_values, SPAN)
        out.append((key[0], key[1], int(m_ts[0]), int(m_ts[-1]), m_ts.size, payload))
    return out


def sqlite_run(lab: Lab) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="blocks-lab-") as tmp:
        path = Path(tmp) / "lab.db"
        conn = sqlite_lab.open_db(path, 4096, "rowid_and_index")
        conn.execute(
            "CREATE TABLE head (series_id INTEGER, ts INTEGER, value REAL,"
            " PRIMARY KEY (series_id, ts)) WITHOUT ROWID"
        )
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO head VALUES (?, ?, ?)",
            zip(*(a.tolist() for a in head_rows(lab)), strict=True),
        )
        conn.execute("COMMIT")
        first = sqlite_compact(conn, lab, late=False)
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT OR REPLACE INTO head VALUES (?, ?, ?)",
            zip(*(a.tolist() for a in late_rows(lab)), strict=True),
        )
        conn.execute("COMMIT")
        second = sqlite_compact(conn, lab, late=True)
        conn.close()
    return {"compaction_s_per_million": first, "late_merge_s": second}


def sqlite_compact(conn: sqlite3.Connection, lab: Lab, late: bool) -> dict[str, float]:
    stages = ingest.Stages()
    started = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    rows = conn.execute("SELECT series_id, ts, value FROM head ORDER BY series_id, ts")
    table = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.float64).reshape(-1, 3)
    sids, ts, values = table[:, 0].astype(np.int64), table[:, 1].astype(np.int64), table[:, 2]
    started = stages.add("read_head", started)
    if late:
        keys = sorted(set(zip(sids.tolist(), (ts - np.mod(ts, SPAN)).tolist(), strict=True)))
        old = {}
        for sid, span in keys:
            old[(sid, span)] = conn.execute(
                "SELECT payload FROM blocks WHERE series_id = ? AND span_start = ?", (sid, span)
            ).fetchone()[0]
        started = stages.add("read_blocks", started)
        blocks = merged_blocks(old, sids, ts, values)
        started = stages.add("decode_merge_encode", started)
        marks = [(b[0], b[1]) for b in blocks]
        conn.executemany(sqlite_lab.INSERT_BLOCK, blocks)
        conn.executemany(sqlite_lab.INSERT_MARK, marks)
    else:
        blocks, rollups = encode_all(sids, ts, values, stages)
        started = time.perf_counter()
        conn.executemany(sqlite_lab.INSERT_BLOCK, blocks)
        conn.executemany(sqlite_lab.INSERT_ROLLUP, rollups)
    started = stages.add("write_blocks", started)
    conn.execute("DELETE FROM head WHERE ts <= ?", (int(ts.max()),))  # no truncate shortcut
    started = stages.add("delete_head", started)
    conn.execute("COMMIT")
    stages.add("commit", started)
    scale = 1.0 if late else 1e6 / lab.samples
    return {k: v * scale for k, v in stages.seconds.items()} | {
        "total": sum(stages.seconds.values()) * scale
    }


async def pg_run(lab: Lab) -> dict[str, Any]:
    name = f"blocks_lab_c{__import__('os').getpid()}"
    admin = await asyncpg.connect(postgres_lab.ADMIN_DSN)
    await admin.execute(f"DROP DATABASE IF EXISTS {name}")
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        conn = await asyncpg.connect(postgres_lab.ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}")
        try:
            for sql in postgres_lab.TABLES:
                await conn.execute(sql)
            await conn.execute(PG_HEAD)
            await conn.copy_to_table(
                "head",
                source=io.BytesIO(pg_copy.encode(pg_copy.SAMPLE_COLUMNS, head_rows(lab))),
                format="binary",
            )
            first = await pg_compact(conn, lab, late=False)
            dead = await conn.fetchval("SELECT pg_total_relation_size('head')")
            late_sids, late_ts, late_values = late_rows(lab)
            await conn.execute(
                PG_LATE,
                late_sids.tolist(),
                late_ts.tolist(),
                late_values.tolist(),
            )
            second = await pg_compact(conn, lab, late=True)
        finally:
            await conn.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name}")
        await admin.close()
    return {
        "compaction_s_per_million": first,
        "late_merge_s": second,
        "head_bytes_after_delete_before_vacuum": dead,
    }


async def pg_compact(conn: asyncpg.Connection, lab: Lab, late: bool) -> dict[str, float]:
    stages = ingest.Stages()
    started = time.perf_counter()
    tx = conn.transaction()
    await tx.start()
    chunks: list[bytes] = []

    async def keep(chunk: bytes) -> None:
        chunks.append(chunk)

    await conn.copy_from_query(
        "SELECT series_id, ts, value FROM head ORDER BY series_id, ts", output=keep, format="binary"
    )
    rows = pg_copy.decode(b"".join(chunks), pg_copy.SAMPLE_COLUMNS)
    sids, ts, values = (
        rows["value0"].astype(np.int64),
        rows["value1"].astype(np.int64),
        rows["value2"].astype(np.float64),
    )
    started = stages.add("read_head", started)
    if late:
        spans = ts - np.mod(ts, SPAN)
        found = await conn.fetch(
            PG_LOCK_BLOCKS,
            sids.tolist(),
            spans.tolist(),
        )
        old = {(r[0], r[1]): r[2] for r in found}
        started = stages.add("read_blocks", started)
        blocks = merged_blocks(old, sids, ts, values)
        started = stages.add("decode_merge_encode", started)
        await conn.execute(postgres_lab.INSERT_BLOCKS, *postgres_lab.columns(blocks))
        await conn.execute(
            postgres_lab.INSERT_MARKS, *postgres_lab.columns([(b[0], b[1]) for b in blocks])
        )
    else:
        blocks, rollups = encode_all(sids, ts, values, stages)
        started = time.perf_counter()
        await conn.execute(postgres_lab.INSERT_BLOCKS, *postgres_lab.columns(blocks))
        rows_ = [(s, postgres_lab.RESOLUTION[r], d, n, p) for s, r, d, n, p in rollups]
        await conn.execute(postgres_lab.INSERT_ROLLUPS, *postgres_lab.columns(rows_))
    started = stages.add("write_blocks", started)
    await conn.execute("DELETE FROM head WHERE ts <= $1", int(ts.max()))
    started = stages.add("delete_head", started)
    await tx.commit()
    stages.add("commit", started)
    scale = 1.0 if late else 1e6 / lab.samples
    return {k: v * scale for k, v in stages.seconds.items()} | {
        "total": sum(stages.seconds.values()) * scale
    }


def run(labs: list[Lab], repeat: int) -> dict[str, Any]:
    lab = labs[0]
    return {
        "sqlite": [sqlite_run(lab) for _ in range(repeat)],
        "postgres": [asyncio.run(pg_run(lab)) for _ in range(repeat)],
    }


def show(results: dict[str, Any]) -> None:
    print("\ncompaction of 1,000,000 head rows (s per 1M) and a merge of 10,000 late rows (s)")
    for backend, runs in results.items():
        for r in runs:
            first = ", ".join(f"{k} {v:.3f}" for k, v in r["compaction_s_per_million"].items())
            second = ", ".join(f"{k} {v:.3f}" for k, v in r["late_merge_s"].items())
            print(f"  {backend}: {first}\n    late: {second}")
            if "head_bytes_after_delete_before_vacuum" in r:
                print(
                    "    head table after the delete, before VACUUM:"
                    f" {r['head_bytes_after_delete_before_vacuum'] / 1e6:.1f} MB"
                )
