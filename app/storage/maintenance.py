"""The SQL behind the jobs: materialize invalidated buckets, drop expired data, record runs.

Decisions (which buckets are closed, what a cut-off is) are made by the pure functions in
`app.services`; these functions only act on them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import orjson
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.services.retention import RetentionPlan
from app.services.rollup import Resolution
from app.storage import dialect, schema
from app.storage.samples.protocol import MarkedBuckets, SampleStore
from app.storage.writes import Policies, policy_sql


async def materialize(
    conn: AsyncConnection, samples: SampleStore, res: Resolution, closed_before: int
) -> int:
    """Recompute every invalidated bucket of `res` that starts before `closed_before` from raw.

    Returns how many buckets were written. Must run in a transaction holding the job lock.
    """
    claimed = await dialect.claim_dirty(conn, res.name, closed_before)
    if claimed:
        await samples.store_aggregates(conn, MarkedBuckets("claimed"), res, selected=claimed)
    await _advance_state(conn, res, closed_before)
    return claimed


async def _advance_state(conn: AsyncConnection, res: Resolution, closed_before: int) -> None:
    cols = schema.rollup_state.c
    found = await conn.execute(select(cols.materialized_until).where(cols.resolution == res.name))
    current = found.scalar_one_or_none()
    if current is None:
        await conn.execute(
            schema.rollup_state.insert().values(
                resolution=res.name, materialized_until=closed_before
            )
        )
    elif closed_before > current:
        await conn.execute(
            update(schema.rollup_state)
            .where(cols.resolution == res.name)
            .values(materialized_until=closed_before)
        )


async def pending_invalidations(conn: AsyncConnection, res: Resolution) -> int:
    table = schema.dirty[res.name]
    return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


# -- retention ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DropReport:
    raw_rows: int = 0
    rollup_rows: int = 0
    partitions: int = 0


def series_of(metric: str) -> str:
    return f"(SELECT id FROM series WHERE metric_name = '{metric}')"


async def drop_expired(
    conn: AsyncConnection, samples: SampleStore, plan: RetentionPlan
) -> DropReport:
    """Delete what the plan says has expired. Rollups must be current for the raw being dropped."""
    raw = await samples.drop_before(conn, plan)
    rollup_rows = 0
    for res_name, cutoffs in plan.rollup_cutoffs.items():
        rollup_rows += await delete_by_metric(
            conn, f"rollup_{res_name}", "bucket", cutoffs, plan.overridden
        )
    return DropReport(raw.rows, rollup_rows, raw.partitions)


async def delete_by_metric(
    conn: AsyncConnection,
    table: str,
    column: str,
    cutoffs: Mapping[str, int],
    overridden: frozenset[str],
) -> int:
    """Delete rows older than the default cut-off ('*') for metrics without an override, and
    older than each override's own cut-off for the others. Metric names are validated identifiers
    (letters, digits, '_' and ':'), so they are safe to inline."""
    removed = 0
    others = ", ".join(f"'{m}'" for m in sorted(overridden)) or "''"
    result = await conn.execute(
        text(
            f"DELETE FROM {table} WHERE {column} < :cut AND series_id NOT IN"
            f" (SELECT id FROM series WHERE metric_name IN ({others}))"
        ),
        {"cut": cutoffs["*"]},
    )
    removed += int(result.rowcount or 0)
    for metric in sorted(overridden):
        result = await conn.execute(
            text(f"DELETE FROM {table} WHERE {column} < :cut AND series_id IN {series_of(metric)}"),
            {"cut": cutoffs[metric]},
        )
        removed += int(result.rowcount or 0)
    return removed


async def metric_cutoffs(conn: AsyncConnection, plan: RetentionPlan) -> dict[str, int]:
    names = (await conn.execute(select(schema.series.c.metric_name).distinct())).scalars()
    return {name: plan.raw_cutoff(name) for name in names}


async def record_horizons(conn: AsyncConnection, horizons: Mapping[str, int]) -> None:
    """Move each metric's raw horizon forward to the time given (never back)."""
    cols = schema.raw_horizon.c
    for metric, before in horizons.items():
        current = (
            await conn.execute(select(cols.dropped_before).where(cols.metric_name == metric))
        ).scalar_one_or_none()
        if current is None:
            await conn.execute(
                schema.raw_horizon.insert().values(metric_name=metric, dropped_before=before)
            )
        elif before > current:
            await conn.execute(
                update(schema.raw_horizon)
                .where(cols.metric_name == metric)
                .values(dropped_before=before)
            )


