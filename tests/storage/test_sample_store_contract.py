"""The contract of the sample store (app.storage.samples.protocol.SampleStore), run against every
implementation on both backends: what is written is read back bit for bit, the last write of a
(series, ts) wins whatever the order, bucket aggregates of a time range and of marked (series,
bucket) pairs equal the brute-force truth of the rollup property test (tests/rollup_oracle.py),
the rollup job's replacement of marked buckets, drops before cut-offs, and empty selections.

Series come from the real registry (app.storage.series) through the resolver a write is given,
as `Store.append` passes it.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import numpy as np
import pytest
from conftest import sql_rows, test_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rollup_oracle import brute_force_buckets
from sqlalchemy import select

from app.config import Settings
from app.matchers import canonical_labels
from app.model import SampleBatch
from app.services.retention import RetentionPlan, retention_defaults
from app.services.rollup import RESOLUTIONS, Buckets, Resolution
from app.storage import schema, series
from app.storage.engine import Engines, make_engines
from app.storage.samples.blocks_store import BlockSampleStore
from app.storage.samples.protocol import BucketRange, MarkedBuckets, SampleStore, SeriesResolver
from app.storage.samples.rows import RowSampleStore
from app.storage.writes import AppendResult, CardinalityExceeded, HistoryConflict
from app.timeutil import to_ms
from app.validation import series_key

T = TypeVar("T")
HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 1_764_547_200_000  # 2025-12-01T00:00:00Z, a whole day
STALE = 0x7FF0000000000002

Opener = Callable[[Settings, Engines, Callable[[], int]], SampleStore]


def _rows(settings: Settings, engines: Engines, clock: Callable[[], int]) -> SampleStore:
    defaults = retention_defaults(settings)
    return RowSampleStore(settings, engines, clock, defaults, to_ms(settings.rollup_grace))


def _blocks(settings: Settings, engines: Engines, clock: Callable[[], int]) -> SampleStore:
    defaults = retention_defaults(settings)
    return BlockSampleStore(settings, engines, clock, defaults, to_ms(settings.rollup_grace))


class CompactingBefore(BlockSampleStore):
    """The block store compacting everything before each write: what earlier writes left is in
    blocks, the last write's rows in the head, so reads cross both."""

    async def append(
        self, batch: SampleBatch, ids: np.ndarray, missing: list[int], resolve: SeriesResolver
    ) -> AppendResult:
        await self.compact(T0 + 100 * DAY)
        return await super().append(batch, ids, missing, resolve)


class CompactingAfter(BlockSampleStore):
    """The block store compacting everything after each write: reads find blocks only, and
    late writes rewrite them."""

    async def append(
        self, batch: SampleBatch, ids: np.ndarray, missing: list[int], resolve: SeriesResolver
    ) -> AppendResult:
        result = await super().append(batch, ids, missing, resolve)
        await self.compact(T0 + 100 * DAY)
        return result


def _compacting(kind: type[BlockSampleStore]) -> Opener:
    def open_store(settings: Settings, engines: Engines, clock: Callable[[], int]) -> SampleStore:
        defaults = retention_defaults(settings)
        return kind(settings, engines, clock, defaults, to_ms(settings.rollup_grace))

    return open_store


def _direct(settings: Settings, engines: Engines, clock: Callable[[], int]) -> SampleStore:
    """The block store writing every write's rows of closed spans straight into blocks, as it
    does a bulk write's (samples.direct_blocks)."""
    store = _blocks(settings, engines, clock)
    assert isinstance(store, BlockSampleStore)
    store.direct_min_rows = 1
    return store


COMPACTING_BEFORE = _compacting(CompactingBefore)
COMPACTING_AFTER = _compacting(CompactingAfter)
IMPLEMENTATIONS: dict[str, Opener] = {
    "rows": _rows,
    "blocks": _blocks,
    "blocks-compact-before": COMPACTING_BEFORE,
    "blocks-compact-after": COMPACTING_AFTER,
    "blocks-direct": _direct,
}
_metrics = itertools.count()


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def implementation(request: pytest.FixtureRequest) -> Opener:
    return IMPLEMENTATIONS[str(request.param)]


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


