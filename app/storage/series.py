"""The series registry on the write path: look series up, and create the missing ones within
MAX_SERIES_PER_METRIC and MAX_SERIES_TOTAL, under a lock so the limits hold across processes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import orjson
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.config import Settings
from app.model import SeriesKey
from app.storage import dialect, schema
from app.storage.writes import CardinalityExceeded
from app.timeutil import now_ms


async def resolve_for_write(
    conn: AsyncConnection,
    keys: Sequence[SeriesKey],
    ids: np.ndarray,
    missing: list[int],
    all_or_nothing: bool,
    limits: Settings,
) -> dict[int, CardinalityExceeded]:
    """Fill in `ids` of the `missing` keys (absent from the store's id cache): found, or created
    within the limits, or left -1 for rejected ones, which are returned."""
    if not missing:
        return {}
    await dialect.lock_series_creation(conn)
    found = await _lookup_series(conn, [keys[i] for i in missing])
    rejected: dict[int, CardinalityExceeded] = {}
    to_create = []
    for i in missing:
        sid = found.get((keys[i].metric, keys[i].fingerprint))
        if sid is None:
            to_create.append(i)
        else:
            ids[i] = sid
    if to_create:
        allowed, rejected = await _apply_limits(conn, keys, to_create, limits)
        if rejected and all_or_nothing:
            raise next(iter(rejected.values()))
        created = await _create_series(conn, [keys[i] for i in allowed])
        for i in allowed:
            ids[i] = created[(keys[i].metric, keys[i].fingerprint)]
    return rejected


async def _lookup_series(
    conn: AsyncConnection, keys: Sequence[SeriesKey]
) -> dict[tuple[str, str], int]:
    found: dict[tuple[str, str], int] = {}
    wanted = {(k.metric, k.fingerprint) for k in keys}
    fingerprints = sorted({k.fingerprint for k in keys})
    cols = schema.series.c
    for start in range(0, len(fingerprints), 500):
        chunk = fingerprints[start : start + 500]
        rows = await conn.execute(
            select(cols.id, cols.metric_name, cols.fingerprint).where(cols.fingerprint.in_(chunk))
        )
        for sid, metric, fp in rows:
            if (metric, fp) in wanted:
                found[(metric, fp)] = sid
    return found


async def _apply_limits(
    conn: AsyncConnection, keys: Sequence[SeriesKey], to_create: list[int], limits: Settings
) -> tuple[list[int], dict[int, CardinalityExceeded]]:
    cols = schema.series.c
    metrics = sorted({keys[i].metric for i in to_create})
    per_metric: dict[str, int] = dict(
        (
            await conn.execute(
                select(cols.metric_name, func.count())
                .where(cols.metric_name.in_(metrics))
                .group_by(cols.metric_name)
            )
        ).all()
    )
    total = (await conn.execute(select(func.count()).select_from(schema.series))).scalar_one()
    allowed, rejected = [], {}
    for i in to_create:
        metric = keys[i].metric
        if per_metric.get(metric, 0) >= limits.max_series_per_metric:
            rejected[i] = CardinalityExceeded(metric, limits.max_series_per_metric, "per_metric")
        elif total >= limits.max_series_total:
            rejected[i] = CardinalityExceeded(metric, limits.max_series_total, "total")
        else:
            allowed.append(i)
            per_metric[metric] = per_metric.get(metric, 0) + 1
            total += 1
    return allowed, rejected


async def _create_series(
    conn: AsyncConnection, keys: Sequence[SeriesKey]
) -> dict[tuple[str, str], int]:
    if not keys:
        return {}
    created_ms = now_ms()
    rows = [
        {
            "metric_name": k.metric,
            "fingerprint": k.fingerprint,
            "labels": orjson.loads(k.labels_json),
            "created_ms": created_ms,
        }
        for k in keys
    ]
    cols = schema.series.c
    result = await conn.execute(
        insert(schema.series).returning(cols.id, cols.metric_name, cols.fingerprint), rows
    )
    return {(metric, fp): sid for sid, metric, fp in result}
