"""Blocks in a real SQLite file: the 1,000,000-sample workload written as one durable
transaction per 10,000-sample request (WAL, synchronous=FULL), for several table layouts, spans
and page sizes; file size, page use (dbstat) and where the time goes."""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.blocks_lab import ingest

HOUR = 3_600_000
SERIES_SQL = (
    "CREATE TABLE series (id INTEGER PRIMARY KEY, metric_name VARCHAR(255) NOT NULL,"
    " fingerprint VARCHAR(32) NOT NULL, labels JSON NOT NULL, created_ms BIGINT NOT NULL,"
    " UNIQUE (metric_name, fingerprint))"
)
LAYOUTS = {
    # the key in the table's own B-tree; rows are stored in key order
    "without_rowid": (
        "CREATE TABLE blocks (series_id INTEGER NOT NULL, span_start INTEGER NOT NULL,"
        " first_ts INTEGER NOT NULL, last_ts INTEGER NOT NULL, count INTEGER NOT NULL,"
        " payload BLOB NOT NULL, PRIMARY KEY (series_id, span_start)) WITHOUT ROWID"
    ),
    # a rowid table and a separate unique index on the key
    "rowid_and_index": (
        "CREATE TABLE blocks (series_id INTEGER NOT NULL, span_start INTEGER NOT NULL,"
        " first_ts INTEGER NOT NULL, last_ts INTEGER NOT NULL, count INTEGER NOT NULL,"
        " payload BLOB NOT NULL, UNIQUE (series_id, span_start))"
    ),
}
# a rowid table: 5m payloads of a day (1-3 KB) overflow a WITHOUT ROWID table's 4 KB pages
ROLLUPS_SQL = (
    "CREATE TABLE rollup_blocks (series_id INTEGER NOT NULL, resolution TEXT NOT NULL,"
    " day_start INTEGER NOT NULL, buckets INTEGER NOT NULL, payload BLOB NOT NULL,"
    " UNIQUE (series_id, resolution, day_start))"
)
MARKS_SQL = (
    "CREATE TABLE block_dirty (series_id INTEGER NOT NULL, span_start INTEGER NOT NULL,"
    " PRIMARY KEY (series_id, span_start)) WITHOUT ROWID"
)
INSERT_BLOCK = (
    "INSERT INTO blocks (series_id, span_start, first_ts, last_ts, count, payload)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (series_id, span_start) DO UPDATE SET"
    " first_ts = excluded.first_ts, last_ts = excluded.last_ts, count = excluded.count,"
    " payload = excluded.payload"
)
INSERT_ROLLUP = (
    "INSERT INTO rollup_blocks VALUES (?, ?, ?, ?, ?) ON CONFLICT (series_id, resolution,"
    " day_start) DO UPDATE SET buckets = excluded.buckets, payload = excluded.payload"
)
INSERT_MARK = "INSERT OR IGNORE INTO block_dirty VALUES (?, ?)"
EXISTING = (
    "SELECT span_start, payload FROM blocks WHERE series_id = ? AND span_start BETWEEN ? AND ?"
)