class Subject:
    """A sample store opened on the test's database, and what a test needs around it."""

    def __init__(self, settings: Settings, engines: Engines, store: SampleStore) -> None:
        self.settings, self.engines, self.store = settings, engines, store

    async def write(
        self, metric: str, points: Sequence[tuple[str, int, float]]
    ) -> tuple[AppendResult, dict[str, int]]:
        """Write (host, ts, value) samples of `metric` as one batch of new series; the result
        and the series id of each host."""
        hosts = sorted({host for host, _, _ in points})
        keys = [series_key(metric, canonical_labels({"host": host})) for host in hosts]
        batch = SampleBatch(
            keys=keys,
            series_index=np.array([hosts.index(h) for h, _, _ in points], dtype=np.int64),
            ts=np.array([ts for _, ts, _ in points], dtype=np.int64),
            values=np.array([v for _, _, v in points], dtype=np.float64),
        )

        async def resolve(
            conn: Any, ids: np.ndarray, missing: list[int]
        ) -> dict[int, CardinalityExceeded]:
            return await series.resolve_for_write(conn, keys, ids, missing, True, self.settings)

        ids = np.full(len(keys), -1, dtype=np.int64)
        result = await self.store.append(batch, ids, list(range(len(keys))), resolve)
        return result, {host: int(ids[i]) for i, host in enumerate(hosts)}

    async def read(self, ids: Sequence[int], lo: int, hi: int, limit: int = 10**9) -> Any:
        async with self.engines.reader.connect() as conn:
            return await self.store.read(conn, ids, lo, hi, limit)

    async def aggregate(self, selection: Any, res: Resolution) -> Buckets:
        async with self.engines.reader.connect() as conn:
            return await self.store.aggregate(conn, selection, res)


@asynccontextmanager
async def opened(database_url: str, implementation: Opener) -> AsyncIterator[Subject]:
    settings = test_settings(database_url)
    engines = make_engines(settings)
    store = implementation(settings, engines, lambda: T0 + 10 * DAY)
    try:
        yield Subject(settings, engines, store)
    finally:
        await store.close()
        await engines.dispose()


def as_dict(buckets: Buckets, hosts: dict[int, str]) -> dict[tuple[str, int], tuple[Any, ...]]:
    out = {}
    for i in range(len(buckets)):
        out[(hosts[int(buckets.sids[i])], int(buckets.bucket[i]))] = (
            int(buckets.count[i]),
            float(buckets.sum[i]),
            float(buckets.min[i]),
            float(buckets.max[i]),
            float(buckets.sumsq[i]),
            float(buckets.last[i]),
            int(buckets.last_ts[i]),
        )
    return out


def bits(values: np.ndarray) -> list[int]:
    return np.ascontiguousarray(values, dtype=np.float64).view(np.uint64).tolist()


# -- exact values, last write wins, order ------------------------------------------------------

PATTERNS = [
    STALE,  # the Prometheus stale marker
    0x7FF8000000000001,  # a quiet NaN with a payload
    0xFFF8000000000123,  # a negative NaN with a payload
    0x7FF0000000000000,  # +Inf
    0xFFF0000000000000,  # -Inf
    0x8000000000000000,  # -0.0
    0x0000000000000000,  # 0.0
    0x0000000000000001,  # the smallest subnormal
    0x7FEFFFFFFFFFFFFF,  # the largest finite double
    0x3FF199999999999A,  # 1.1
]


def test_write_then_read_gives_back_every_bit_pattern(
    database_url: str, implementation: Opener
) -> None:
    values = np.array(PATTERNS, dtype=np.uint64).view(np.float64)
    stamps = [T0 + i * 1000 for i in range(len(PATTERNS))]

    async def go() -> None:
        async with opened(database_url, implementation) as subject:
            result, ids = await subject.write(
                "exact", [("a", ts, float(v)) for ts, v in zip(stamps, values, strict=True)]
            )
            assert (result.raw, result.rollups_only, result.beyond_retention) == (10, 0, 0)
            sids, ts, got = await subject.read([ids["a"]], T0, T0 + HOUR)
            assert ts.tolist() == stamps and sids.tolist() == [ids["a"]] * len(stamps)
            assert bits(got) == PATTERNS
            async with subject.engines.reader.connect() as conn:
                _, at_ts, at = await subject.store.read_at(conn, [ids["a"]], stamps[::-1])
            assert at_ts.tolist() == stamps and bits(at) == PATTERNS

    run(go())


