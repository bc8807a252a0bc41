"""Retention of the block layout's blocks (docs/storage.md#the-block-layout): per metric's own
cut-off, the blocks wholly before it are deleted and a block straddling it is re-encoded
without its expired samples, so that no sample before a cut-off is ever read back. The head's
rows and the raw horizons are the row store's business (it runs first)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.services.retention import RetentionPlan
from app.storage.blocks.codec import decode_block
from app.storage.blocks.read import Rows
from app.storage.maintenance import series_of
from app.storage.samples import block_table
from app.storage.samples.block_table import SPAN_MS


def _groups(plan: RetentionPlan) -> list[tuple[int, str]]:
    """(cut-off, condition on series_id): the default for metrics without an override, then
    each override's own. Metric names are validated identifiers, safe to inline."""
    others = ", ".join(f"'{m}'" for m in sorted(plan.overridden)) or "''"
    default = (
        plan.raw_cutoffs["*"],
        f"series_id NOT IN (SELECT id FROM series WHERE metric_name IN ({others}))",
    )
    return [default] + [
        (plan.raw_cutoffs[m], f"series_id IN {series_of(m)}") for m in sorted(plan.overridden)
    ]


async def drop_blocks(
    conn: AsyncConnection, plan: RetentionPlan, series: Sequence[int] | None = None
) -> int:
    """Drop the block samples before the plan's cut-offs (of these series only, if given);
    returns how many."""
    dropped = 0
    only = (
        ""
        if series is None
        else f" AND series_id IN ({','.join(str(int(i)) for i in series) or 'NULL'})"
    )
    for cut, condition in _groups(plan):
        of_series = condition + only
        expired = f"last_ts < {int(cut)} AND {of_series}"
        found = await conn.execute(
            text(f"SELECT coalesce(sum(count), 0) FROM blocks WHERE {expired}")
        )
        dropped += int(found.scalar_one())
        await conn.execute(text(f"DELETE FROM blocks WHERE {expired}"))
        dropped += await _trim(conn, int(cut), of_series)
    return dropped


async def _trim(conn: AsyncConnection, cut: int, of_series: str) -> int:
    """Re-encode the blocks straddling `cut` without their samples before it."""
    straddling = (
        f"span_start > {cut - SPAN_MS} AND first_ts < {cut} AND last_ts >= {cut} AND {of_series}"
    )
    blocks = await block_table.payloads(conn, straddling)
    if not blocks:
        return 0
    series, stamps, values, dropped = [], [], [], 0
    for block in blocks:
        ts, vals = decode_block(block.payload)
        keep = ts >= cut
        dropped += int(ts.size - keep.sum())
        series.append(np.full(int(keep.sum()), block.series, dtype=np.int64))
        stamps.append(ts[keep])
        values.append(vals[keep])
    # Every block straddling keeps its last sample (last_ts >= cut): each span is rewritten.
    await block_table.write(
        conn, Rows(np.concatenate(series), np.concatenate(stamps), np.concatenate(values))
    )
    return dropped