def open_db(path: Path, page_size: int, layout: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA page_size={page_size}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    for sql in (SERIES_SQL, LAYOUTS[layout], ROLLUPS_SQL, MARKS_SQL):
        conn.execute(sql)
    conn.executemany(
        "INSERT INTO series VALUES (?, 'cpu_usage', ?, ?, 0)",
        [(i + 1, f"{i:032x}", f'{{"host":"host{i:03d}","region":"us-east"}}') for i in range(100)],
    )
    return conn


def write_all(
    conn: sqlite3.Connection, requests: list[ingest.Request], span_ms: int, rollups: bool
) -> ingest.Stages:
    """Every request in its own transaction: read what exists in its spans, write its blocks
    (and its 5m/1h aggregates, or marks for the rollup job), commit."""
    stages = ingest.Stages()
    for request in requests:
        encoded = ingest.encode_request(request, span_ms, stages, rollups)
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        sid, first, last = encoded.blocks[0][0], encoded.blocks[0][1], encoded.blocks[-1][1]
        conn.execute(EXISTING, (sid, first, last)).fetchall()
        started = stages.add("sql_read_existing", started)
        conn.executemany(INSERT_BLOCK, encoded.blocks)
        if rollups:
            conn.executemany(INSERT_ROLLUP, encoded.rollups)
        else:
            conn.executemany(INSERT_MARK, [(b[0], b[1]) for b in encoded.blocks])
        started = stages.add("sql_write", started)
        conn.execute("COMMIT")
        stages.add("commit_fsync", started)
    return stages


def page_use(conn: sqlite3.Connection) -> dict[str, Any]:
    rows = conn.execute(
        "SELECT name, pagetype, count(*), sum(pgsize), sum(unused) FROM dbstat"
        " GROUP BY name, pagetype"
    ).fetchall()
    return {
        f"{name}/{kind}": {"pages": n, "bytes": size, "unused": unused}
        for name, kind, n, size, unused in rows
    }


def measure(
    requests: list[ingest.Request], layout: str, span_ms: int, page_size: int, rollups: bool
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="blocks-lab-") as tmp:
        path = Path(tmp) / "lab.db"
        conn = open_db(path, page_size, layout)
        started = time.perf_counter()
        stages = write_all(conn, requests, span_ms, rollups)
        elapsed = time.perf_counter() - started
        wal = os.path.getsize(f"{path}-wal")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = path.stat().st_size
        use = page_use(conn)
        conn.execute("VACUUM")
        vacuumed = path.stat().st_size
        conn.close()
    samples = sum(r.samples for r in requests)
    return {
        "layout": layout,
        "span_h": span_ms / HOUR,
        "page_size": page_size,
        "rollups_at_write": rollups,
        "samples_per_s": samples / elapsed,
        "seconds_per_million": {k: v * 1e6 / samples for k, v in stages.seconds.items()},
        "wal_bytes_before_checkpoint": wal,
        "file_bytes_per_sample": size / samples,
        "vacuumed_bytes_per_sample": vacuumed / samples,
        "pages": use,
    }


CASES = [
    # (layout, span hours, page size, rollups at write: else marks for the rollup job)
    *[("without_rowid", h, 4096, True) for h in (1, 2, 6, 24)],
    *[("rowid_and_index", h, 4096, True) for h in (1, 2, 6, 24)],
    ("rowid_and_index", 2, 8192, True),
    ("rowid_and_index", 2, 16384, True),
    ("without_rowid", 2, 16384, True),
    ("rowid_and_index", 2, 4096, False),
    ("rowid_and_index", 2, 16384, False),
]


def run(repeat: int) -> list[dict[str, Any]]:
    requests = ingest.requests()
    out = []
    for layout, hours, page, rollups in CASES:
        runs = [measure(requests, layout, int(hours * HOUR), page, rollups) for _ in range(repeat)]
        best = max(runs, key=lambda r: r["samples_per_s"])
        best["samples_per_s_runs"] = [r["samples_per_s"] for r in runs]
        out.append(best)
    return out


def show(results: list[dict[str, Any]]) -> None:
    print("\nSQLite: layout, span, page size, rollups at write or marks | bytes/sample of the")
    print("  file (after VACUUM) | samples/s (each run)")
    for r in results:
        runs = ", ".join(f"{x:,.0f}" for x in r["samples_per_s_runs"])
        how = "rollups" if r["rollups_at_write"] else "marks"
        size = f"{r['file_bytes_per_sample']:.3f} ({r['vacuumed_bytes_per_sample']:.3f})"
        print(
            f"  {r['layout']:>16} {r['span_h']:>4}h {r['page_size']:>6} {how:>7} | {size} | {runs}"
        )
        stages = ", ".join(f"{k} {v:.3f}" for k, v in r["seconds_per_million"].items())
        print(f"      s per 1M: {stages}")