def test_the_last_write_of_a_series_and_timestamp_wins(
    database_url: str, implementation: Opener
) -> None:
    # With compaction between the writes, the replaced samples lie in blocks: counted as well.
    async def go() -> None:
        async with opened(database_url, implementation) as subject:
            points = [("a", T0, 1.0), ("a", T0, 2.0), ("b", T0, 5.0), ("a", T0, 3.0)]
            result, ids = await subject.write("lww", points)
            assert result.raw == 2  # counted after de-duplication
            assert result.overwritten == 0  # repeats within a batch replace nothing stored
            # Overwrites in a later write, NaN over a number and a number over NaN included,
            # each counted; the same bits again are not.
            result, _ = await subject.write("lww", [("a", T0, float("nan")), ("b", T0, 6.0)])
            assert result.overwritten == 2
            result, _ = await subject.write("lww", [("a", T0, -0.0), ("b", T0, 6.0)])
            assert result.overwritten == 1
            result, _ = await subject.write("lww", [("a", T0, -0.0), ("b", T0 + 1, 6.0)])
            assert result.overwritten == 0
            _, ts, values = await subject.read([ids["a"], ids["b"]], T0, T0)
            assert ts.tolist() == [T0, T0]
            assert bits(values) == [0x8000000000000000, bits(np.array([6.0]))[0]]

    run(go())


def test_out_of_order_writes_read_back_in_order(database_url: str, implementation: Opener) -> None:
    rng = np.random.default_rng(7)
    stamps = (T0 + rng.permutation(500) * 10_000).tolist()

    async def go() -> None:
        async with opened(database_url, implementation) as subject:
            points = [(h, ts, float(ts % 997)) for ts in stamps for h in ("b", "a")]
            _, ids = await subject.write("order", points[:600])
            await subject.write("order", points[600:])
            sids, ts, values = await subject.read([ids["b"], ids["a"]], T0, T0 + DAY)
            expected = sorted((ids[h], t) for h, t, _ in points)
            assert list(zip(sids.tolist(), ts.tolist(), strict=True)) == expected
            assert values.tolist() == [float(t % 997) for _, t in expected]
            # `limit` keeps the lowest series ids first.
            first = min(ids.values())
            sids, ts, _ = await subject.read(list(ids.values()), T0, T0 + DAY, limit=10)
            assert sids.tolist() == [first] * 10 and ts.tolist() == sorted(stamps)[:10]

    run(go())


def test_horizon_rules_raw_history_beyond_and_refusal(
    database_url: str, implementation: Opener
) -> None:
    """Issue 12's rules (docs/rollups-and-retention.md#writes-older-than-raw-retention): at or
    after the raw floor raw, older but retained merged into the rollups only (the horizon moves
    to the floor), older than every retention left out; history into a bucket that holds data
    refuses the whole write."""
    now = T0 + 10 * DAY

    async def go() -> None:
        async with opened(database_url, implementation) as subject:
            async with subject.engines.writer.begin() as conn:
                await conn.exec_driver_sql(
                    "INSERT INTO retention_overrides (metric_name, raw_ms, r1m_ms, r5m_ms,"
                    f" r1h_ms, updated_ms) VALUES ('rules', {2 * DAY}, {5 * DAY}, {5 * DAY},"
                    f" {5 * DAY}, 0)"
                )
            points = [("a", T0 + 9 * DAY, 1.0), ("a", T0 + 6 * DAY, 2.0), ("a", T0 + DAY, 3.0)]
            result, ids = await subject.write("rules", points)
            assert (result.raw, result.rollups_only, result.beyond_retention) == (1, 1, 1)
            _, ts, _ = await subject.read([ids["a"]], 0, now)
            assert ts.tolist() == [T0 + 9 * DAY]
            with pytest.raises(HistoryConflict) as refused:
                await subject.write(
                    "rules", [("a", T0 + 9 * DAY + 1, 4.0), ("a", T0 + 6 * DAY + 1, 5.0)]
                )
            assert (refused.value.position, refused.value.resolution) == (1, "1m")
            _, ts, _ = await subject.read([ids["a"]], 0, now)
            assert ts.tolist() == [T0 + 9 * DAY]  # nothing of the refused write

    run(go())
    rows = sql_rows(database_url, "SELECT bucket, count, sum FROM rollup_1m")
    assert rows == [(T0 + 6 * DAY, 1, 2.0)]
    horizons = sql_rows(
        database_url, "SELECT dropped_before FROM raw_horizon WHERE metric_name = 'rules'"
    )
    assert horizons == [(T0 + 8 * DAY,)]


