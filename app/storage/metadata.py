"""Metric metadata: written as agents send it, read in the shape of Prometheus' /api/v1/metadata.

An agent sends the same metadata again and again (Prometheus every minute, for every metric it
scrapes), so a row is written only when it is new or its `updated_ms` is older than
`TOUCH_AFTER_MS`; the store remembers what it wrote.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from app.model import MetricMetadata
from app.storage import schema

MAX_HELP = 4096
MAX_UNIT = 255
TOUCH_AFTER_MS = 3_600_000
ROWS_PER_STATEMENT = 1000  # 6 parameters a row, within SQLite's limit per statement
Row = dict[str, object]


def fingerprint(entry: MetricMetadata) -> str:
    text = "\x00".join((entry.type, entry.help, entry.unit))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def rows_of(entries: Sequence[MetricMetadata], now_ms: int) -> list[Row]:
    """One row per distinct entry; help and unit cut to what the table keeps."""
    rows: dict[tuple[str, str], Row] = {}
    for entry in entries:
        kept = MetricMetadata(
            entry.metric, entry.type, entry.help[:MAX_HELP], entry.unit[:MAX_UNIT]
        )
        fp = fingerprint(kept)
        rows[(kept.metric, fp)] = {
            "metric_name": kept.metric,
            "fingerprint": fp,
            "type": kept.type,
            "help": kept.help,
            "unit": kept.unit,
            "updated_ms": now_ms,
        }
    return list(rows.values())


async def upsert(conn: AsyncConnection, rows: list[Row]) -> None:
    """Insert rows, refreshing `updated_ms` of those that exist (the one dialect difference:
    which dialect's INSERT ... ON CONFLICT builder to use)."""
    table = schema.metric_metadata
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        statement = insert(table).values(rows[start : start + ROWS_PER_STATEMENT])
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.metric_name, table.c.fingerprint],
            set_={"updated_ms": statement.excluded.updated_ms},
        )
        await conn.execute(statement)


async def read(
    conn: AsyncConnection, metric: str | None, limit: int | None
) -> dict[str, list[dict[str, str]]]:
    """`{metric: [{"type", "help", "unit"}, ...]}`, metrics sorted by name, at most `limit` of
    them; a metric's entries newest first."""
    cols = schema.metric_metadata.c
    query = select(cols.metric_name, cols.type, cols.help, cols.unit).order_by(
        cols.metric_name, cols.updated_ms.desc(), cols.fingerprint
    )
    if metric is not None:
        query = query.where(cols.metric_name == metric)
    out: dict[str, list[dict[str, str]]] = {}
    for name, kind, help_text, unit in await conn.execute(query):
        if name not in out and limit is not None and len(out) >= limit:
            break
        out.setdefault(name, []).append({"type": kind, "help": help_text, "unit": unit})
    return out
