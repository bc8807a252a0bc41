"""The store: the narrow interface the HTTP layer and the jobs use. Writes live here; reads in
`reads.py`, rollup and retention work in `maintenance.py`.

A write is one transaction: create any new series (under the cardinality limits), upsert the
samples (last write wins), and mark the rollup buckets they touch for recomputation. The caller is
answered only after commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import orjson
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection

from app.config import Settings
from app.matchers import Matcher
from app.model import MetricMetadata, SampleBatch, SeriesKey
from app.services.retention import RetentionPlan
from app.services.rollup import RESOLUTIONS, Resolution
from app.storage import (
    dialect,
    faults,
    locks,
    maintenance,
    metadata,
    reads,
    schema,
    series_index,
)
from app.storage.engine import (
    Engines,
    asyncpg_dsn,
    make_engines,
    postgres_connect_args,
    sqlite_path,
)
from app.storage.pg_small_writes import SmallWrites
from app.storage.reads import RollupData, SeriesData, SeriesRef
from app.storage.series_index import IndexedSeries, RollupWindows, TimeBounds
from app.timeutil import format_ms, now_ms

PARTITIONS_PER_TRANSACTION = 50
DISK_FULL_BELOW_BYTES = 64 * 1024  # less free space than this: a SQLite write would not fit


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


@dataclass(eq=False)
class CardinalityExceeded(Exception):
    metric: str
    limit: int
    scope: str  # "per_metric" or "total"

    def __str__(self) -> str:
        if self.scope == "per_metric":
            return (
                f"metric {self.metric!r} would exceed MAX_SERIES_PER_METRIC ({self.limit} series)"
            )
        return f"new series for metric {self.metric!r} would exceed MAX_SERIES_TOTAL ({self.limit})"


@dataclass(eq=False)
class BeforeHorizon(Exception):
    """A sample older than raw data that retention has already dropped for its metric."""

    position: int  # index of the sample in the batch
    metric: str
    horizon_ms: int

    def __str__(self) -> str:
        return (
            f"timestamp is older than {format_ms(self.horizon_ms)}, before which retention has "
            f"already dropped raw data of metric {self.metric!r}; such samples cannot be rolled "
            "up exactly any more"
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


@dataclass
class AppendResult:
    written: int
    rejected: dict[int, CardinalityExceeded] = field(default_factory=dict)  # key index -> reason


def dedupe_last(sids: np.ndarray, ts: np.ndarray) -> np.ndarray | None:
    """Indices keeping the last occurrence of each (series, ts), sorted by (series, ts); None
    when the input is already strictly sorted (the usual columnar import)."""
    if sids.size < 2:
        return None
    ds, dt = np.diff(sids), np.diff(ts)
    if ((ds > 0) | ((ds == 0) & (dt > 0))).all():
        return None
    order = np.lexsort((ts, sids))  # stable: equal keys keep their arrival order
    s, t = sids[order], ts[order]
    last = np.ones(order.size, dtype=bool)
    last[:-1] = (s[1:] != s[:-1]) | (t[1:] != t[:-1])
    return order[last]


def bucket_pairs(sids: np.ndarray, ts: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (series, bucket) pairs of samples sorted by (series, ts), in that order."""
    buckets = ts - ts % width
    if sids.size == 0:
        return sids, buckets
    keep = np.ones(sids.size, dtype=bool)
    keep[1:] = (sids[1:] != sids[:-1]) | (buckets[1:] != buckets[:-1])
    return sids[keep], buckets[keep]


def horizon_check(batch: SampleBatch, horizons: Mapping[str, int]) -> None:
    """Raise BeforeHorizon for the first sample older than raw data retention has dropped."""
    if not horizons:
        return
    default = horizons.get("*", -(2**62))
    floors = np.array(
        [max(default, horizons.get(k.metric, default)) for k in batch.keys], dtype=np.int64
    )
    bad = np.flatnonzero(batch.ts < floors[batch.series_index])
    if bad.size:
        key = batch.keys[int(batch.series_index[bad[0]])]
        raise BeforeHorizon(int(bad[0]), key.metric, int(floors[batch.series_index[bad[0]]]))


@dataclass
class SampleRows:
    """What a write stores: samples of accepted series, the last of each (series, ts), sorted,
    and the (series, bucket) marks they set per resolution."""

    sids: np.ndarray
    ts: np.ndarray
    values: np.ndarray
    marks: list[tuple[str, np.ndarray, np.ndarray]]

    @property
    def written(self) -> int:
        return int(self.sids.size)

    @classmethod
    def of(cls, batch: SampleBatch, ids: np.ndarray) -> SampleRows:
        """`ids`: series id per key of the batch, -1 for a rejected series."""
        sids = ids[batch.series_index]
        keep = sids >= 0
        sids, ts, values = sids[keep], batch.ts[keep], batch.values[keep]
        chosen = dedupe_last(sids, ts)
        if chosen is not None:
            sids, ts, values = sids[chosen], ts[chosen], values[chosen]
        marks = [(res.name, *bucket_pairs(sids, ts, res.ms)) for res in RESOLUTIONS]
        return cls(sids, ts, values, marks)