def test_has_nan_ignores_stale_markers(database_url: str, implementation: Opener) -> None:
    stale = float(np.array([STALE], dtype=np.uint64).view(np.float64)[0])

    async def go() -> None:
        async with opened(database_url, implementation) as subject:
            _, ids = await subject.write("nan", [("a", T0, stale), ("a", T0 + 60_000, math.nan)])
            async with subject.engines.reader.connect() as conn:
                assert not await subject.store.has_nan(conn, [ids["a"]], T0, T0 + 59_999)
                assert await subject.store.has_nan(conn, [ids["a"]], T0, T0 + 60_000)
                assert not await subject.store.has_nan(conn, [], T0, T0 + DAY)

    run(go())


def test_has_samples_in_selects_series_by_time(database_url: str, implementation: Opener) -> None:
    async def go() -> None:
        async with opened(database_url, implementation) as subject:
            _, ids = await subject.write("bounds", [("a", T0, 1.0), ("b", T0 + HOUR, math.nan)])
            column = schema.series.c.id

            async def within(lo: int, hi: int) -> list[int]:
                query = select(column).where(subject.store.has_samples_in(column, lo, hi))
                async with subject.engines.reader.connect() as conn:
                    return sorted((await conn.execute(query)).scalars())

            assert await within(T0, T0 + HOUR) == sorted(ids.values())
            assert await within(T0, T0) == [ids["a"]]
            assert await within(T0 + 1, T0 + HOUR) == [ids["b"]]  # NaN is a sample too
            assert await within(T0 + 1, T0 + HOUR - 1) == []

    run(go())


# -- bucket aggregates against brute force -----------------------------------------------------

point = st.tuples(
    st.sampled_from(("a", "b", "c")),
    st.integers(-30, 3 * 60 * 4).map(lambda quarter: T0 + quarter * 15_000),  # 1969-safe offsets
    st.integers(0, 14_999),  # milliseconds within the quarter minute
    st.one_of(st.integers(-50, 50).map(lambda v: v / 4), st.just(math.nan)),
)
writes = st.lists(st.lists(point, min_size=1, max_size=30), min_size=1, max_size=3)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batches=writes, cut=st.integers(0, 12))
def test_bucket_aggregates_equal_brute_force(
    database_url: str, implementation: Opener, batches: list[list[Any]], cut: int
) -> None:
    metric = f"agg_{next(_metrics)}"
    truth: dict[tuple[str, int], float] = {}
    for batch in batches:
        for host, quarter, ms, value in batch:
            truth[(host, quarter + ms)] = value

    async def go() -> None:
        async with opened(database_url, implementation) as subject:
            ids: dict[str, int] = {}
            for batch in batches:
                _, found = await subject.write(metric, [(h, q + ms, v) for h, q, ms, v in batch])
                ids.update(found)
            hosts = {sid: host for host, sid in ids.items()}
            every = sorted(ids.values())
            lo, hi = T0 - HOUR, T0 + 4 * HOUR
            for res in RESOLUTIONS:
                expected = brute_force_buckets(truth, res.ms)
                got = await subject.aggregate(BucketRange(every, lo, hi), res)
                assert as_dict(got, hosts) == expected, res.name
                # Part of the range, from a bucket boundary on: the samples in [start, end).
                start = T0 + cut * 15 * 60_000 - (T0 + cut * 15 * 60_000) % res.ms
                end = start + 2 * res.ms + 1
                part = {k: v for k, v in truth.items() if start <= k[1] < end}
                got = await subject.aggregate(BucketRange(every, start, end), res)
                assert as_dict(got, hosts) == brute_force_buckets(part, res.ms), res.name
                # Every bucket written is marked: the marked pairs give the same aggregates.
                marks = f"rollup_dirty_{res.name}"
                got = await subject.aggregate(MarkedBuckets(marks, every), res)
                assert as_dict(got, hosts) == expected, res.name
                # Marked pairs of some series, in [lo, hi] and before `before`.
                some = every[:1]
                got = await subject.aggregate(
                    MarkedBuckets(marks, some, lo=start, hi=start + res.ms, before=end), res
                )
                assert as_dict(got, hosts) == {
                    k: v
                    for k, v in expected.items()
                    if ids[k[0]] in some and start <= k[1] <= start + res.ms and k[1] < end
                }, res.name

    run(go())


