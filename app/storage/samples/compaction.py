"""Compaction of the block layout (docs/storage.md#the-block-layout): the head's rows of closed
spans become blocks.

Per chunk of series, one transaction: the head rows of closed spans are deleted and returned
(`DELETE ... RETURNING`, so exactly the rows folded in are the rows removed: a row written by a
concurrent transaction either waits for the delete's row lock and is written again after it, or
is not seen and stays in the head, newer than the block), the existing blocks of the spans they
touch are decoded, the rows laid over them (a head row is newer than its span's block: last
write wins) and the spans re-encoded and upserted. A crash at any moment leaves either the
previous state or the committed chunk: nothing acknowledged is lost, and a rerun carries on.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.storage.blocks.read import Rows, decode_range, overlay
from app.storage.dialect import lock_blocks
from app.storage.samples import block_table
from app.storage.samples.block_table import SPAN_MS, spans_of
from app.storage.samples.row_sql import id_list
from app.storage.samples.rows import RowSampleStore
from app.storage.samples.sqlite_rows import fetch_on

CHUNK_SERIES = 200
EVERYTHING = 2**62
Guard = Callable[[], AbstractAsyncContextManager[object]]


@dataclass(frozen=True)
class Compacted:
    """What a compaction did: head rows folded into blocks, blocks written, transactions."""

    rows: int = 0
    blocks: int = 0
    chunks: int = 0


def closed_span_end(closed_before: int) -> int:
    """The start of the span holding `closed_before`: every span before it has closed."""
    return closed_before - closed_before % SPAN_MS


async def compact(
    writer: AsyncEngine,
    head: RowSampleStore,
    closed_before: int,
    guard: Guard = lambda: nullcontext(),
) -> Compacted:
    """Fold every head row of a span ending by `closed_before` into its block, one transaction
    per chunk of series (each under `guard`, say the store's write lock). The caller holds the
    job lock: one compaction at a time."""
    cut = closed_span_end(closed_before)
    rows = blocks = chunks = 0
    after = -1
    while True:
        async with guard(), writer.begin() as conn:
            await lock_blocks(conn)
            found = await conn.execute(
                text(
                    "SELECT DISTINCT series_id FROM samples WHERE ts < :cut AND series_id > :after"
                    " ORDER BY series_id LIMIT :n"
                ),
                {"cut": cut, "after": after, "n": CHUNK_SERIES},
            )
            ids = [int(r[0]) for r in found.all()]
            if not ids:
                break
            folded, written = await compact_series(conn, head, ids, cut)
        rows, blocks, chunks, after = rows + folded, blocks + written, chunks + 1, ids[-1]
    return Compacted(rows, blocks, chunks)


async def compact_series(
    conn: AsyncConnection, store: RowSampleStore, ids: list[int], cut: int
) -> tuple[int, int]:
    """In the caller's transaction: the head rows of these series before `cut` into blocks.
    Returns the rows folded in and the blocks written."""
    head = await take_head(conn, store, ids, cut)
    if not len(head):
        return 0, 0
    spans = spans_of(head.ts)
    existing = await block_table.of_spans(conn, head.series, spans)
    merged = overlay(decode_range(existing, -EVERYTHING, EVERYTHING), head)
    return len(head), await block_table.write(conn, merged)


async def take_head(conn: AsyncConnection, head: RowSampleStore, ids: list[int], cut: int) -> Rows:
    """Delete the head rows of these series before `cut` and return them, sorted, with their
    exact values.

    Where the writer's transaction excludes every other writer (SQLite's BEGIN IMMEDIATE), the
    rows are read through the head's fast raw read and then deleted by the same condition;
    elsewhere (PostgreSQL, READ COMMITTED) `DELETE ... RETURNING` takes exactly the rows it
    deletes, so a row committed in between is neither deleted unread nor lost."""
    return await take_head_where(conn, head, f"series_id IN ({id_list(ids)}) AND ts < {int(cut)}")


async def take_head_where(conn: AsyncConnection, head: RowSampleStore, where: str) -> Rows:
    """Delete the head rows matching `where` and return them, sorted, with their exact values
    (as `take_head`)."""
    if head.backend.writers_exclude_each_other:
        sids, ts, values = await head.backend.fetch(conn, where, EVERYTHING)
        await conn.execute(text(f"DELETE FROM samples WHERE {where}"))
        return Rows(sids, ts, values)
    result = await conn.execute(
        text(f"DELETE FROM samples WHERE {where} RETURNING series_id, ts, value, bits")
    )
    return exact_rows(result.all())


def take_head_where_on(db: sqlite3.Connection, where: str) -> Rows:
    """`take_head_where` on SQLite, through the sqlite3 connection on its thread."""
    sids, ts, values = fetch_on(db, where, EVERYTHING)
    db.execute(f"DELETE FROM samples WHERE {where}")
    return Rows(sids, ts, values)


def exact_rows(rows: Sequence[Sequence[Any]]) -> Rows:
    """`samples` rows of (series_id, ts, value, bits) as sorted Rows with their exact values
    (SQLite keeps NaN and -0.0 apart in `bits`, app.storage.exact_values)."""
    sids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    ts = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
    values = np.fromiter((r[2] for r in rows), dtype=np.float64, count=len(rows))
    apart = [i for i, r in enumerate(rows) if r[3] is not None]
    if apart:
        values[apart] = np.array([rows[i][3] for i in apart], dtype=np.int64).view(np.float64)
    order = np.lexsort((ts, sids))
    return Rows(sids[order], ts[order], values[order])
