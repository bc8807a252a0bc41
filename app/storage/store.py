"""The store: the narrow interface the HTTP layer and the jobs use. It owns the series registry
and its limits (`series.py`, with an id cache), the catalogue, rollup state, retention
overrides and job records; every raw sample goes through its sample store (`self.samples`,
app.storage.samples: the protocol and the row tables). Reads live in `reads.py` and
`series_index.py`, rollup and retention work in `maintenance.py`.

A write is one transaction of the sample store's (app.storage.samples.rows): read the retention
floors of its metrics, create any new series (this store's resolver, under the cardinality
limits), upsert the samples at or after their metric's raw floor (last write wins) and mark the
rollup buckets they touch for recomputation, and place older samples (history) into the rollups
exactly. The caller is answered only after commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

import numpy as np
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection

from app.config import Settings
from app.matchers import Matcher
from app.model import MetricMetadata, SampleBatch, SeriesKey
from app.services.retention import (
    Floors,
    RetentionPlan,
    retention_defaults,
)
from app.services.rollup import RESOLUTIONS, Resolution
from app.storage import (
    dialect,
    faults,
    locks,
    maintenance,
    metadata,
    reads,
    rollup_blocks,
    schema,
    series,
    series_index,
)
from app.storage.alert_store import AlertStore
from app.storage.engine import (
    Engines,
    PoolFigures,
    make_engines,
    sqlite_path,
)
from app.storage.reads import RollupData, SeriesData, SeriesRef
from app.storage.samples.blocks_store import BlockSampleStore
from app.storage.samples.compaction import Compacted
from app.storage.samples.layout import open_sample_store
from app.storage.samples.postgres_rows import row_delete_cutoffs
from app.storage.samples.protocol import SampleStore, no_points
from app.storage.samples.rows import RowSampleStore
from app.storage.samples.sqlite_thread import SqliteThread
from app.storage.series_index import IndexedSeries, RollupWindows, TimeBounds
from app.storage.write_turns import WriteTurns
from app.storage.writes import (
    AppendResult,
    CardinalityExceeded,
    HistoryConflict,
    policy_names,
)
from app.timeutil import now_ms, to_ms

DISK_FULL_BELOW_BYTES = 64 * 1024  # less free space than this: a SQLite write would not fit
RETENTION_LOCK_PATIENCE_SECONDS = 2.0  # then wait in the queue for the retention lock
RetentionLock = Literal["shared", "exclusive"]  # how a retention chunk holds the retention lock
# A write of fewer samples takes the write lock's fast lane (app.storage.write_turns, SQLite).
SMALL_WRITE_ROWS = 1000

__all__ = [
    "AppendResult",
    "BeforeHorizon",
    "CardinalityExceeded",
    "HistoryConflict",
    "JobStopped",
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


class JobStopped(Exception):
    """The jobs were told to stop (the server is shutting down): a run ends before its next
    transaction. What it committed stays, and the marks and data it did not reach are the next
    run's, as after a crash between two transactions."""

    def __init__(self) -> None:
        super().__init__("stopped before its next transaction: the server is shutting down")