def test_bucket_aggregates_of_special_values(database_url: str, implementation: Opener) -> None:
    """NaN is left out (a bucket of NaN only has no aggregates); infinities count; `last` is the
    value at the latest counted timestamp; buckets before 1970 align down."""
    points = [
        ("a", T0, 1.5),
        ("a", T0 + 1000, math.inf),
        ("a", T0 + 2000, math.nan),  # the latest sample of the bucket, but NaN
        ("a", T0 + 60_000, math.nan),  # a bucket of NaN only
        ("b", -90_000, 2.0),  # 1969-12-31T23:58:30Z: bucket -120000
        ("b", -30_001, -4.0),  # bucket -60000
        ("b", 5, 1e200),  # beyond SQUARE_LIMIT: sumsq is infinite
    ]

    async def go() -> None:
        async with opened(database_url, implementation) as subject:
            _, ids = await subject.write("special", points)
            hosts = {sid: host for host, sid in ids.items()}
            got = await subject.aggregate(
                BucketRange(sorted(ids.values()), -DAY, T0 + DAY), RESOLUTIONS[0]
            )
            assert as_dict(got, hosts) == {
                ("a", T0): (2, math.inf, 1.5, math.inf, math.inf, math.inf, T0 + 1000),
                ("b", -120_000): (1, 2.0, 2.0, 2.0, 4.0, 2.0, -90_000),
                ("b", -60_000): (1, -4.0, -4.0, -4.0, 16.0, -4.0, -30_001),
                ("b", 0): (1, 1e200, 1e200, 1e200, math.inf, 1e200, 5),
            }

    run(go())


def test_store_aggregates_replaces_the_marked_buckets(
    database_url: str, implementation: Opener
) -> None:
    res = RESOLUTIONS[0]

    def stored() -> dict[tuple[int, int], tuple[Any, ...]]:
        rows = sql_rows(database_url, "SELECT series_id, bucket, count, sum, last FROM rollup_1m")
        return {(int(r[0]), int(r[1])): tuple(r[2:]) for r in rows}

    async def go() -> dict[str, int]:
        async with opened(database_url, implementation) as subject:
            _, ids = await subject.write(
                "replace", [("a", T0, 1.0), ("a", T0 + 1000, 2.0), ("a", T0 + 60_000, 4.0)]
            )
            marks = MarkedBuckets("rollup_dirty_1m")
            async with subject.engines.writer.begin() as conn:
                assert await subject.store.store_aggregates(conn, marks, res, selected=2) == 2
            # The second bucket's only sample becomes NaN: its row goes; a marked bucket
            # without samples (merged history) keeps its row.
            await subject.write("replace", [("a", T0 + 60_000, math.nan)])
            async with subject.engines.writer.begin() as conn:
                await conn.exec_driver_sql(
                    "INSERT INTO rollup_1m VALUES"
                    f" ({ids['a']}, {T0 + HOUR}, 1, 9.0, 9.0, 9.0, 81.0, 9.0, {T0 + HOUR})"
                )
                await conn.exec_driver_sql(
                    f"INSERT INTO rollup_dirty_1m VALUES ({ids['a']}, {T0 + HOUR})"
                )
                assert await subject.store.store_aggregates(conn, marks, res, selected=3) == 1
            return ids

    ids = run(go())
    sid = ids["a"]
    assert stored() == {(sid, T0): (2, 3.0, 2.0), (sid, T0 + HOUR): (1, 9.0, 9.0)}


