"""The SQL behind the jobs: materialize invalidated buckets, drop expired data, record runs.

Decisions (which buckets are closed, what a cut-off is) are made by the pure functions in
`app.services`; these functions only act on them.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import orjson
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.services.retention import RetentionPlan
from app.services.rollup import RESOLUTIONS, Resolution
from app.storage import dialect, rollup_blocks, schema
from app.storage.samples.protocol import MarkedBuckets, SampleStore
from app.storage.writes import Policies, policy_sql


class ChunkSize:
    """How much work a job's next transaction takes. A transaction costs about a fixed overhead
    (round trips, the commit) plus a share per item; the overhead is taken as the quickest
    transaction seen, and the share per item as the dearest of the last `WINDOW` transactions
    (items differ a hundredfold: a bucket of head rows against one inside compressed blocks, and
    a run meets them in key order, so sizing to the last rate alone let a chunk grown on cheap
    items hold the writer ten times the target on the next dear ones; one slow outlier is
    forgotten after `WINDOW` transactions). The size is chosen so that the share adds up to
    `target_s`: at most twice the last size, between `most / FLOOR_DIVISOR` (at least 1) and
    `most`, starting at a sixteenth of `most`. A write then waits behind a job for about one
    target at most. The store keeps one per kind of chunk, so a run starts from what the last
    one learnt."""

    WINDOW = 16
    FLOOR_DIVISOR = 100

    def __init__(self, most: int, target_s: float) -> None:
        self.most, self.target_s = most, target_s
        self.least = max(1, most // self.FLOOR_DIVISOR)
        self.size = max(self.least, most // 16)
        self.overhead = float("inf")
        self._rates: collections.deque[float] = collections.deque(maxlen=self.WINDOW)

    def took(self, items: int, seconds: float) -> None:
        if items == 0:
            return
        self.overhead = min(self.overhead, seconds)
        if items < self.size and seconds <= self.target_s + self.overhead:
            return  # a short last chunk says nothing about the rate
        self._rates.append(max(seconds - self.overhead, 1e-6) / items)
        fit = int(min(self.target_s / max(self._rates), self.most))
        self.size = max(self.least, min(self.most, fit, 2 * self.size))


async def pending(conn: AsyncConnection, res: Resolution, before: int) -> int:
    """Marks of buckets of `res` starting before `before`."""
    table = schema.dirty[res.name]
    query = select(func.count()).select_from(table).where(table.c.bucket < before)
    return int((await conn.execute(query)).scalar_one())


async def recompute(
    conn: AsyncConnection,
    samples: SampleStore,
    res: Resolution,
    closed_before: int,
    *,
    after: dialect.Key | None = None,
    limit: int | None = None,
    series: Sequence[int] | None = None,
    series_in: str | None = None,
) -> tuple[int, dialect.Key | None]:
    """Claim invalidated buckets of `res` that start before `closed_before` (all, or a chunk:
    see dialect.Claim) and have the sample store recompute them from raw, in the caller's
    transaction. Returns how many were claimed and the last claimed (series, bucket). The
    caller holds the job lock and has moved `materialized_until` (advance_state) to
    `closed_before` first, or holds the marks' buckets below it already."""
    claim = dialect.Claim(res.name, closed_before, after, limit, series, series_in)
    claimed, last = await dialect.claim_dirty(conn, claim)
    if claimed:
        await aggregate_claimed(conn, samples, res, claimed)
    return claimed, last


async def aggregate_claimed(
    conn: AsyncConnection, samples: SampleStore, res: Resolution, claimed: int
) -> None:
    """Recompute the buckets of a claim (the temp table `claimed`, of `claimed` marks): unpack
    those in folded rollup days, then aggregate them from raw."""
    await rollup_blocks.unpack_claimed(conn, res)
    await samples.store_aggregates(conn, MarkedBuckets("claimed"), res, selected=claimed)


async def advance_state(conn: AsyncConnection, res: Resolution, closed_before: int) -> None:
    """Move `materialized_until` of `res` forward to `closed_before`. Safe before the buckets
    below it are recomputed: each of them that changed has a mark, and a marked bucket is
    answered from raw until a claim recomputes it (in the claim's own transaction)."""
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


LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for a NOWAIT lock that is held
# Transactions of this database that began before ours: their snapshots may predate the commit
# that emptied a table, and TRUNCATE is not MVCC-safe (they would see it empty, not as it was).
OLDER_TRANSACTIONS = (
    "SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
    " AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND xact_start < now()"
    " LIMIT 1"
)