class _GeneralRoad(Exception):
    """A job chunk on SQLite's one-call road found work only the general road does."""


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
        self._write_lock = WriteTurns()
        self._chunk_sizes: dict[tuple[str, int], maintenance.ChunkSize] = {}
        # Awaited before each transaction of a job run: a turn for the event loop (tests hook
        # writes in here, to interleave them with the job's transactions).
        self.between_job_chunks: Callable[[], Awaitable[None]] = _next_turn
        self._jobs_stopping = False
        self._write_fault: faults.Fault | None = None
        # Committed raw samples that replaced a different value, since the store opened
        # (`/metrics`: metrics_overwritten_samples_total).
        self.samples_overwritten = 0
        # Raw-sample I/O (app.storage.samples); `lambda`: tests set `clock` after opening.
        self.samples: SampleStore = open_sample_store(
            settings, engines, lambda: self.clock(), self._defaults, self._grace_ms
        )

    @classmethod
    def open(cls, settings: Settings) -> Store:
        """Build the store; nothing connects until the first query."""
        return cls(settings, make_engines(settings))

    async def close(self) -> None:
        await self.samples.close()
        await self.engines.dispose()

    def pool_figures(self) -> list[PoolFigures]:
        """Size, checked-out and overflow connections of each pool, for /metrics."""
        return self.engines.pool_figures()

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
        read_only = await self.samples.writer_read_only()
        if read_only is not None:
            state.read_only = read_only
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

        async def resolve(
            conn: AsyncConnection, ids: np.ndarray, missing: list[int]
        ) -> dict[int, CardinalityExceeded]:
            return await series.resolve_for_write(
                conn, batch.keys, ids, missing, all_or_nothing, self.settings
            )

        async with self._write_turn(len(batch)), self._write_deadline():
            with self._noting_faults():
                ids, missing = self._cached_ids(batch.keys)
                result = await self.samples.append(batch, ids, missing, resolve)
        self.samples_overwritten += result.overwritten  # committed: counted
        # Only after commit: ids of series created in a rolled-back transaction must not be cached.
        for i in missing:
            if ids[i] >= 0:
                key = batch.keys[i]
                self._series_ids[(key.metric, key.fingerprint)] = int(ids[i])
        return result

    def _write_turn(self, rows: int) -> AbstractAsyncContextManager[None]:
        """What a sample write waits for in this process. SQLite: its turn on the single writer,
        a small write (a group commit) before any waiting bulk write or job transaction.
        PostgreSQL: nothing; writes run side by side on their own connections, kept apart by the
        database's row locks (taken in one order on every path, app.storage.samples.rows), the
        series-creation and retention locks, as writes of several processes always were."""
        if self.backend == "postgresql":
            return contextlib.nullcontext()
        return self._write_lock.urgent() if rows < SMALL_WRITE_ROWS else self._write_lock

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
                    found = await reads.select_raw(
                        conn, self.samples, refs, start_ms, end_ms, limit
                    )
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
                    conn, self.samples, refs, res, max(start_ms, floor), end_ms
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
                return await series_index.find_series(conn, matchers, self._within(bounds))
        except TimeoutError:
            raise QueryTimeout(self.settings.query_timeout) from None

    async def read_samples(
        self, ids: Sequence[int], start_ms: int, end_ms: int, limit: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(series_id, ts, value) of these series in [start, end], by series and time, stale
        markers and NaN included; at most `limit` rows."""
        try:
            async with self._deadline(), self.engines.reader.connect() as conn:
                return await self.samples.read(conn, ids, start_ms, end_ms, limit)
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
                    return RollupWindows([], [], False, *no_points())
                rollups, _ = await reads.select_rollup(
                    conn, self.samples, refs, res, start_ms, end_ms
                )
                ids = [ref.id for ref in refs]
                nan = await self.samples.has_nan(conn, ids, start_ms, end_ms + res.ms - 1)
                sids, ts, values = await self.samples.read_at(conn, ids, edges)
                return RollupWindows(refs, rollups, nan, sids, ts, values)
        except TimeoutError:
            raise QueryTimeout(self.settings.query_timeout) from None

    def _within(self, bounds: TimeBounds | None) -> series_index.Within:
        """Series with a sample in the bounds, as a condition on `series.id`."""
        if bounds is None:
            return None
        return self.samples.has_samples_in(schema.series.c.id, bounds.start_ms, bounds.end_ms)

    async def label_names(self, bounds: TimeBounds | None = None) -> list[str]:
        """All label names (with `__name__`); with `bounds`, of series with samples there."""
        async with self.engines.reader.connect() as conn:
            if bounds is None:
                return await series_index.label_names(conn)
            names = {series_index.NAME}
            found = await series_index.find_series(conn, [], self._within(bounds))
            for series in found:
                names.update(series.labels)
            return sorted(names) if found else []

    async def label_values(self, name: str, bounds: TimeBounds | None = None) -> list[str]:
        """All values of one label (`__name__`: metric names), optionally within bounds."""
        async with self.engines.reader.connect() as conn:
            if bounds is None:
                return await series_index.label_values(conn, name)
            if name == series_index.NAME:
                return await series_index.metric_names(conn, self._within(bounds))
            found = await series_index.find_series(conn, [], self._within(bounds))
            return sorted({s.labels[name] for s in found if name in s.labels})

    # -- jobs --------------------------------------------------------------------------------

    def stop_jobs(self) -> None:
        """Make every job run end before its next transaction, with JobStopped (shutdown)."""
        self._jobs_stopping = True

    async def _next_job_chunk(self) -> None:
        """Before each transaction of a job run: JobStopped if the jobs are stopping, else a
        turn for the event loop (between_job_chunks)."""
        if self._jobs_stopping:
            raise JobStopped
        await self.between_job_chunks()

    def job_lock(self, wait_seconds: float) -> AbstractAsyncContextManager[None]:
        return locks.job_lock(self.engines, self.settings.database_url, wait_seconds)

    async def materialize(self, res: Resolution, closed_before: int) -> int:
        """Recompute the invalidated closed buckets of one resolution (caller holds job_lock),
        in short transactions (JOB_TRANSACTION_TARGET, at most JOB_CHUNK_BUCKETS scaled to the
        width) between which writes take their turn
        (docs/rollups-and-retention.md#concurrent-jobs-and-writers). Marks added behind the
        run's position, or beyond as many as were pending when it started, are left for the
        next run. Returns how many buckets were claimed."""
        size = self._chunk_size(
            f"rollup {res.name}", chunk_buckets(self.settings.job_chunk_buckets, res)
        )
        with self._noting_faults():
            async with self._job_transaction() as conn:
                budget = await maintenance.pending(conn, res, closed_before)
                await maintenance.advance_state(conn, res, closed_before)
            total, after = 0, None
            while total < budget:
                await self._next_job_chunk()
                claim = dialect.Claim(res.name, closed_before, after, size.size)
                claimed, after, seconds = await self._recompute_chunk(claim, res)
                size.took(claimed, seconds)
                if claimed == 0:
                    break
                total += claimed
            if budget:
                await self._truncate_if_empty(f"rollup_dirty_{res.name}")
            return total

    async def _truncate_if_empty(self, table: str) -> None:
        """PostgreSQL: a table a job left empty (marks, rollup rows all folded) is truncated,
        so that its dead tuples and index pages go now rather than at autovacuum's pace;
        skipped if a write holds it or an older transaction may see its rows."""
        if self.backend != "postgresql":
            return
        try:
            async with self.engines.writer.begin() as conn:
                await maintenance.truncate_if_empty(conn, table)
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != maintenance.LOCK_NOT_AVAILABLE:
                raise

    async def _recompute_chunk(
        self, claim: dialect.Claim, res: Resolution
    ) -> tuple[int, dialect.Key | None, float]:
        """One transaction of `materialize`: claim a chunk of marks and recompute their buckets.
        Returns how many were claimed, the last one, and the seconds the work took. SQLite: the
        whole transaction as one call on the writer's thread (the head's SQL,
        RowSampleStore.recompute_on, then the blocks of the claimed spans,
        BlockSampleStore.store_aggregates_on), so the write lock is held for the work alone, not
        for a dozen trips through a busy event loop between its statements (each one waits for
        the GIL behind the readers' threads: 7 ms a chunk at the median, 60 ms at the 99th
        percentile under bench.mixed_load); a chunk that finds a claimed bucket in a folded
        rollup day (to unpack first) is rolled back and done on the general road."""
        samples = self._on_thread()
        if samples is not None:

            def work(db: sqlite3.Connection) -> tuple[int, dialect.Key | None, float]:
                started = time.perf_counter()
                claimed, last, folded = samples.recompute_on(db, claim, res)
                if folded:
                    raise _GeneralRoad  # rolled back: the chunk again, on the general road
                return claimed, last, time.perf_counter() - started

            try:
                async with self._write_lock, self.engines.writer.connect() as conn:
                    thread = await SqliteThread.of(conn)
                    with dialect.driver_errors("BEGIN IMMEDIATE"):
                        return await thread.transaction(
                            work, unsynced_from=self.settings.sqlite_synchronous
                        )
            except _GeneralRoad:
                pass
        async with self._job_transaction() as conn:
            started = time.perf_counter()
            claimed, last = await maintenance.recompute(
                conn,
                self.samples,
                res,
                claim.before_ms,
                after=claim.after,
                limit=claim.limit,
            )
            return claimed, last, time.perf_counter() - started

    def _chunk_size(self, kind: str, most: int) -> maintenance.ChunkSize:
        """The sizing of one kind of job chunk, kept across runs. SQLite: chunks sized to
        JOB_TRANSACTION_TARGET, since writes wait for each one. PostgreSQL: a job transaction
        holds nothing a write needs but the marks it claims (a write reaching one waits for that
        transaction), and its timings are the event loop's as much as the database's, so chunks
        grow to their cap."""
        key = (kind, most)
        if key not in self._chunk_sizes:
            target = self.settings.job_transaction_target.total_seconds()
            self._chunk_sizes[key] = maintenance.ChunkSize(
                most, target if self.backend == "sqlite" else float("inf")
            )
        return self._chunk_sizes[key]

    async def compact(self, closed_before: int) -> Compacted | None:
        """Fold the head rows of spans closed by `closed_before` into blocks, a chunk of series
        per transaction, each under the write lock (caller holds job_lock). None unless
        STORAGE_LAYOUT=blocks."""
        if not isinstance(self.samples, BlockSampleStore):
            return None
        with self._noting_faults():

            def guard() -> AbstractAsyncContextManager[None]:
                if self._jobs_stopping:
                    raise JobStopped
                return self._write_lock

            return await self.samples.compact(closed_before, guard)

    async def fold_rollups(self, closed_before: int) -> rollup_blocks.Folded:
        """Fold the closed days of the rollup tables into rollup_blocks (whatever the layout),
        a chunk of series per job transaction (caller holds job_lock)."""
        async with self.engines.reader.connect() as conn:
            until = {r.name: await reads.materialized_until(conn, r) for r in RESOLUTIONS}
        before = {n: rollup_blocks.fold_boundary(closed_before, u) for n, u in until.items()}
        folded = rollup_blocks.Folded()

        async def fold(conn: AsyncConnection, batch: maintenance.Batch) -> int:
            nonlocal folded
            folded += await rollup_blocks.fold(conn, [sid for sid, _ in batch], before)
            return 0

        with self._noting_faults():
            await self._in_series_chunks("fold", fold)
            if folded.rows:
                for res in RESOLUTIONS:
                    await self._truncate_if_empty(f"rollup_{res.name}")
        return folded

    async def apply_retention(
        self, plan: RetentionPlan, closed: Mapping[str, int]
    ) -> maintenance.DropReport:
        """Bring rollups up to date, then drop what the plan expires, in short transactions
        (caller holds job_lock). Raw samples of a chunk of series go in one transaction that
        first recomputes those series' closed marks before their cut-offs, through
        SampleStore.drop_before(series=...); a last transaction recomputes what writes marked
        meanwhile and lets the sample store drop what goes whole (PostgreSQL's day partitions)
        and move the raw horizons. Raw drops hold the retention lock alone on PostgreSQL, so
        no write lands in data being dropped (on SQLite, transactions are serial anyway)."""
        for res in RESOLUTIONS:
            await self.materialize(res, closed[res.name])
        with self._noting_faults():

            async def drop_raw(conn: AsyncConnection, batch: maintenance.Batch) -> int:
                await self._recompute_series(conn, batch, closed, plan.raw_cutoffs)
                ids = [sid for sid, _ in batch]
                return (await self.samples.drop_before(conn, plan, series=ids)).rows

            lock = await self._retention_barrier(plan)
            raw_rows = await self._in_series_chunks("drop raw", drop_raw, lock=lock)
            await self._next_job_chunk()
            async with self._job_transaction(exclusive=True) as conn:
                # Each metric's marks before its own cut-off, not every series' before the
                # latest one: a backfill's marks behind the shortest raw retention are not
                # this transaction's (it held every write up for 0.3-0.5 s recomputing them).
                for cut, of_metrics in maintenance.metric_groups(plan):
                    for res in RESOLUTIONS:
                        before = min(closed[res.name], cut)
                        await maintenance.recompute(
                            conn, self.samples, res, before, series_in=of_metrics
                        )
                last = await self.samples.drop_before(conn, plan)
            rollup_rows = await self._in_series_chunks(
                "drop rollups", lambda conn, batch: maintenance.drop_rollups(conn, batch, plan)
            )
        return maintenance.DropReport(raw_rows + last.rows, rollup_rows, last.partitions)

    async def _recompute_series(
        self,
        conn: AsyncConnection,
        batch: maintenance.Batch,
        closed: Mapping[str, int],
        cutoffs: Mapping[str, int],
    ) -> None:
        """maintenance.recompute_series in the open transaction of a retention chunk. SQLite:
        each claim and its recompute as one call on the writer's thread (recompute_on: two
        dozen trips through the event loop fewer, while the write lock is held), the
        unpacking of folded rollup days and their recompute on the async road."""
        samples = self._on_thread()
        if samples is None:
            await maintenance.recompute_series(conn, self.samples, batch, closed, cutoffs)
            return
        thread = await SqliteThread.of(conn)
        for res, claim in maintenance.series_claims(batch, closed, cutoffs):
            with dialect.driver_errors("recompute"):
                claimed, _, folded = await thread.run(
                    functools.partial(samples.recompute_on, claim=claim, res=res)
                )
            if folded:
                await maintenance.aggregate_claimed(conn, samples, res, claimed)

    def _on_thread(self) -> RowSampleStore | BlockSampleStore | None:
        """SQLite: the sample store, whose job work runs as calls on the writer's thread
        (recompute_on); None where it does not."""
        samples = self.samples
        if self.backend == "sqlite" and isinstance(samples, RowSampleStore | BlockSampleStore):
            return samples
        return None

    async def _retention_barrier(self, plan: RetentionPlan) -> RetentionLock:
        """How the raw drops of a chunk of series hold the retention lock. PostgreSQL, row
        layout: in shared mode, beside the writes, after a barrier. The horizons the row
        deletes will set are recorded first (a write that reads them after that commit stores
        nothing raw before a cut-off, whatever its clock), then the run waits for every write
        in flight at that moment to end (one that may have read the old horizons), without
        queueing for the lock. From then on no ordinary write stores raw samples or marks
        behind a cut-off, and a write holding history (the lock alone) still excludes the
        chunks. Otherwise, or if writes in flight outlast DB_WRITE_TIMEOUT and some: alone."""
        if self.backend != "postgresql" or type(self.samples) is not RowSampleStore:
            return "exclusive"
        async with self._job_transaction() as conn:
            await maintenance.record_horizons(conn, row_delete_cutoffs(plan))
        patience = self.settings.db_write_timeout.total_seconds() + RETENTION_LOCK_PATIENCE_SECONDS
        async with self.engines.writer.connect() as conn:
            if await dialect.wait_out_shared_holders(conn, patience):
                return "shared"
        return "exclusive"

    async def _in_series_chunks(
        self,
        kind: str,
        work: Callable[[AsyncConnection, maintenance.Batch], Awaitable[int]],
        *,
        lock: RetentionLock | None = None,
    ) -> int:
        """`work` on every series, in transactions of at most JOB_CHUNK_SERIES
        series sized to JOB_TRANSACTION_TARGET; the sum of what it returns."""
        size = self._chunk_size(kind, self.settings.job_chunk_series)
        total, after = 0, 0
        while True:
            await self._next_job_chunk()
            async with self._job_transaction() as conn:
                batch = await maintenance.series_batch(conn, after, size.size)
                if not batch:
                    return total
                if lock == "exclusive":
                    await dialect.exclusive_retention_lock(conn, RETENTION_LOCK_PATIENCE_SECONDS)
                elif lock == "shared":
                    await dialect.share_retention_lock(conn)
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