def test_marked_buckets_of_many_series(database_url: str, implementation: Opener) -> None:
    # More series than one SQLite expression may name (its depth limit is 1,000).
    res = RESOLUTIONS[0]
    hosts = [f"h{i:04d}" for i in range(1500)]

    async def go() -> None:
        async with opened(database_url, implementation) as subject:
            points = [
                (h, T0 + k * 30_000, float(i + k)) for i, h in enumerate(hosts) for k in (0, 3)
            ]
            _, ids = await subject.write("many", points)
            got = await subject.aggregate(MarkedBuckets("rollup_dirty_1m"), res)
            pairs = zip(got.sids.tolist(), got.bucket.tolist(), strict=True)
            by_pair = dict(zip(pairs, got.sum.tolist(), strict=True))
            assert len(by_pair) == 2 * len(hosts)
            for i, h in enumerate(hosts):
                assert by_pair[(ids[h], T0)] == float(i)
                assert by_pair[(ids[h], T0 + 60_000)] == float(i + 3)

    run(go())


def test_drop_before_cut_off(database_url: str, implementation: Opener) -> None:
    async def go() -> None:
        async with opened(database_url, implementation) as subject:
            points = [(h, T0 + d * DAY + 5 * HOUR, float(d)) for d in range(4) for h in "ab"]
            _, ids = await subject.write("drop", points)
            plan = RetentionPlan(
                raw_cutoffs={"*": T0 + 2 * DAY + HOUR},
                rollup_cutoffs={res.name: {"*": 0} for res in RESOLUTIONS},
                overridden=frozenset(),
            )
            async with subject.engines.writer.begin() as conn:
                dropped = await subject.store.drop_before(conn, plan)
            assert dropped.rows == 4
            _, ts, _ = await subject.read(sorted(ids.values()), 0, T0 + 10 * DAY)
            assert sorted(set(ts.tolist())) == [T0 + 2 * DAY + 5 * HOUR, T0 + 3 * DAY + 5 * HOUR]
            # The raw horizon moved with the drop: a write of what was dropped is history now.
            result, _ = await subject.write("drop", [("a", T0 + 5 * HOUR, 9.0)])
            assert (result.raw, result.rollups_only) == (0, 1)
            result, _ = await subject.write("drop", [("a", T0 + 3 * DAY + 6 * HOUR, 9.0)])
            assert (result.raw, result.rollups_only) == (1, 0)

    run(go())


def test_drop_before_per_metric_cut_offs(database_url: str, implementation: Opener) -> None:
    """A metric with its own, later cut-off loses more than the others (PostgreSQL: whole day
    partitions up to the earliest cut-off, row deletes after it)."""

    async def go() -> None:
        async with opened(database_url, implementation) as subject:
            days = range(4)
            _, short = await subject.write(
                "short", [(h, T0 + d * DAY + 5 * HOUR, 1.0) for d in days for h in "ab"]
            )
            _, other = await subject.write(
                "other", [("c", T0 + d * DAY + 5 * HOUR, 2.0) for d in days]
            )
            plan = RetentionPlan(
                raw_cutoffs={"*": T0 + DAY + HOUR, "short": T0 + 2 * DAY + HOUR},
                rollup_cutoffs={res.name: {"*": 0, "short": 0} for res in RESOLUTIONS},
                overridden=frozenset({"short"}),
            )
            async with subject.engines.writer.begin() as conn:
                dropped = await subject.store.drop_before(conn, plan)
            assert dropped.rows == 5
            kept = await subject.read(sorted(short.values()), 0, T0 + 10 * DAY)
            assert sorted(set(kept[1].tolist())) == [T0 + d * DAY + 5 * HOUR for d in (2, 3)]
            kept = await subject.read([other["c"]], 0, T0 + 10 * DAY)
            assert kept[1].tolist() == [T0 + d * DAY + 5 * HOUR for d in (1, 2, 3)]

    run(go())