class Store:
    def __init__(self, settings: Settings, engines: Engines) -> None:
        self.settings = settings
        self.engines = engines
        self.backend = engines.backend
        self._series_ids: dict[tuple[str, str], int] = {}
        self._metadata_written: dict[tuple[str, str], int] = {}  # (metric, fingerprint) -> ms
        self._partition_days: set[int] = set()
        self._write_lock = asyncio.Lock()
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
        samples are left out and reported."""
        if len(batch) == 0:
            return AppendResult(0)
        async with self._write_lock, self._write_deadline():
            with self._noting_faults():
                await self._ensure_partitions(batch.ts)
                return await self._append_locked(batch, all_or_nothing)

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

    async def _append_locked(self, batch: SampleBatch, all_or_nothing: bool) -> AppendResult:
        ids, missing = self._cached_ids(batch.keys)
        if not missing and self.backend == "sqlite":
            return await self._append_known_sqlite(batch, ids)
        if not missing and len(batch) < dialect.COPY_MIN_ROWS:
            return await self._append_known_postgres(batch, ids)
        async with self.engines.writer.begin() as conn:
            await dialect.share_retention_lock(conn)
            horizon_check(batch, await maintenance.read_horizons(conn))
            rejected = await self._resolve_for_write(conn, batch.keys, ids, missing, all_or_nothing)
            rows = SampleRows.of(batch, ids)
            await dialect.write_samples(conn, rows.sids, rows.ts, rows.values, rows.marks)
        # Only after commit: ids of series created in a rolled-back transaction must not be cached.
        for i, key in enumerate(batch.keys):
            if ids[i] >= 0:
                self._series_ids[(key.metric, key.fingerprint)] = int(ids[i])
        return AppendResult(rows.written, rejected)

    async def _append_known_sqlite(self, batch: SampleBatch, ids: np.ndarray) -> AppendResult:
        """SQLite, every series already known (the steady state of single-sample writes): the
        whole transaction in one call on aiosqlite's thread instead of a round trip per step."""
        rows = SampleRows.of(batch, ids)

        def write(db: sqlite3.Connection) -> None:
            horizon_check(batch, maintenance.horizons_of(db.execute(maintenance.HORIZONS_SQL)))
            dialect.sqlite_write(db, rows.sids, rows.ts, rows.values, rows.marks)

        async with self.engines.writer.connect() as conn:
            await dialect.sqlite_transaction(conn, write)
        return AppendResult(rows.written)

    async def _append_known_postgres(self, batch: SampleBatch, ids: np.ndarray) -> AppendResult:
        """PostgreSQL, a small write of known series: on the connection kept for them, in four
        round trips (app.storage.pg_small_writes)."""
        rows = SampleRows.of(batch, ids)
        assert self._small_writes is not None

        def check(horizons: dict[str, int]) -> None:
            horizon_check(batch, horizons)

        await self._small_writes.write(check, rows.sids, rows.ts, rows.values, rows.marks)
        return AppendResult(rows.written)

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

    async def _ensure_partitions(self, ts: np.ndarray) -> None:
        """Create missing day partitions (PostgreSQL), in short transactions of their own so a
        long backfill neither holds their locks nor piles up hundreds in one transaction."""
        if self.backend != "postgresql" or ts.size == 0:
            return
        first, last = int(ts.min()) // dialect.DAY_MS, int(ts.max()) // dialect.DAY_MS
        if last - first < 32 and self._partition_days.issuperset(range(first, last + 1)):
            return  # the usual case, without sorting the batch's days
        days = sorted(set(np.unique(ts // dialect.DAY_MS).tolist()) - self._partition_days)
        for start in range(0, len(days), PARTITIONS_PER_TRANSACTION):
            chunk = days[start : start + PARTITIONS_PER_TRANSACTION]
            async with self.engines.writer.begin() as conn:
                await dialect.ensure_partitions(conn, chunk)
            self._partition_days.update(chunk)

    def forget_partitions(self) -> None:
        self._partition_days.clear()

    async def _resolve_for_write(
        self,
        conn: AsyncConnection,
        keys: Sequence[SeriesKey],
        ids: np.ndarray,
        missing: list[int],
        all_or_nothing: bool,
    ) -> dict[int, CardinalityExceeded]:
        """Fill in `ids` of the `missing` keys (from `_cached_ids`): found, or created within the
        limits, or left -1 for rejected ones, which are returned."""
        if not missing:
            return {}
        await dialect.lock_series_creation(conn)
        found = await self._lookup_series(conn, [keys[i] for i in missing])
        rejected: dict[int, CardinalityExceeded] = {}
        to_create = []
        for i in missing:
            sid = found.get((keys[i].metric, keys[i].fingerprint))
            if sid is None:
                to_create.append(i)
            else:
                ids[i] = sid
        if to_create:
            allowed, rejected = await self._apply_limits(conn, keys, to_create)
            if rejected and all_or_nothing:
                raise next(iter(rejected.values()))
            created = await self._create_series(conn, [keys[i] for i in allowed])
            for i in allowed:
                ids[i] = created[(keys[i].metric, keys[i].fingerprint)]
        return rejected

    async def _lookup_series(
        self, conn: AsyncConnection, keys: Sequence[SeriesKey]
    ) -> dict[tuple[str, str], int]:
        found: dict[tuple[str, str], int] = {}
        wanted = {(k.metric, k.fingerprint) for k in keys}
        fingerprints = sorted({k.fingerprint for k in keys})
        cols = schema.series.c
        for start in range(0, len(fingerprints), 500):
            chunk = fingerprints[start : start + 500]
            rows = await conn.execute(
                select(cols.id, cols.metric_name, cols.fingerprint).where(
                    cols.fingerprint.in_(chunk)
                )
            )
            for sid, metric, fp in rows:
                if (metric, fp) in wanted:
                    found[(metric, fp)] = sid
        return found

    async def _apply_limits(
        self, conn: AsyncConnection, keys: Sequence[SeriesKey], to_create: list[int]
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
            if per_metric.get(metric, 0) >= self.settings.max_series_per_metric:
                rejected[i] = CardinalityExceeded(
                    metric, self.settings.max_series_per_metric, "per_metric"
                )
            elif total >= self.settings.max_series_total:
                rejected[i] = CardinalityExceeded(metric, self.settings.max_series_total, "total")
            else:
                allowed.append(i)
                per_metric[metric] = per_metric.get(metric, 0) + 1
                total += 1
        return allowed, rejected

    async def _create_series(
        self, conn: AsyncConnection, keys: Sequence[SeriesKey]
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

    async def select_raw(
        self, metric: str, matchers: Sequence[Matcher], start_ms: int, end_ms: int, limit: int
    ) -> tuple[list[SeriesData], bool]:
        try:
            async with self._deadline(), self.engines.reader.connect() as conn:
                refs = await self._find_series(conn, metric, matchers)
                return await reads.select_raw(conn, refs, start_ms, end_ms, limit)
        except TimeoutError:
            raise QueryTimeout(self.settings.query_timeout) from None

    async def select_rollup(
        self,
        metric: str,
        matchers: Sequence[Matcher],
        res: Resolution,
        start_ms: int,
        end_ms: int,
    ) -> tuple[list[RollupData], int | None]:
        try:
            async with self._deadline(), self.engines.reader.connect() as conn:
                if self.backend == "postgresql":
                    # Stored, live-tail and invalidated buckets come from three statements:
                    # one snapshot for all, or a job committing between them shows a bucket
                    # twice or not at all.
                    conn = await conn.execution_options(isolation_level="REPEATABLE READ")
                refs = await self._find_series(conn, metric, matchers)
                return await reads.select_rollup(conn, refs, res, start_ms, end_ms)
        except TimeoutError:
            raise QueryTimeout(self.settings.query_timeout) from None

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
        """Recompute the invalidated closed buckets of one resolution (caller holds job_lock)."""
        with self._noting_faults():
            async with self._write_lock, self.engines.writer.begin() as conn:
                return await maintenance.materialize(conn, res, closed_before)

    async def apply_retention(
        self, plan: RetentionPlan, closed: Mapping[str, int]
    ) -> maintenance.DropReport:
        """Bring rollups up to date, then drop what the plan expires, in one transaction that no
        write interleaves with (caller holds job_lock)."""
        async with self._write_lock, self.engines.writer.begin() as conn:
            await dialect.exclusive_retention_lock(conn)
            for res in RESOLUTIONS:
                await maintenance.materialize(conn, res, closed[res.name])
            report = await maintenance.drop_expired(conn, plan)
        if report.partitions:
            self.forget_partitions()
        return report

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


def is_connection_error(exc: BaseException) -> bool:
    """Whether an exception means the database is unreachable rather than a bad statement."""
    if isinstance(exc, OperationalError | OSError | ConnectionError | TimeoutError | PoolTimeout):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    name = type(getattr(exc, "orig", exc)).__name__
    return "Connection" in name or "CannotConnectNow" in name
