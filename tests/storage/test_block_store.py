"""The block layout's own cases beyond the contract (tests/storage/test_sample_store_contract.py
runs it too): compaction of closed spans, late rows into compacted spans and compacting again,
against a brute-force model on both backends; retention of straddling blocks; bounded reads."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import test_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rollup_oracle import brute_force_buckets
from test_sample_store_contract import DAY, HOUR, T0, Subject, as_dict, bits, opened, run

from app.config import Settings
from app.matchers import canonical_labels
from app.model import SampleBatch
from app.services.retention import RetentionPlan, retention_defaults
from app.services.rollup import RESOLUTIONS
from app.storage.engine import Engines, make_engines
from app.storage.samples.block_table import SPAN_MS, STALE_BITS
from app.storage.samples.blocks_store import BlockSampleStore
from app.storage.samples.protocol import BucketRange, MarkedBuckets, SampleStore
from app.storage.writes import CardinalityExceeded, HistoryConflict
from app.timeutil import to_ms
from app.validation import series_key

_metrics = itertools.count()
STALE = float(np.array([0x7FF0000000000002], dtype=np.uint64).view(np.float64)[0])


def _open(settings: Settings, engines: Engines, clock: Callable[[], int]) -> SampleStore:
    defaults = retention_defaults(settings)
    return BlockSampleStore(settings, engines, clock, defaults, to_ms(settings.rollup_grace))


def blocks_of(subject: Subject) -> BlockSampleStore:
    store = subject.store
    assert isinstance(store, BlockSampleStore)
    return store


value = st.one_of(
    st.integers(-40, 40).map(lambda v: v / 8),
    st.just(math.nan),
    st.just(STALE),
    st.just(-0.0),
)
sample = st.tuples(
    st.sampled_from(("a", "b")),
    st.integers(0, 6 * 120).map(lambda minute: T0 + minute * 60_000),  # 12 h: six spans
    st.integers(0, 59_999),
    value,
)
step = st.tuples(
    st.lists(sample, min_size=1, max_size=25),
    st.one_of(st.none(), st.integers(0, 7).map(lambda spans: T0 + spans * SPAN_MS + 1)),
)


async def rows_of(subject: Subject, sql: str) -> list[tuple[Any, ...]]:
    async with subject.engines.reader.connect() as conn:
        return [tuple(r) for r in (await conn.exec_driver_sql(sql)).all()]


def truth_of(model: dict[tuple[str, int], float], ids: dict[str, int]) -> list[tuple[int, int]]:
    return sorted((ids[h], ts) for h, ts in model)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step, min_size=1, max_size=5))
@pytest.mark.parametrize("direct", [False, True], ids=["head", "direct"])
def test_compaction_and_late_writes_equal_the_model(
    database_url: str, direct: bool, steps: list[tuple[list[Any], int | None]]
) -> None:
    """Writes (late ones into compacted spans included), each maybe followed by a compaction
    up to some span: every read equals the model, bit for bit, and so do bucket aggregates;
    what a compaction covered has left the head. With `direct`, every write goes into blocks
    as a bulk one does (samples.direct_blocks), over blocks and head rows alike."""

    metric = f"model_{next(_metrics)}"

    async def go() -> None:
        async with opened(database_url, _open) as subject:
            store = blocks_of(subject)
            if direct:
                store.direct_min_rows = 1
            model: dict[tuple[str, int], float] = {}
            ids: dict[str, int] = {}
            for points, compact_to in steps:
                rows = [(h, minute + ms, v) for h, minute, ms, v in points]
                _, found = await subject.write(metric, rows)
                ids.update(found)
                for h, ts, v in rows:
                    model[(h, ts)] = v
                if compact_to is not None:
                    await store.compact(compact_to)
                    cut = compact_to - compact_to % SPAN_MS
                    left = await rows_of(subject, f"SELECT count(*) FROM samples WHERE ts < {cut}")
                    assert left[0][0] == 0
                await check(subject, model, ids)

    run(go())


async def check(subject: Subject, model: dict[tuple[str, int], float], ids: dict[str, int]) -> None:
    hosts = {sid: h for h, sid in ids.items()}
    every = sorted(ids.values())
    sids, ts, values = await subject.read(every, T0 - DAY, T0 + DAY)
    expected = truth_of(model, ids)
    assert list(zip(sids.tolist(), ts.tolist(), strict=True)) == expected
    assert bits(values) == bits(np.array([model[(hosts[s], t)] for s, t in expected]))
    # A bounded read is the start of the whole one.
    limit = max(1, len(expected) // 2)
    part = await subject.read(every, T0 - DAY, T0 + DAY, limit=limit)
    assert part[1].tolist() == ts[:limit].tolist() and bits(part[2]) == bits(values[:limit])
    keyed = {(hosts[s], t): v for (s, t), v in zip(expected, values.tolist(), strict=True)}
    for res in RESOLUTIONS:
        got = await subject.aggregate(BucketRange(every, T0 - HOUR, T0 + DAY), res)
        assert as_dict(got, hosts) == brute_force_buckets(keyed, res.ms), res.name
    async with subject.engines.reader.connect() as conn:
        stamps = sorted({t for _, t in model})[::3]
        _, at_ts, at = await subject.store.read_at(conn, every, stamps)
        wanted = [(s, t) for s, t in expected if t in set(stamps)]
        assert at_ts.tolist() == [t for _, t in wanted]
        assert bits(at) == bits(np.array([model[(hosts[s], t)] for s, t in wanted]))
        has = await subject.store.has_nan(conn, every, T0 - DAY, T0 + DAY)
    stale_bits = bits(np.array([STALE]))[0]
    nan = any(math.isnan(v) and bits(np.array([v]))[0] != stale_bits for v in model.values())
    assert has == nan


def test_retention_trims_a_block_straddling_the_cut_off(database_url: str) -> None:
    """Whole blocks before the cut-off go, a straddling one is re-encoded without its expired
    samples: nothing before the cut-off is read back, whether in blocks or the head."""

    async def go() -> None:
        async with opened(database_url, _open) as subject:
            store = blocks_of(subject)
            points = [("a", T0 + m * 600_000, float(m)) for m in range(48)]  # 8 h, 10 min apart
            _, ids = await subject.write("trim", points)
            await store.compact(T0 + DAY)
            cut = T0 + 3 * HOUR + 1  # inside the second span
            plan = RetentionPlan(
                raw_cutoffs={"*": cut},
                rollup_cutoffs={res.name: {"*": 0} for res in RESOLUTIONS},
                overridden=frozenset(),
            )
            async with subject.engines.writer.begin() as conn:
                dropped = await store.drop_before(conn, plan)
            assert dropped.rows == 19  # 0:00 ... 3:00
            _, ts, values = await subject.read([ids["a"]], 0, T0 + DAY)
            assert ts.tolist() == [T0 + m * 600_000 for m in range(19, 48)]
            assert values.tolist() == [float(m) for m in range(19, 48)]
            blocks = await rows_of(subject, "SELECT span_start, first_ts, count FROM blocks")
            assert sorted(blocks) == [
                (T0 + 2 * HOUR, T0 + 19 * 600_000, 5),
                (T0 + 4 * HOUR, T0 + 4 * HOUR, 12),
                (T0 + 6 * HOUR, T0 + 6 * HOUR, 12),
            ]

    run(go())


def test_compaction_leaves_open_spans_in_the_head(database_url: str) -> None:
    async def go() -> None:
        async with opened(database_url, _open) as subject:
            store = blocks_of(subject)
            points = [("a", T0 + m * 60_000, float(m)) for m in range(5 * 60)]  # 5 h
            await subject.write("open", points)
            done = await store.compact(T0 + 4 * HOUR + 30 * 60_000)  # spans 0-2 h, 2-4 h closed
            assert (done.rows, done.blocks) == (240, 2)
            assert (await rows_of(subject, "SELECT count(*) FROM samples"))[0][0] == 60
            again = await store.compact(T0 + 4 * HOUR + 30 * 60_000)
            assert (again.rows, again.blocks) == (0, 0)

    run(go())


def test_history_into_an_hour_that_blocks_back_goes_raw(database_url: str) -> None:
    """A write older than the raw floor into an hour whose raw samples are in blocks (retention
    has not dropped them yet) takes the raw path, as it does when they are head rows: the rollup
    job rolls the hour up from raw as a whole."""
    now = [T0 + 9 * DAY]

    async def go() -> None:
        settings = test_settings(database_url)
        engines = make_engines(settings)
        defaults = retention_defaults(settings)
        store = BlockSampleStore(
            settings, engines, lambda: now[0], defaults, to_ms(settings.rollup_grace)
        )
        subject = Subject(settings, engines, store)
        try:
            async with engines.writer.begin() as conn:
                await conn.exec_driver_sql(
                    "INSERT INTO retention_overrides (metric_name, raw_ms, r1m_ms, r5m_ms,"
                    f" r1h_ms, updated_ms) VALUES ('backed', {2 * DAY}, {5 * DAY}, {5 * DAY},"
                    f" {5 * DAY}, 0)"
                )
            at = T0 + 8 * DAY + HOUR
            result, ids = await subject.write("backed", [("a", at, 1.0)])
            assert (result.raw, result.rollups_only) == (1, 0)
            await store.compact(T0 + 9 * DAY)
            assert (await rows_of(subject, "SELECT count(*) FROM samples"))[0][0] == 0
            now[0] = T0 + 11 * DAY  # the hour is older than the raw floor now
            await subject.write("backed", [("a", at + 1, 2.0)])
            # Placed with the raw samples, not merged into the rollups.
            _, ts, _ = await subject.read([ids["a"]], 0, T0 + 12 * DAY)
            assert ts.tolist() == [at, at + 1]
            assert await rows_of(subject, "SELECT count(*) FROM rollup_1m") == [(0,)]
        finally:
            await store.close()
            await engines.dispose()

    run(go())


# -- bulk writes straight into blocks (samples.direct_blocks) ----------------------------------

NOW = T0 + 10 * DAY
CUT = NOW - SPAN_MS  # now - ROLLUP_GRACE (30 s) lies in the span [NOW - 2 h, NOW)
BASE = NOW - DAY
PATTERN_VALUES = np.array(
    [
        STALE_BITS,
        0x7FF8000000000001,  # a quiet NaN with a payload
        0xFFF8000000000123,  # a negative NaN with a payload
        0x7FF0000000000000,  # +Inf
        0x8000000000000000,  # -0.0
        0x0000000000000001,  # the smallest subnormal
        0x3FF199999999999A,  # 1.1
    ],
    dtype=np.uint64,
).view(np.float64)


def _open_at_now(settings: Settings, engines: Engines, clock: Callable[[], int]) -> SampleStore:
    return _open(settings, engines, lambda: NOW)


async def write_known(
    subject: Subject, metric: str, points: list[tuple[str, int, float]], ids: dict[str, int]
) -> Any:
    """A write of series already resolved (every id known): the road a bulk import of known
    series takes."""
    hosts = sorted(ids)
    keys = [series_key(metric, canonical_labels({"host": h})) for h in hosts]
    batch = SampleBatch(
        keys=keys,
        series_index=np.array([hosts.index(h) for h, _, _ in points], dtype=np.int64),
        ts=np.array([ts for _, ts, _ in points], dtype=np.int64),
        values=np.array([v for _, _, v in points], dtype=np.float64),
    )
    known = np.array([ids[h] for h in hosts], dtype=np.int64)

    async def resolve(conn: Any, ids: np.ndarray, missing: list[int]) -> dict[int, Any]:
        raise AssertionError("every series is known")

    return await subject.store.append(batch, known, [], resolve)


async def count(subject: Subject, sql: str) -> int:
    return int((await rows_of(subject, sql))[0][0])


async def check_model(
    subject: Subject, model: dict[tuple[str, int], float], ids: dict[str, int]
) -> None:
    hosts = {sid: h for h, sid in ids.items()}
    sids, ts, values = await subject.read(sorted(ids.values()), 0, NOW + DAY)
    expected = truth_of(model, ids)
    assert list(zip(sids.tolist(), ts.tolist(), strict=True)) == expected
    assert bits(values) == bits(np.array([model[(hosts[s], t)] for s, t in expected]))


def test_a_bulk_write_of_closed_spans_goes_into_blocks(database_url: str) -> None:
    """Rows of closed spans land in blocks, no head row left for them, read back bit for bit
    (NaN payloads, the stale marker); rows of the open span go to the head; marks as ever."""

    async def go() -> None:
        async with opened(database_url, _open_at_now) as subject:
            model: dict[tuple[str, int], float] = {}
            points = []
            for h in ("a", "b"):
                for i, ts in enumerate(range(BASE, NOW - HOUR, 60_000)):
                    v = float(PATTERN_VALUES[i % 7]) if i % 5 == 0 else i / 4
                    points.append((h, ts, v))
                    model[(h, ts)] = v
            result, ids = await subject.write("direct", points)
            assert (result.raw, result.overwritten) == (len(points), 0)
            open_rows = sum(1 for _, ts, _ in points if ts >= CUT)
            assert await count(subject, "SELECT count(*) FROM samples") == open_rows
            assert await count(subject, f"SELECT count(*) FROM samples WHERE ts < {CUT}") == 0
            assert await count(subject, "SELECT count(*) FROM blocks") == 2 * 11
            assert await count(subject, "SELECT count(*) FROM rollup_dirty_1m") == len(points)
            await check_model(subject, model, ids)
            # A bulk write of the open span only: every row to the head.
            fresh = [(h, NOW - HOUR + i * 1000, 1.0) for i in range(1500) for h in ("a", "b")]
            fresh_result, _ = await subject.write("direct", fresh)
            assert fresh_result.raw == len(fresh)
            model.update({(h, ts): v for h, ts, v in fresh})
            open_rows = len({(h, ts) for h, ts, _ in points + fresh if ts >= CUT})
            assert await count(subject, "SELECT count(*) FROM samples") == open_rows
            await check_model(subject, model, ids)
            # The same samples again, by known series: nothing overwritten, nothing moves.
            again = await write_known(subject, "direct", points, ids)
            assert (again.raw, again.overwritten) == (len(points), 0)
            assert await count(subject, "SELECT count(*) FROM samples") == open_rows
            await check_model(subject, model, ids)

    run(go())


def test_a_bulk_write_over_a_block_and_head_rows_of_its_span(database_url: str) -> None:
    """A bulk write into a span holding a block and late head rows: the head rows are folded
    in and deleted, the write wins over both, overwrites counted against the head row where
    there is one, else the block; the same bits again are not one. Rollups of the marked
    buckets equal the brute force."""

    async def go() -> None:
        async with opened(database_url, _open_at_now) as subject:
            model: dict[tuple[str, int], float] = {}
            first = [("a", BASE + i * 20_000, float(i)) for i in range(3 * 360)]  # 6 h
            result, ids = await subject.write("over", first)
            assert result.overwritten == 0
            model.update({(h, ts): v for h, ts, v in first})
            assert await count(subject, "SELECT count(*) FROM samples") == 0
            span = BASE + SPAN_MS
            late = [("a", span + k * 20_000, -1.0) for k in range(5)]
            late += [("a", span + k * 20_000 + 10_000, -2.0) for k in range(5)]
            late_result = await write_known(subject, "over", late, ids)  # small: to the head
            assert late_result.overwritten == 5
            model.update({(h, ts): v for h, ts, v in late})
            assert await count(subject, "SELECT count(*) FROM samples") == 10
            bulk = []
            for ts in range(span, span + SPAN_MS, 5_000):
                if (ts - BASE) % 20_000 == 0:
                    v = float((ts - BASE) // 20_000)  # the block's value again
                elif ts % 60_000 == 15_000:
                    v = float(PATTERN_VALUES[1])  # a NaN payload
                elif ts % 60_000 == 35_000:
                    v = float(PATTERN_VALUES[0])  # the stale marker
                else:
                    v = 0.5
                bulk.append(("a", ts, v))
            bulk.append(("a", span + 5_000, 7.0))  # twice in the batch: the last wins
            done = await write_known(subject, "over", bulk, ids)
            # 5 head rows of -1.0 and 5 of -2.0 replaced; the block's values again are not.
            assert done.overwritten == 10
            model.update({(h, ts): v for h, ts, v in bulk})
            assert await count(subject, "SELECT count(*) FROM samples") == 0
            assert await count(subject, "SELECT count(*) FROM blocks") == 3
            await check_model(subject, model, ids)
            hosts = {sid: h for h, sid in ids.items()}
            for res in RESOLUTIONS:
                marks = MarkedBuckets(f"rollup_dirty_{res.name}")
                async with subject.engines.writer.begin() as conn:
                    await subject.store.store_aggregates(conn, marks, res)
                got = await rows_of(
                    subject,
                    "SELECT series_id, bucket, count, sum, min, max, sumsq, last, last_ts"
                    f" FROM rollup_{res.name}",
                )
                stored = {
                    (hosts[int(r[0])], int(r[1])): (int(r[2]), *map(float, r[3:8]), int(r[8]))
                    for r in got
                }
                assert stored == brute_force_buckets(model, res.ms), res.name

    run(go())


def test_a_bulk_write_with_history_and_refused_ones(database_url: str) -> None:
    """A bulk batch mixing closed spans, the open span, history behind the raw floor and
    samples beyond retention is placed as any write; a batch refused (history into a bucket
    holding data, a cardinality limit) writes nothing, into blocks or the head."""

    async def go() -> None:
        async with opened(database_url, _open_at_now) as subject:
            async with subject.engines.writer.begin() as conn:
                await conn.exec_driver_sql(
                    "INSERT INTO retention_overrides (metric_name, raw_ms, r1m_ms, r5m_ms,"
                    f" r1h_ms, updated_ms) VALUES ('mixed', {2 * DAY}, {5 * DAY}, {5 * DAY},"
                    f" {5 * DAY}, 0)"
                )
            raw = [("a", T0 + 9 * DAY + i * 30_000, float(i)) for i in range(1200)]  # 10 h
            fresh = [("a", NOW - 30 * 60_000 + i * 1000, 1.0) for i in range(10)]
            old = [("a", T0 + 6 * DAY + i * 60_000, 2.0) for i in range(100)]
            beyond = [("a", T0 + DAY + i, 3.0) for i in range(5)]
            result, ids = await subject.write("mixed", raw + old + fresh + beyond)
            assert (result.raw, result.rollups_only, result.beyond_retention) == (1210, 100, 5)
            assert await count(subject, "SELECT count(*) FROM samples") == 10
            assert await count(subject, "SELECT count(*) FROM blocks") == 5
            assert await count(subject, "SELECT count(*) FROM rollup_1m") == 100
            model = {(h, ts): v for h, ts, v in raw + fresh}
            await check_model(subject, model, ids)

            snapshot = "SELECT series_id, span_start, count, payload FROM blocks ORDER BY 1, 2"
            blocks_before = await rows_of(subject, snapshot)
            samples_before = await rows_of(subject, "SELECT * FROM samples ORDER BY 1, 2")
            more = [("a", T0 + 9 * DAY + i * 30_000 + 1, 5.0) for i in range(1200)]
            with pytest.raises(HistoryConflict):
                await write_known(subject, "mixed", [*more, ("a", T0 + 6 * DAY + 1, 4.0)], ids)
            assert await rows_of(subject, snapshot) == blocks_before
            assert await rows_of(subject, "SELECT * FROM samples ORDER BY 1, 2") == samples_before
            await check_model(subject, model, ids)

            subject.settings = subject.settings.model_copy(update={"max_series_per_metric": 1})
            with pytest.raises(CardinalityExceeded):
                await subject.write("mixed", [(h, ts, v) for _, ts, v in more for h in "ab"])
            assert await rows_of(subject, snapshot) == blocks_before
            await check_model(subject, model, ids)

    run(go())


def test_a_bulk_write_failing_after_its_blocks_writes_nothing(database_url: str) -> None:
    """The blocks are written in the write's transaction: a failure after them (here the
    database refusing one of its open-span head rows, by a trigger) leaves the blocks, the head
    rows they folded in and the marks as they were."""
    postgres = database_url.startswith("postgresql")
    create = (
        [
            "CREATE FUNCTION refuse_666() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF NEW.value = 666 THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$",
            "CREATE TRIGGER refuse_666 BEFORE INSERT ON samples FOR EACH ROW"
            " EXECUTE FUNCTION refuse_666()",
        ]
        if postgres
        else [
            "CREATE TRIGGER refuse_666 BEFORE INSERT ON samples WHEN NEW.value = 666"
            " BEGIN SELECT RAISE(ABORT, 'refused'); END"
        ]
    )
    drop = (
        ["DROP TRIGGER IF EXISTS refuse_666 ON samples", "DROP FUNCTION IF EXISTS refuse_666()"]
        if postgres
        else ["DROP TRIGGER IF EXISTS refuse_666"]
    )

    async def go() -> None:
        async with opened(database_url, _open_at_now) as subject:
            first = [("a", BASE + i * 20_000, float(i)) for i in range(1080)]  # 6 h
            _, ids = await subject.write("failing", first)
            span = BASE + SPAN_MS
            await write_known(subject, "failing", [("a", span + 1, -1.0)], ids)  # a head row
            tables = {
                "blocks": "SELECT series_id, span_start, count, payload FROM blocks ORDER BY 1, 2",
                "samples": "SELECT * FROM samples ORDER BY 1, 2",
                "marks": "SELECT * FROM rollup_dirty_1m ORDER BY 1, 2",
            }
            before = {name: await rows_of(subject, sql) for name, sql in tables.items()}
            async with subject.engines.writer.begin() as conn:
                for statement in create:
                    await conn.exec_driver_sql(statement)
            try:
                bulk = [("a", span + i * 5_000 + 2, 2.0) for i in range(1440)]
                bulk += [("a", NOW - 10 * 60_000, 666.0)]  # the open span: to the head
                with pytest.raises(Exception, match="refused"):
                    await write_known(subject, "failing", bulk, ids)
            finally:
                async with subject.engines.writer.begin() as conn:
                    for statement in drop:
                        await conn.exec_driver_sql(statement)
            after = {name: await rows_of(subject, sql) for name, sql in tables.items()}
            assert after == before
            model = {(h, ts): v for h, ts, v in first}
            model[("a", span + 1)] = -1.0
            await check_model(subject, model, ids)

    run(go())