def test_drop_before_in_chunks_of_series(database_url: str, implementation: Opener) -> None:
    """The retention job's form: a call per chunk of series drops only those series' samples
    (what goes whole for every series may wait) and moves no horizon; the call without series
    after the last chunk completes the drop: together, what one call drops."""

    async def go() -> None:
        async with opened(database_url, implementation) as subject:
            days = range(4)
            _, short = await subject.write(
                "short", [(h, T0 + d * DAY + 5 * HOUR, 1.0) for d in days for h in "ab"]
            )
            _, other = await subject.write(
                "other", [("c", T0 + d * DAY + 5 * HOUR, 2.0) for d in days]
            )
            plan = RetentionPlan(
                raw_cutoffs={"*": T0 + DAY + HOUR, "short": T0 + 2 * DAY + HOUR},
                rollup_cutoffs={res.name: {"*": 0, "short": 0} for res in RESOLUTIONS},
                overridden=frozenset({"short"}),
            )
            async with subject.engines.writer.begin() as conn:
                rows = (await subject.store.drop_before(conn, plan, series=[short["a"]])).rows
            kept = await subject.read([short["a"]], 0, T0 + 10 * DAY)
            assert T0 + DAY + 5 * HOUR not in kept[1].tolist()
            untouched = await subject.read([short["b"], other["c"]], 0, T0 + 10 * DAY)
            assert len(untouched[1]) == 8
            # No horizon moved yet: what the chunk dropped is written raw again.
            result, _ = await subject.write("short", [("a", T0 + DAY + 5 * HOUR, 3.0)])
            assert (result.raw, result.rollups_only) == (1, 0)
            for chunk in ([short["a"], short["b"]], [other["c"]]):
                async with subject.engines.writer.begin() as conn:
                    rows += (await subject.store.drop_before(conn, plan, series=chunk)).rows
            async with subject.engines.writer.begin() as conn:
                rows += (await subject.store.drop_before(conn, plan)).rows
            assert rows == 6  # the 5 of one call and the sample written again
            kept = await subject.read(sorted(short.values()), 0, T0 + 10 * DAY)
            assert sorted(set(kept[1].tolist())) == [T0 + d * DAY + 5 * HOUR for d in (2, 3)]
            kept = await subject.read([other["c"]], 0, T0 + 10 * DAY)
            assert kept[1].tolist() == [T0 + d * DAY + 5 * HOUR for d in (1, 2, 3)]
            result, _ = await subject.write("short", [("a", T0 + DAY + 5 * HOUR, 4.0)])
            assert (result.raw, result.rollups_only) == (0, 1)

    run(go())


def test_empty_selections(database_url: str, implementation: Opener) -> None:
    async def go() -> None:
        async with opened(database_url, implementation) as subject:
            _, ids = await subject.write("empty", [("a", T0, 1.0)])
            sid = ids["a"]
            for found in (
                await subject.read([], T0, T0 + DAY),
                await subject.read([sid], T0 + 1, T0 + DAY),
                await subject.read([sid + 1000], T0, T0 + DAY),
            ):
                assert [a.size for a in found] == [0, 0, 0]
            async with subject.engines.reader.connect() as conn:
                found = await subject.store.read_at(conn, [sid], [])
                assert [a.size for a in found] == [0, 0, 0]
                found = await subject.store.read_at(conn, [], [T0])
                assert [a.size for a in found] == [0, 0, 0]
                hours = await subject.store.hours_with_samples(
                    conn, np.array([sid, sid]), np.array([T0, T0 + HOUR])
                )
                assert hours.tolist() == [True, False]
            for res in RESOLUTIONS:
                for selection in (
                    BucketRange([], T0, T0 + DAY),
                    BucketRange([sid], T0 + HOUR, T0 + DAY),
                    MarkedBuckets(f"rollup_dirty_{res.name}", []),
                    MarkedBuckets(f"rollup_dirty_{res.name}", [sid], before=T0),
                ):
                    assert len(await subject.aggregate(selection, res)) == 0
            result, _ = await subject.write("empty", [])
            assert result.written == 0

    run(go())