POLICY_SQL_ASYNCPG = policy_sql("= ANY($1::text[])")
MANY_NAMES = 500


async def read_policies(conn: AsyncConnection, names: Sequence[str]) -> Policies:
    """The raw horizons and retention overrides of these metrics (and '*'), in the caller's
    transaction: read on every write and every query, one small statement."""
    params: object
    if dialect.is_postgres(conn):
        statement, params = policy_sql("= ANY(CAST(:names AS text[]))"), list(names)
    else:
        statement = policy_sql("IN (SELECT value FROM json_each(:names))")
        params = orjson.dumps(list(names)).decode()
    return Policies.of(await conn.execute(text(statement), {"names": params}))


def sqlite_policy_query(names: Sequence[str]) -> tuple[str, tuple[str, ...]]:
    """`read_policies` for the sqlite3 connection itself: the statement and its parameters. A
    list of placeholders costs half the time of json_each for the few names of a usual write."""
    if len(names) > MANY_NAMES:
        encoded = orjson.dumps(list(names)).decode()
        return _sqlite_policy_sql(0), (encoded, encoded)
    return _sqlite_policy_sql(len(names)), (*names, *names)


@functools.lru_cache(maxsize=64)
def _sqlite_policy_sql(count: int) -> str:
    if count == 0:
        return policy_sql("IN (SELECT value FROM json_each(?))")
    return policy_sql(f"IN ({', '.join('?' * count)})")


# -- retention overrides --------------------------------------------------------------------------

OVERRIDE_COLUMNS = {"raw": "raw_ms", "1m": "r1m_ms", "5m": "r5m_ms", "1h": "r1h_ms"}


async def read_overrides(conn: AsyncConnection) -> dict[str, dict[str, int]]:
    """metric -> {"raw": ms, "1m": ms, ...} holding only the resolutions that are overridden."""
    out: dict[str, dict[str, int]] = {}
    for row in (await conn.execute(select(schema.retention_overrides))).mappings():
        values = {k: row[c] for k, c in OVERRIDE_COLUMNS.items() if row[c] is not None}
        out[row["metric_name"]] = values
    return out


async def write_override(
    conn: AsyncConnection, metric: str, values: Mapping[str, int | None], now: int
) -> None:
    table = schema.retention_overrides
    await conn.execute(delete(table).where(table.c.metric_name == metric))
    if any(v is not None for v in values.values()):
        row = {OVERRIDE_COLUMNS[k]: v for k, v in values.items()}
        await conn.execute(table.insert().values(metric_name=metric, updated_ms=now, **row))


# -- job runs -------------------------------------------------------------------------------------


async def record_job_run(conn: AsyncConnection, job: str, values: Mapping[str, object]) -> None:
    """Upsert the job's row: counters are the last run's; `runs` counts every run."""
    table = schema.job_runs
    found = await conn.execute(select(table.c.runs).where(table.c.job == job))
    runs = found.scalar_one_or_none()
    row = dict(values)
    if row.get("last_error") is None:
        row.pop("last_error", None)
        row.pop("last_error_ms", None)
    if runs is None:
        await conn.execute(table.insert().values(job=job, runs=1, **row))
    else:
        await conn.execute(update(table).where(table.c.job == job).values(runs=runs + 1, **row))


async def read_job_runs(conn: AsyncConnection) -> dict[str, dict[str, object]]:
    rows = (await conn.execute(select(schema.job_runs))).mappings()
    return {row["job"]: dict(row) for row in rows}
