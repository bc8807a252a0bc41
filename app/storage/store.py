"""The store: the narrow interface the HTTP layer and the jobs use. Writes live here (what they
store is decided in `writes.py`, history placed by `history.py`); reads in `reads.py`, rollup
and retention work in `maintenance.py`.

A write is one transaction: read the retention floors of its metrics, create any new series
(under the cardinality limits), upsert the samples at or after their metric's raw floor (last
write wins) and mark the rollup buckets they touch for recomputation, and place older samples
(history) into the rollups exactly. The caller is answered only after commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection

from app.config import Settings
from app.matchers import Matcher
from app.model import MetricMetadata, SampleBatch, SeriesKey
from app.services.retention import (
    HISTORY,
    RAW,
    Floors,
    RetentionPlan,
    metric_floors,
    retention_defaults,
)
from app.services.rollup import RESOLUTIONS, Resolution
from app.storage import (
    dialect,
    faults,
    history,
    locks,
    maintenance,
    metadata,
    reads,
    schema,
    series,
    series_index,
)
from app.storage.alert_store import AlertStore
from app.storage.engine import (
    Engines,
    asyncpg_dsn,
    make_engines,
    postgres_connect_args,
    sqlite_path,
)
from app.storage.partitions import Partitions
from app.storage.pg_small_writes import SmallWrites
from app.storage.reads import RollupData, SeriesData, SeriesRef
from app.storage.series_index import IndexedSeries, RollupWindows, TimeBounds
from app.storage.writes import (
    AppendResult,
    CardinalityExceeded,
    HistoryConflict,
    NeedsExclusive,
    NeedsPartitions,
    Policies,
    Rows,
    WritePlan,
    metrics_of,
    plan_write,
    policy_names,
)
from app.timeutil import now_ms, to_ms

DISK_FULL_BELOW_BYTES = 64 * 1024  # less free space than this: a SQLite write would not fit
RETENTION_LOCK_PATIENCE_SECONDS = 2.0  # then wait in the queue for the retention lock

__all__ = [
    "AppendResult",
    "BeforeHorizon",
    "CardinalityExceeded",
    "HistoryConflict",
    "QueryTimeout",
    "RawSelection",
    "RollupSelection",
    "Store",
    "UnknownMetric",
    "WriteTimeout",
    "is_connection_error",
]


class UnknownMetric(LookupError):
    """A query for a metric that has no series."""


class QueryTimeout(RuntimeError):
    """A query ran longer than QUERY_TIMEOUT and was cancelled."""

    def __init__(self, limit: timedelta) -> None:
        super().__init__(
            f"the query ran longer than QUERY_TIMEOUT ({limit.total_seconds():g}s) and was"
            " cancelled; narrow the range or the label filters"
        )


class WriteTimeout(RuntimeError):
    """A write that did not finish within DB_WRITE_TIMEOUT (PostgreSQL); its connection was
    discarded, so nothing of it was committed."""

    def __init__(self, limit: timedelta) -> None:
        super().__init__(
            f"the database did not complete the write within DB_WRITE_TIMEOUT "
            f"({limit.total_seconds():g}s); nothing was written"
        )


@dataclass
class WritePath:
    """What /db/status reports about writes (Store.write_path)."""

    latency_ms: float
    read_only: bool = False
    free_bytes: int | None = None  # SQLite: free space on the database file's disk
    last_fault: faults.Fault | None = None

    @property
    def problem(self) -> faults.Fault | None:
        """Why writes fail now, if they do."""
        if self.read_only:
            return faults.Fault("read_only", "the database accepts no writes (read-only)")
        if self.free_bytes is not None and self.free_bytes < DISK_FULL_BELOW_BYTES:
            return faults.Fault("disk_full", f"{self.free_bytes} bytes free on its disk")
        return self.last_fault


def sqlite_disk(path: Path) -> tuple[bool, int]:
    """(read-only, free bytes) of the file system holding a SQLite database."""
    directory = path.parent if path.parent != Path("") else Path(".")
    stats = os.statvfs(directory)
    read_only = bool(stats.f_flag & os.ST_RDONLY) or not os.access(directory, os.W_OK)
    if path.exists():
        read_only = read_only or not os.access(path, os.W_OK)
    return read_only, stats.f_bavail * stats.f_frsize


# The name of HistoryConflict before issue #12, for callers not renamed yet.
BeforeHorizon = HistoryConflict
WRITE_ATTEMPTS = 4


@dataclass
class RawSelection:
    """A raw query's answer: the series with points in the range (ordered by labels), whether
    `limit` cut it short, and the raw floor of the metric (raw samples are kept from then on)."""

    series: list[SeriesData]
    truncated: bool
    retained_from: int


@dataclass
class RollupSelection:
    """A rollup query's answer: the series with buckets in the range, up to when the job has
    materialized the resolution, and from when the resolution's buckets are kept."""

    series: list[RollupData]
    materialized_until: int | None
    retained_from: int


