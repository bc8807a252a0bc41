"""Converting a database between the two layouts of raw samples (migration 0007,
docs/storage.md#converting-a-database): the closed spans of the `samples` rows into `blocks`
(upgrade), and every block back into `samples` rows (downgrade).

Both run inside the migration's own transaction on its synchronous connection, so a conversion
is all or nothing; they go a chunk of series and one 2 h span at a time, so memory is bounded by
the samples of CHUNK_SERIES series in a span whatever the database holds. Upgrade folds rows into
blocks exactly as compaction does (app.storage.samples.compaction: the rows laid over any block
of their span, newest winning, encoded by `block_table.block_rows`); downgrade decodes blocks
and inserts their samples where no head row holds the key (a head row is newer), on PostgreSQL
into the day partitions they need.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from app.storage import exact_values
from app.storage.blocks.read import Rows, decode_range, overlay
from app.storage.samples.block_table import SPAN_MS, UPSERT, block_rows, stored
from app.storage.samples.compaction import closed_span_end, exact_rows
from app.storage.samples.partitions import DAY_MS, PARTITION_LOCK_KEY, partition_name
from app.storage.samples.row_sql import id_list

CHUNK_SERIES = 200
EVERYTHING = 2**62


def _series_chunks(conn: Connection, table: str, where: str) -> Iterator[list[int]]:
    """The series ids of `table` rows matching `where`, CHUNK_SERIES at a time, in id order."""
    after = -1
    while True:
        found = conn.execute(
            text(
                f"SELECT DISTINCT series_id FROM {table} WHERE {where} AND series_id > :after"
                " ORDER BY series_id LIMIT :n"
            ),
            {"after": after, "n": CHUNK_SERIES},
        )
        ids = [int(r[0]) for r in found]
        if not ids:
            return
        yield ids
        after = ids[-1]


def _spans(conn: Connection, table: str, column: str, where: str) -> Iterator[int]:
    """The spans (their start, ms) holding `table` rows matching `where`, ascending, found one
    after the other (spans without rows are skipped)."""
    start = -EVERYTHING
    while True:
        sql = f"SELECT min({column}) FROM {table} WHERE {where} AND {column} >= :start"
        first = conn.execute(text(sql), {"start": start}).scalar()
        if first is None:
            return
        span = int(first) - int(first) % SPAN_MS
        yield span
        start = span + SPAN_MS


def to_blocks(conn: Connection, closed_before: int) -> tuple[int, int]:
    """Fold every `samples` row of a span ending by `closed_before` into its block; returns
    the rows folded and the blocks written."""
    cut = closed_span_end(closed_before)
    folded = written = 0
    for ids in _series_chunks(conn, "samples", f"ts < {int(cut)}"):
        series = f"series_id IN ({id_list(ids)})"
        for span in _spans(conn, "samples", "ts", f"{series} AND ts < {int(cut)}"):
            where = f"{series} AND ts >= {span} AND ts < {span + SPAN_MS}"
            head = exact_rows(
                conn.execute(
                    text(f"SELECT series_id, ts, value, bits FROM samples WHERE {where}")
                ).all()
            )
            merged = overlay(_blocks_under(conn, head, series, span), head)
            params = block_rows(merged)
            if params:
                conn.execute(text(UPSERT), params)
            conn.execute(text(f"DELETE FROM samples WHERE {where}"))
            folded, written = folded + len(head), written + len(params)
    return folded, written


def _blocks_under(conn: Connection, head: Rows, series: str, span: int) -> Rows:
    """The samples of the span's existing blocks of the series `head` holds (a database that
    ran the block layout before it was the default has some)."""
    rows = conn.execute(
        text(
            "SELECT series_id, first_ts, last_ts, payload FROM blocks"
            f" WHERE {series} AND span_start = {span}"
        )
    ).all()
    touched = set(head.series.tolist())
    return decode_range(stored([r for r in rows if int(r[0]) in touched]), -EVERYTHING, EVERYTHING)


def to_rows(conn: Connection) -> int:
    """Decode every block into `samples` rows (where no row holds its key: a head row is newer
    than its block) and delete the blocks; returns the samples inserted."""
    postgres = conn.dialect.name == "postgresql"
    inserted = 0
    for ids in _series_chunks(conn, "blocks", "true"):
        series = f"series_id IN ({id_list(ids)})"
        for span in _spans(conn, "blocks", "span_start", series):
            where = f"{series} AND span_start = {span}"
            found = conn.execute(
                text(
                    "SELECT series_id, first_ts, last_ts, payload FROM blocks"
                    f" WHERE {where} ORDER BY series_id, span_start"
                )
            ).all()
            rows = decode_range(stored(found), -EVERYTHING, EVERYTHING)
            if postgres:
                inserted += _insert_postgres(conn, rows)
            else:
                inserted += _insert_sqlite(conn, rows)
            conn.execute(text(f"DELETE FROM blocks WHERE {where}"))
    return inserted


def _insert_postgres(conn: Connection, rows: Rows) -> int:
    """Into the day partitions (created if retention dropped them), values as binary float8
    parameters, which keep every bit pattern."""
    if not len(rows):
        return 0
    days = sorted(set((rows.ts // DAY_MS).tolist()))
    conn.execute(text(f"SELECT pg_advisory_xact_lock({PARTITION_LOCK_KEY})"))
    for d in days:
        conn.execute(
            text(
                f"CREATE TABLE IF NOT EXISTS {partition_name(d)} PARTITION OF samples"
                f" FOR VALUES FROM ({d * DAY_MS}) TO ({(d + 1) * DAY_MS})"
            )
        )
    result = conn.execute(
        text(
            "INSERT INTO samples (series_id, ts, value) SELECT * FROM unnest("
            "CAST(:s AS integer[]), CAST(:t AS bigint[]), CAST(:v AS double precision[]))"
            " ON CONFLICT (series_id, ts) DO NOTHING"
        ),
        {"s": rows.series.tolist(), "t": rows.ts.tolist(), "v": rows.values.tolist()},
    )
    return int(result.rowcount)


def _insert_sqlite(conn: Connection, rows: Rows) -> int:
    """NaN and -0.0 as 0.0 with their bits beside, as the row layout writes them."""
    apart = exact_values.kept_apart(rows.values)
    params: Sequence[dict[str, Any]] = [
        {"s": s, "t": t, "v": 0.0 if a else v, "b": b if a else None}
        for s, t, v, a, b in zip(
            rows.series.tolist(),
            rows.ts.tolist(),
            rows.values.tolist(),
            apart.tolist(),
            exact_values.as_bits(rows.values).tolist(),
            strict=True,
        )
    ]
    if not params:
        return 0
    before = _count(conn)
    conn.execute(
        text(
            "INSERT INTO samples (series_id, ts, value, bits) VALUES (:s, :t, :v, :b)"
            " ON CONFLICT (series_id, ts) DO NOTHING"
        ),
        params,
    )
    return _count(conn) - before


def _count(conn: Connection) -> int:
    return int(conn.execute(text("SELECT total_changes()")).scalar_one())