async def truncate_if_empty(conn: AsyncConnection, table: str) -> bool:
    """PostgreSQL: TRUNCATE `table` (of the jobs': marks, rollup rows) if it holds no row and no
    transaction older than this one could still see rows in it; under an exclusive lock taken
    without waiting (raises LOCK_NOT_AVAILABLE if a write holds it). The caller's transaction
    began after the commit that emptied it. Whether it truncated."""
    probe = text(f"SELECT 1 FROM {table} LIMIT 1")
    if (await conn.execute(probe)).first() is not None:
        return False  # the usual case under live ingestion: no lock taken
    await conn.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE NOWAIT"))
    if (await conn.execute(probe)).first() is not None:
        return False
    if (await conn.execute(text(OLDER_TRANSACTIONS))).first() is not None:
        return False
    await conn.execute(text(f"TRUNCATE {table}"))
    return True


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


def _cut(cutoffs: Mapping[str, int], metric: str) -> int:
    return cutoffs.get(metric, cutoffs["*"])


Batch = Sequence[tuple[int, str]]  # (series id, metric name), by id


async def series_batch(conn: AsyncConnection, after: int, limit: int) -> list[tuple[int, str]]:
    """The next `limit` series after id `after`."""
    cols = schema.series.c
    query = select(cols.id, cols.metric_name).where(cols.id > after)
    rows = await conn.execute(query.order_by(cols.id).limit(limit))
    return [(int(sid), str(name)) for sid, name in rows]


def metric_groups(plan: RetentionPlan) -> Iterator[tuple[int, str]]:
    """(raw cut-off, SQL subquery of the ids of the series it applies to): the default for
    metrics without an override, then each override's own. Metric names are validated
    identifiers (letters, digits, '_' and ':'), so they are safe to inline."""
    others = ", ".join(f"'{m}'" for m in sorted(plan.overridden)) or "''"
    yield (
        plan.raw_cutoffs["*"],
        f"(SELECT id FROM series WHERE metric_name NOT IN ({others}))",
    )
    for metric in sorted(plan.overridden):
        yield plan.raw_cutoffs[metric], series_of(metric)


async def recompute_series(
    conn: AsyncConnection,
    samples: SampleStore,
    batch: Batch,
    closed: Mapping[str, int],
    cutoffs: Mapping[str, int],
) -> None:
    """Recompute the invalidated buckets of these series that lie before their raw cut-off (all
    closed), before their raw samples go. Later ones are the rollup job's."""
    for res, claim in series_claims(batch, closed, cutoffs):
        await recompute(conn, samples, res, claim.before_ms, series=claim.series)


def series_claims(
    batch: Batch, closed: Mapping[str, int], cutoffs: Mapping[str, int]
) -> list[tuple[Resolution, dialect.Claim]]:
    """The claims of `recompute_series`: per raw cut-off of the batch's metrics and resolution,
    the marks of those series before the cut-off (all closed)."""
    by_cut: dict[int, list[int]] = {}
    for sid, metric in batch:
        by_cut.setdefault(_cut(cutoffs, metric), []).append(sid)
    return [
        (res, dialect.Claim(res.name, min(closed[res.name], cut), series=ids))
        for cut, ids in sorted(by_cut.items())
        for res in RESOLUTIONS
    ]


async def delete_before(
    conn: AsyncConnection, table: str, column: str, batch: Batch, cutoffs: Mapping[str, int]
) -> int:
    """Delete the rows of these series older than their metric's cut-off ('*' for metrics
    without one of their own), from a table of `Store`'s (the rollups; never `samples`)."""
    by_cut: dict[int, list[int]] = {}
    for sid, metric in batch:
        by_cut.setdefault(_cut(cutoffs, metric), []).append(sid)
    removed = 0
    for cut, ids in sorted(by_cut.items()):
        result = await conn.execute(
            text(
                f"DELETE FROM {table} WHERE {column} < :cut"
                f" AND series_id IN ({','.join(str(i) for i in ids)})"
            ),
            {"cut": cut},
        )
        removed += int(result.rowcount or 0)
    return removed


async def drop_rollups(conn: AsyncConnection, batch: Batch, plan: RetentionPlan) -> int:
    """Delete the rollup buckets of these series that start before their cut-offs."""
    removed = 0
    widths = {res.name: res.ms for res in RESOLUTIONS}
    for res_name, cutoffs in plan.rollup_cutoffs.items():
        removed += await delete_before(conn, f"rollup_{res_name}", "bucket", batch, cutoffs)
        by_cut: dict[int, list[int]] = {}
        for sid, metric in batch:
            by_cut.setdefault(_cut(cutoffs, metric), []).append(sid)
        removed += await rollup_blocks.drop_before(conn, res_name, by_cut, widths[res_name])
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