class Store(AlertStore):
    def __init__(self, settings: Settings, engines: Engines) -> None:
        self.settings = settings
        self.engines = engines
        self.backend = engines.backend
        self.clock: Callable[[], int] = now_ms  # what "now" is for retention floors
        self._defaults = retention_defaults(settings)
        self._grace_ms = to_ms(settings.rollup_grace)
        self._series_ids: dict[tuple[str, str], int] = {}
        self._metadata_written: dict[tuple[str, str], int] = {}  # (metric, fingerprint) -> ms
        self._partitions = Partitions(
            self.backend == "postgresql",
            lambda: metric_floors(self.clock(), self._defaults, None, None, self._grace_ms).raw,
        )
        self._write_lock = asyncio.Lock()
        # Awaited before each transaction of a job run: a turn for the event loop (tests hook
        # writes in here, to interleave them with the job's transactions).
        self.between_job_chunks: Callable[[], Awaitable[None]] = _next_turn
        self._write_fault: faults.Fault | None = None
        self._small_writes = (
            SmallWrites(
                asyncpg_dsn(settings.database_url),
                postgres_connect_args(
                    settings,
                    name="metrics-service-ingest",
                    read_timeout=settings.db_write_timeout.total_seconds(),
                ),
            )
            if self.backend == "postgresql"
            else None
        )

    @classmethod
    def open(cls, settings: Settings) -> Store:
        """Build the store; nothing connects until the first query."""
        return cls(settings, make_engines(settings))

    async def close(self) -> None:
        if self._small_writes is not None:
            await self._small_writes.close()
        await self.engines.dispose()

    async def ping(self) -> float:
        """Round trip to the database in milliseconds."""
        started = time.perf_counter()
        async with self.engines.reader.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return (time.perf_counter() - started) * 1000

    async def write_path(self) -> WritePath:
        """Whether writes can succeed now, as far as can be told without writing: a round trip on
        the connection single-sample writes use (PostgreSQL; its read-only state too), or the
        database file's disk (SQLite: free space, read-only), and the fault the last write met
        (disk full, read-only) unless a write has succeeded since."""
        started = time.perf_counter()
        state = WritePath(latency_ms=0.0, last_fault=self._write_fault)
        if self._small_writes is not None:
            state.read_only = await self._small_writes.ping()
        else:
            path = sqlite_path(self.settings.database_url)
            if path is not None:
                state.read_only, state.free_bytes = sqlite_disk(path)
            if not state.read_only:  # a read-only WAL database may not even open for a ping
                await self.ping()
        state.latency_ms = (time.perf_counter() - started) * 1000
        return state

    @contextlib.contextmanager
    def _noting_faults(self) -> Iterator[None]:
        """Remember a write's disk-full or read-only fault for /db/status; forget it once a
        write succeeds."""
        try:
            yield
        except Exception as exc:
            fault = faults.classify(exc)
            if fault is not None and fault.kind in ("disk_full", "read_only"):
                self._write_fault = fault
            raise
        self._write_fault = None

    # -- writes -----------------------------------------------------------------------------

    async def append(self, batch: SampleBatch, *, all_or_nothing: bool = True) -> AppendResult:
        """Write a batch in one transaction. With `all_or_nothing`, a cardinality rejection of any
        series raises CardinalityExceeded and nothing is written; otherwise the rejected series'
        samples are left out and reported. History that cannot be merged exactly raises
        HistoryConflict, and nothing is written."""
        if len(batch) == 0:
            return AppendResult()
        async with self._write_lock, self._write_deadline():
            with self._noting_faults():
                alone = False
                for _ in range(WRITE_ATTEMPTS):
                    try:
                        return await self._append_once(batch, all_or_nothing, alone)
                    except NeedsExclusive:
                        alone = True
                    except NeedsPartitions as missing:
                        await self._partitions.create(self.engines.writer, missing.days)
                raise RuntimeError("the write kept finding day partitions missing; retry it")

    @contextlib.asynccontextmanager
    async def _write_deadline(self) -> AsyncIterator[None]:
        """DB_WRITE_TIMEOUT on PostgreSQL, so the write lock is never held across a database
        that stopped answering: past it the write is cancelled (its connection is discarded,
        nothing commits) and WriteTimeout raised. SQLite writes are bounded by its busy
        timeout and a local disk."""
        if self.backend != "postgresql":
            yield
            return
        try:
            async with asyncio.timeout(self.settings.db_write_timeout.total_seconds()):
                yield
        except TimeoutError:
            raise WriteTimeout(self.settings.db_write_timeout) from None

    async def _append_once(
        self, batch: SampleBatch, all_or_nothing: bool, alone: bool
    ) -> AppendResult:
        ids, missing = self._cached_ids(batch.keys)
        await self._partitions.ensure(self.engines.writer, batch)
        if not missing and not alone:
            if self.backend == "sqlite":
                return await self._append_known_sqlite(batch, ids)
            if len(batch) < dialect.COPY_MIN_ROWS:
                return await self._append_known_postgres(batch, ids)
        async with self.engines.writer.begin() as conn:
            if alone:
                await dialect.exclusive_retention_lock(conn)
            else:
                await dialect.share_retention_lock(conn)
            names = policy_names(metrics_of(batch))
            plan = self._plan(batch, await maintenance.read_policies(conn, names))
            if plan.has_history and not alone and self.backend == "postgresql":
                raise NeedsExclusive
            rejected = await series.resolve_for_write(
                conn, batch.keys, ids, missing, all_or_nothing, self.settings
            )
            rows = Rows.of(batch, ids, plan.kinds)
            await self._write_rows(conn, batch, rows, plan)
        # Only after commit: ids of series created in a rolled-back transaction must not be cached.
        for i, key in enumerate(batch.keys):
            if ids[i] >= 0:
                self._series_ids[(key.metric, key.fingerprint)] = int(ids[i])
        self._learn(plan)
        return rows.result(plan.kinds, rejected)

    async def _write_rows(
        self, conn: AsyncConnection, batch: SampleBatch, rows: Rows, plan: WritePlan
    ) -> None:
        """Raw rows with their marks; history placed (app.storage.history) and its metrics' raw
        horizons moved to the floor it was placed behind."""
        to_raw = rows.kinds == RAW
        placement = None
        if plan.has_history:
            placement = await history.place(conn, rows, plan, batch.keys)
            to_raw |= placement.to_raw
        raw = rows.take(to_raw)
        self._partitions.check(raw.ts)
        await dialect.write_samples(conn, raw.sids, raw.ts, raw.values, raw.marks())
        if placement is None:
            return
        if not await history.write_merged(conn, placement.merged):
            # A bucket filled since it was checked: say which, and roll back.
            await history.place(conn, rows, plan, batch.keys)
            raise RuntimeError("a rollup row appeared during the write; retry it")
        merged_keys = np.unique(rows.keys[rows.kinds == HISTORY])
        metrics = {batch.keys[int(k)].metric for k in merged_keys}
        await maintenance.record_horizons(conn, {m: plan.floors[m].raw for m in metrics})

    async def _append_known_sqlite(self, batch: SampleBatch, ids: np.ndarray) -> AppendResult:
        """SQLite, every series already known (the steady state of single-sample writes): the
        whole transaction in one call on aiosqlite's thread instead of a round trip per step."""
        statement, params = maintenance.sqlite_policy_query(policy_names(metrics_of(batch)))

        def write(db: sqlite3.Connection) -> tuple[WritePlan, AppendResult]:
            plan = self._plan(batch, Policies.of(db.execute(statement, params)))
            if plan.has_history:
                raise NeedsExclusive  # placed on the general path
            rows = Rows.of(batch, ids, plan.kinds)
            raw = rows.take(rows.kinds == RAW)
            dialect.sqlite_write(db, raw.sids, raw.ts, raw.values, raw.marks())
            return plan, rows.result(plan.kinds, {})

        async with self.engines.writer.connect() as conn:
            plan, result = await dialect.sqlite_transaction(conn, write)
        self._learn(plan)
        return result

    async def _append_known_postgres(self, batch: SampleBatch, ids: np.ndarray) -> AppendResult:
        """PostgreSQL, a small write of known series: on the connection kept for them, in four
        round trips (app.storage.pg_small_writes)."""
        assert self._small_writes is not None
        done: list[tuple[WritePlan, AppendResult]] = []

        def prepare(policy_rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
            plan = self._plan(batch, Policies.of(policy_rows))
            if plan.has_history:
                raise NeedsExclusive  # placed on the general path
            rows = Rows.of(batch, ids, plan.kinds)
            raw = rows.take(rows.kinds == RAW)
            self._partitions.check(raw.ts)
            done.append((plan, rows.result(plan.kinds, {})))
            return SmallWrites.arguments(raw.sids, raw.ts, raw.values, raw.marks())

        await self._small_writes.write(policy_names(metrics_of(batch)), prepare)
        plan, result = done[0]
        self._learn(plan)
        return result

    def _plan(self, batch: SampleBatch, policies: Policies) -> WritePlan:
        return plan_write(batch, policies, self.clock(), self._defaults, self._grace_ms)

    def _learn(self, plan: WritePlan) -> None:
        """Remember the raw floors seen, to guess which day partitions a write needs."""
        self._partitions.learn(plan)

    def _cached_ids(self, keys: Sequence[SeriesKey]) -> tuple[np.ndarray, list[int]]:
        """Series ids of `keys` from the cache (-1 where absent), and the indices of the absent."""
        ids = np.full(len(keys), -1, dtype=np.int64)
        missing = []
        for i, key in enumerate(keys):
            sid = self._series_ids.get((key.metric, key.fingerprint))
            if sid is None:
                missing.append(i)
            else:
                ids[i] = sid
        return ids, missing

    def forget_partitions(self) -> None:
        self._partitions.forget()

    # -- catalogue ---------------------------------------------------------------------------

    async def metric_names(self, prefix: str | None = None) -> list[str]:
        cols = schema.series.c
        query = select(cols.metric_name).distinct()
        if prefix:  # substr, not LIKE: LIKE ignores case on SQLite
            query = query.where(func.substr(cols.metric_name, 1, len(prefix)) == prefix)
        async with self.engines.reader.connect() as conn:
            # Sorted here, by code point, so the order never depends on a database collation.
            return sorted((await conn.execute(query)).scalars())

    # -- metric metadata ---------------------------------------------------------------------

    async def record_metadata(self, entries: Sequence[MetricMetadata]) -> int:
        """Store what agents say about metric families; returns the rows written (entries
        already stored within the last hour are not written again)."""
        now = now_ms()
        rows = [
            row
            for row in metadata.rows_of(entries, now)
            if now
            - self._metadata_written.get(
                (str(row["metric_name"]), str(row["fingerprint"])), -(2**62)
            )
            >= metadata.TOUCH_AFTER_MS
        ]
        if not rows:
            return 0
        async with self._write_lock, self._write_deadline(), self.engines.writer.begin() as conn:
            await metadata.upsert(conn, rows)
        for row in rows:
            self._metadata_written[(str(row["metric_name"]), str(row["fingerprint"]))] = now
        return len(rows)

    async def metric_metadata(
        self, metric: str | None = None, limit: int | None = None
    ) -> dict[str, list[dict[str, str]]]:
        """Metadata as the data of Prometheus' /api/v1/metadata answer: `{metric: [{"type",
        "help", "unit"}, ...]}` (metrics by name, at most `limit`; newest entry first)."""
        async with self.engines.reader.connect() as conn:
            return await metadata.read(conn, metric, limit)

    # -- reads -------------------------------------------------------------------------------

    @staticmethod
    async def _find_series(
        conn: AsyncConnection, metric: str, matchers: Sequence[Matcher]
    ) -> list[SeriesRef]:
        """Series of a metric matching the filters; raises UnknownMetric if it has none at all."""
        refs = await reads.find_series(conn, metric, matchers)
        if not refs and not await reads.metric_exists(conn, metric):
            raise UnknownMetric(metric)
        return refs

    def _deadline(self) -> asyncio.Timeout:
        """QUERY_TIMEOUT for one query: past it, the query is cancelled with QueryTimeout."""
        return asyncio.timeout(self.settings.query_timeout.total_seconds())

    async def _floors(self, conn: AsyncConnection, metric: str) -> Floors:
        policies = await maintenance.read_policies(conn, policy_names([metric]))
        return policies.floors(metric, self.clock(), self._defaults, self._grace_ms)

    async def read_raw(
        self, metric: str, matchers: Sequence[Matcher], start_ms: int, end_ms: int, limit: int
    ) -> RawSelection:
        """Points in [start, end] from the raw floor on, at most `limit` in all, of the series
        matching the filters that have any; raises UnknownMetric if the metric has no series."""
        try:
            async with self._deadline(), self.engines.reader.connect() as conn:
                refs = await self._find_series(conn, metric, matchers)
                floor = (await self._floors(conn, metric)).raw
                start_ms = max(start_ms, floor)
                found: tuple[list[SeriesData], bool] = ([], False)
                if start_ms <= end_ms:
                    found = await reads.select_raw(conn, refs, start_ms, end_ms, limit)
        except TimeoutError:
            raise QueryTimeout(self.settings.query_timeout) from None
        series, truncated = found
        return RawSelection([s for s in series if s.ts.size], truncated, floor)

    async def select_raw(
        self, metric: str, matchers: Sequence[Matcher], start_ms: int, end_ms: int, limit: int
    ) -> tuple[list[SeriesData], bool]:
        """`read_raw` without the raw floor."""
        selection = await self.read_raw(metric, matchers, start_ms, end_ms, limit)
        return selection.series, selection.truncated

    async def read_rollup(
        self,
        metric: str,
        matchers: Sequence[Matcher],
        res: Resolution,
        start_ms: int,
        end_ms: int,
    ) -> RollupSelection:
        """Buckets starting in [floor(start), end] that the resolution still retains, of the
        series matching the filters that have any."""
        try:
            async with self._deadline(), self.engines.reader.connect() as conn:
                if self.backend == "postgresql":
                    # Stored, live-tail and invalidated buckets come from three statements:
                    # one snapshot for all, or a job committing between them shows a bucket
                    # twice or not at all.
                    conn = await conn.execution_options(isolation_level="REPEATABLE READ")
                refs = await self._find_series(conn, metric, matchers)
                floor = (await self._floors(conn, metric)).rollups[res.name]
                series, until = await reads.select_rollup(
                    conn, refs, res, max(start_ms, floor), end_ms
                )
        except TimeoutError:
            raise QueryTimeout(self.settings.query_timeout) from None
        return RollupSelection([s for s in series if s.bucket.size], until, floor)

    async def select_rollup(
        self,
        metric: str,
        matchers: Sequence[Matcher],
        res: Resolution,
        start_ms: int,
        end_ms: int,
    ) -> tuple[list[RollupData], int | None]:
        """`read_rollup` without the retention floor."""
        selection = await self.read_rollup(metric, matchers, res, start_ms, end_ms)
        return selection.series, selection.materialized_until

    # -- series index and samples for the Prometheus query API (app.storage.series_index) ---

    async def find_series_by_matchers(
        self, matchers: Sequence[Matcher], bounds: TimeBounds | None = None
    ) -> list[IndexedSeries]:
        """Series of any metric matching every matcher (the metric name as `__name__`), in id
        order; with `bounds`, only those with a sample in that range."""
        try:
            async with self._deadline(), self.engines.reader.connect() as conn:
                return await series_index.find_series(conn, matchers, bounds)
        except TimeoutError:
            raise QueryTimeout(self.settings.query_timeout) from None

    async def read_samples(
        self, ids: Sequence[int], start_ms: int, end_ms: int, limit: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(series_id, ts, value) of these series in [start, end], by series and time, stale
        markers and NaN included; at most `limit` rows."""
        try:
            async with self._deadline(), self.engines.reader.connect() as conn:
                return await dialect.fetch_points(conn, ids, start_ms, end_ms, limit)
        except TimeoutError:
            raise QueryTimeout(self.settings.query_timeout) from None

    async def rollup_windows(
        self,
        metric: str,
        matchers: Sequence[Matcher],
        res: Resolution,
        start_ms: int,
        end_ms: int,
        edges: Sequence[int],
    ) -> RollupWindows:
        """What serving PromQL windows from rollups needs, read in one snapshot: the series of
        `metric` matching `matchers` (labels without the name), their buckets starting in
        [start, end], whether a NaN (not a stale marker) lies in [start, end + width), and
        their samples at the `edges` timestamps."""
        try:
            async with self._deadline(), self.engines.reader.connect() as conn:
                if self.backend == "postgresql":
                    conn = await conn.execution_options(isolation_level="REPEATABLE READ")
                refs = await reads.find_series(conn, metric, matchers)
                if not refs:
                    return RollupWindows([], [], False, *series_index.no_samples())
                rollups, _ = await reads.select_rollup(conn, refs, res, start_ms, end_ms)
                ids = [ref.id for ref in refs]
                nan = await series_index.has_nan(conn, ids, start_ms, end_ms + res.ms - 1)
                sids, ts, values = await series_index.samples_at(conn, ids, edges)
                return RollupWindows(refs, rollups, nan, sids, ts, values)
        except TimeoutError:
            raise QueryTimeout(self.settings.query_timeout) from None

    async def label_names(self, bounds: TimeBounds | None = None) -> list[str]:
        """All label names (with `__name__`); with `bounds`, of series with samples there."""
        async with self.engines.reader.connect() as conn:
            if bounds is None:
                return await series_index.label_names(conn)
            names = {series_index.NAME}
            found = await series_index.find_series(conn, [], bounds)
            for series in found:
                names.update(series.labels)
            return sorted(names) if found else []

    async def label_values(self, name: str, bounds: TimeBounds | None = None) -> list[str]:
        """All values of one label (`__name__`: metric names), optionally within bounds."""
        async with self.engines.reader.connect() as conn:
            if bounds is None:
                return await series_index.label_values(conn, name)
            if name == series_index.NAME:
                return await series_index.metric_names(conn, bounds)
            found = await series_index.find_series(conn, [], bounds)
            return sorted({s.labels[name] for s in found if name in s.labels})

    # -- jobs --------------------------------------------------------------------------------

    def job_lock(self, wait_seconds: float) -> AbstractAsyncContextManager[None]:
        return locks.job_lock(self.engines, self.settings.database_url, wait_seconds)

    async def materialize(self, res: Resolution, closed_before: int) -> int:
        """Recompute the invalidated closed buckets of one resolution (caller holds job_lock),
        in short transactions (JOB_TRANSACTION_TARGET, at most JOB_CHUNK_BUCKETS scaled to the
        width) between which writes take their turn
        (docs/rollups-and-retention.md#concurrent-jobs-and-writers). Marks added behind the
        run's position, or beyond as many as were pending when it started, are left for the
        next run. Returns how many buckets were claimed."""
        size = self._chunk_size(chunk_buckets(self.settings.job_chunk_buckets, res))
        with self._noting_faults():
            async with self._job_transaction() as conn:
                budget = await maintenance.pending(conn, res, closed_before)
                await maintenance.advance_state(conn, res, closed_before)
            total, after = 0, None
            while total < budget:
                await self.between_job_chunks()
                claimed, after, seconds = await self._recompute_chunk(
                    res, closed_before, after, size.size
                )
                size.took(claimed, seconds)
                if claimed == 0:
                    break
                total += claimed
            return total

    async def _recompute_chunk(
        self, res: Resolution, closed_before: int, after: dialect.Key | None, limit: int
    ) -> tuple[int, dialect.Key | None, float]:
        """One transaction of `materialize`: (claimed, the last claimed, seconds of database
        work). SQLite: the whole transaction in one call on aiosqlite's thread, so the write lock
        is held only while SQLite works, however busy the event loop is."""
        if self.backend == "postgresql":
            async with self._job_transaction() as conn:
                started = time.perf_counter()
                claimed, last = await maintenance.recompute(
                    conn, res, closed_before, after=after, limit=limit
                )
            return claimed, last, time.perf_counter() - started
        claim = dialect.Claim(res.name, closed_before, after, limit)

        def work(db: sqlite3.Connection) -> tuple[int, dialect.Key | None, float]:
            started = time.perf_counter()
            claimed, last = maintenance.sqlite_recompute(db, claim, *statements)
            return claimed, last, time.perf_counter() - started

        async with self._write_lock, self.engines.writer.connect() as conn:
            statements = maintenance.recompute_sql(conn, res)
            return await dialect.sqlite_transaction(conn, work, self.settings.sqlite_synchronous)

    def _chunk_size(self, most: int) -> maintenance.ChunkSize:
        """SQLite: chunks sized to JOB_TRANSACTION_TARGET, since writes wait for each one.
        PostgreSQL: a job transaction holds nothing a write needs but the marks it claims (a
        write reaching one waits for that transaction), and its timings are the event loop's
        as much as the database's, so chunks grow to their cap."""
        target = self.settings.job_transaction_target.total_seconds()
        return maintenance.ChunkSize(most, target if self.backend == "sqlite" else float("inf"))

    async def apply_retention(
        self, plan: RetentionPlan, closed: Mapping[str, int]
    ) -> maintenance.DropReport:
        """Bring rollups up to date, then drop what the plan expires, in short transactions
        (caller holds job_lock). Raw samples of a series go in one transaction that first
        recomputes that series' closed marks; on PostgreSQL it holds the retention lock alone,
        so no write lands in data being dropped (on SQLite, transactions are serial anyway)."""
        for res in RESOLUTIONS:
            await self.materialize(res, closed[res.name])
        with self._noting_faults():
            raw_rows, partitions = await self._drop_raw(plan, closed)
            rollup_rows = await self._in_series_chunks(
                lambda conn, batch: maintenance.drop_rollups(conn, batch, plan)
            )
        if partitions:
            self.forget_partitions()
        return maintenance.DropReport(raw_rows, rollup_rows, partitions)

    async def _drop_raw(self, plan: RetentionPlan, closed: Mapping[str, int]) -> tuple[int, int]:
        """Raw samples before their cut-offs: row by row on SQLite; on PostgreSQL whole day
        partitions that every metric lets go, then rows of metrics whose own cut-off is later
        (docs/rollups-and-retention.md#a-run). Returns (rows, partitions)."""

        async def drop(conn: AsyncConnection, batch: maintenance.Batch) -> int:
            await maintenance.recompute_series(conn, batch, closed, plan.raw_cutoffs)
            return await maintenance.delete_before(conn, "samples", "ts", batch, plan.raw_cutoffs)

        if self.backend == "sqlite":
            rows = await self._in_series_chunks(drop)
            async with self._job_transaction() as conn:
                await maintenance.record_horizons(
                    conn, await maintenance.metric_cutoffs(conn, plan)
                )
            return rows, 0
        rows = 0
        async with self.engines.reader.connect() as conn:
            days = await maintenance.expired_days(conn, plan)
            for day in days:
                rows += await dialect.partition_rows(conn, day)  # none arrive: before any floor
        if days:
            floor = maintenance.partition_floor(plan)
            async with self._job_transaction(exclusive=True) as conn:
                for res in RESOLUTIONS:
                    await maintenance.recompute(conn, res, min(closed[res.name], floor))
                await maintenance.drop_partitions(conn, days)
        shorter = maintenance.row_deleted_metrics(plan)
        if shorter:
            rows += await self._in_series_chunks(drop, metrics=shorter, exclusive=True)
            async with self._job_transaction() as conn:
                await maintenance.record_horizons(conn, shorter)
        return rows, len(days)

    async def _in_series_chunks(
        self,
        work: Callable[[AsyncConnection, maintenance.Batch], Awaitable[int]],
        *,
        metrics: Collection[str] | None = None,
        exclusive: bool = False,
    ) -> int:
        """`work` on every series (of `metrics`), in transactions of at most JOB_CHUNK_SERIES
        series sized to JOB_TRANSACTION_TARGET; the sum of what it returns."""
        size = self._chunk_size(self.settings.job_chunk_series)
        total, after = 0, 0
        while True:
            await self.between_job_chunks()
            async with self._job_transaction() as conn:
                batch = await maintenance.series_batch(conn, after, size.size, metrics)
                if not batch:
                    return total
                if exclusive:
                    await dialect.exclusive_retention_lock(conn, RETENTION_LOCK_PATIENCE_SECONDS)
                started = time.perf_counter()
                total += await work(conn, batch)
            size.took(len(batch), time.perf_counter() - started)
            after = batch[-1][0]

    @contextlib.asynccontextmanager
    async def _job_transaction(self, *, exclusive: bool = False) -> AsyncIterator[AsyncConnection]:
        """One short transaction of a job. SQLite: on the writer, taking its turn on the write
        lock like any write. Both commit without waiting for the disk (dialect.sqlite_unsynced,
        dialect.UNSYNCED_COMMIT). PostgreSQL: on a pooled connection of its own, beside the writes;
        `exclusive` holds the retention lock alone (trying without queueing first)."""
        async with contextlib.AsyncExitStack() as stack:
            if self.backend == "sqlite":
                await stack.enter_async_context(self._write_lock)
                conn = await stack.enter_async_context(self.engines.writer.connect())
                await stack.enter_async_context(
                    dialect.sqlite_unsynced(conn, self.settings.sqlite_synchronous)
                )
                await stack.enter_async_context(conn.begin())
            else:
                conn = await stack.enter_async_context(self.engines.writer.begin())
                await conn.execute(text(dialect.UNSYNCED_COMMIT))
            if exclusive:
                await dialect.exclusive_retention_lock(conn, RETENTION_LOCK_PATIENCE_SECONDS)
            yield conn

    async def retention_overrides(self) -> dict[str, dict[str, int]]:
        async with self.engines.reader.connect() as conn:
            return await maintenance.read_overrides(conn)

    async def set_retention_override(self, metric: str, values: Mapping[str, int | None]) -> None:
        async with self._write_lock, self.engines.writer.begin() as conn:
            await maintenance.write_override(conn, metric, values, now_ms())

    async def record_job_run(self, job: str, values: Mapping[str, object]) -> None:
        async with self._write_lock, self.engines.writer.begin() as conn:
            await maintenance.record_job_run(conn, job, values)

    async def job_runs(self) -> dict[str, dict[str, object]]:
        async with self.engines.reader.connect() as conn:
            return await maintenance.read_job_runs(conn)

    async def pending_invalidations(self) -> dict[str, int]:
        async with self.engines.reader.connect() as conn:
            return {r.name: await maintenance.pending_invalidations(conn, r) for r in RESOLUTIONS}

    async def materialized_until(self) -> dict[str, int | None]:
        async with self.engines.reader.connect() as conn:
            return {r.name: await reads.materialized_until(conn, r) for r in RESOLUTIONS}

    async def series_count(self) -> int:
        async with self.engines.reader.connect() as conn:
            count = await conn.execute(select(func.count()).select_from(schema.series))
            return int(count.scalar_one())


async def _next_turn() -> None:
    await asyncio.sleep(0)


def chunk_buckets(per_minute: int, res: Resolution) -> int:
    """Buckets of `res` per job transaction: JOB_CHUNK_BUCKETS one-minute buckets, fewer of
    the wider ones (each holds more samples), at least one."""
    return max(1, per_minute * 60_000 // res.ms)


def is_connection_error(exc: BaseException) -> bool:
    """Whether an exception means the database is unreachable rather than a bad statement."""
    if isinstance(exc, OperationalError | OSError | ConnectionError | TimeoutError | PoolTimeout):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    name = type(getattr(exc, "orig", exc)).__name__
    return "Connection" in name or "CannotConnectNow" in name
