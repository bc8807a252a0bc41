"""The block layout's own cases beyond the contract (tests/storage/test_sample_store_contract.py
runs it too): compaction of closed spans, late rows into compacted spans and compacting again,
against a brute-force model on both backends; retention of straddling blocks; bounded reads."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from conftest import test_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rollup_oracle import brute_force_buckets
from test_sample_store_contract import DAY, HOUR, T0, Subject, as_dict, bits, opened, run

from app.config import Settings
from app.services.retention import RetentionPlan, retention_defaults
from app.services.rollup import RESOLUTIONS
from app.storage.engine import Engines, make_engines
from app.storage.samples.block_table import SPAN_MS
from app.storage.samples.blocks_store import BlockSampleStore
from app.storage.samples.protocol import BucketRange, SampleStore
from app.timeutil import to_ms

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
def test_compaction_and_late_writes_equal_the_model(
    database_url: str, steps: list[tuple[list[Any], int | None]]
) -> None:
    """Writes (late ones into compacted spans included), each maybe followed by a compaction
    up to some span: every read equals the model, bit for bit, and so do bucket aggregates;
    what a compaction covered has left the head."""

    metric = f"model_{next(_metrics)}"

    async def go() -> None:
        async with opened(database_url, _open) as subject:
            store = blocks_of(subject)
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
