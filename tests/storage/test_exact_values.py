"""Contract: every float64 bit pattern written through `Store.append` reads back through
`Store.select_raw` with the same bits, on every write path of both backends; rollups leave NaN
out and treat infinities as numbers (app.storage.exact_values)."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest
from conftest import test_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.model import SampleBatch
from app.services.rollup import BY_NAME, RESOLUTIONS
from app.storage.store import Store
from app.validation import series_key

HOUR = 3_600_000
STALE = 0x7FF0000000000002  # the Prometheus stale marker: a signalling NaN with a payload
QNAN = 0x7FF8000000000001  # an ordinary NaN
NAMED_BITS = [
    STALE,
    QNAN,
    0xFFF8000000000000,  # a negative quiet NaN
    0x7FFFFFFFFFFFFFFF,  # the largest NaN payload
    0x7FF0000000000000,  # +Inf
    0xFFF0000000000000,  # -Inf
    0x8000000000000000,  # -0.0
    0x0000000000000000,  # 0.0
    0x0000000000000001,  # the smallest subnormal
    0x7FEFFFFFFFFFFFFF,  # the largest finite double
    0x3FF0000000000000,  # 1.0
]
bit_patterns = st.one_of(st.sampled_from(NAMED_BITS), st.integers(0, 2**64 - 1))
_metrics = itertools.count()


def as_floats(bits: list[int]) -> np.ndarray:
    return np.array(bits, dtype=np.uint64).view(np.float64)


def batch(metric: str, rows: list[tuple[int, int, float]]) -> SampleBatch:
    """Rows of (host index, ts, value) as one batch of the hosts h0, h1."""
    keys = [series_key(metric, f'{{"host":"h{i}"}}'.encode()) for i in range(2)]
    return SampleBatch(
        keys=keys,
        series_index=np.array([r[0] for r in rows], dtype=np.int64),
        ts=np.array([r[1] for r in rows], dtype=np.int64),
        values=np.array([r[2] for r in rows], dtype=np.float64),
    )


def with_store(
    database_url: str, work: Callable[[Store], Awaitable[Any]], layout: str = "blocks"
) -> Any:
    async def go() -> Any:
        store = Store.open(test_settings(database_url, storage_layout=layout))
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(go())


def base_time() -> int:
    now = int(time.time() * 1000)
    return now - now % HOUR - 3 * HOUR  # closed hours, well within raw retention


async def read_bits(store: Store, metric: str, start: int, end: int) -> dict[tuple[str, int], int]:
    series, truncated = await store.select_raw(metric, [], start, end, 1_000_000)
    assert not truncated
    out = {}
    for data in series:
        for t, b in zip(data.ts.tolist(), data.values.view(np.uint64).tolist(), strict=True):
            out[(data.labels["host"], t)] = b
    return out


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    first=st.lists(st.tuples(st.integers(0, 1), st.integers(0, 40), bit_patterns), max_size=30),
    second=st.lists(st.tuples(st.integers(0, 1), st.integers(0, 40), bit_patterns), max_size=30),
    seed=st.integers(0, 2**32 - 1),
)
@pytest.mark.parametrize("layout", ["blocks", "rows"])
def test_every_bit_pattern_reads_back_as_written(
    database_url: str,
    layout: str,
    first: list[tuple[int, int, int]],
    second: list[tuple[int, int, int]],
    seed: int,
) -> None:
    """Writes of new series (the general path), small writes of known series (SQLite's one-call
    transaction, PostgreSQL's kept connection), bulk writes of new rows (COPY on PostgreSQL) and
    bulk overwrites (the upsert), each ending with last write wins; with the block layout the
    first two writes are compacted into blocks before the bulk ones land over them."""
    metric, t0 = f"exact_{next(_metrics)}", base_time()
    rng = np.random.default_rng(seed)
    bulk_ts = 100 + rng.choice(3400, size=1200, replace=False)
    writes = [
        [(h, t0 + off * 1000, b) for h, off, b in first],
        [(h, t0 + off * 1000, b) for h, off, b in second],
        [
            (i % 2, t0 + int(off) * 1000, int(b))
            for i, (off, b) in enumerate(
                zip(bulk_ts, rng.integers(0, 2**64, size=1200, dtype=np.uint64), strict=True)
            )
        ],
        [
            (i % 2, t0 + int(off) * 1000, int(b))
            for i, (off, b) in enumerate(
                zip(bulk_ts[::-1], rng.integers(0, 2**64, size=1200, dtype=np.uint64), strict=True)
            )
        ],
    ]
    truth: dict[tuple[str, int], int] = {}

    async def work(store: Store) -> dict[tuple[str, int], int]:
        for i, rows in enumerate(writes):
            if i == 2 and layout == "blocks":
                await store.compact(int(time.time() * 1000))
            if not rows:
                continue
            values = as_floats([b for _, _, b in rows])
            await store.append(
                batch(metric, [(h, t, float(v)) for (h, t, _), v in zip(rows, values, strict=True)])
            )
            for h, t, b in rows:
                truth[(f"h{h}", t)] = b
        return await read_bits(store, metric, t0, t0 + HOUR)

    assert with_store(database_url, work, layout) == truth


# -- rollups ------------------------------------------------------------------------------------

FAMILY = [STALE, QNAN, 0x7FF0000000000000, 0xFFF0000000000000, 0x8000000000000000]
rollup_values = st.one_of(
    st.sampled_from(FAMILY).map(lambda b: float(as_floats([b])[0])),
    st.integers(-40, 40).map(lambda k: k / 4),  # exact sums in any order
)


def expected_buckets(
    truth: dict[tuple[str, int], float], width: int
) -> dict[tuple[str, int], tuple[int, float, float, float, float, float]]:
    grouped: dict[tuple[str, int], list[tuple[int, float]]] = {}
    for (host, ts), value in sorted(truth.items(), key=lambda item: item[0][1]):
        if not math.isnan(value):
            grouped.setdefault((host, ts - ts % width), []).append((ts, value))
    out = {}
    for key, points in grouped.items():
        values = [v for _, v in points]
        out[key] = (
            len(values),
            math.fsum(values) if all(map(math.isfinite, values)) else sum(values),
            min(values),
            max(values),
            sum(v * v for v in values),
            points[-1][1],
        )
    return out


async def served_buckets(
    store: Store, metric: str, window: str, start: int, end: int
) -> dict[tuple[str, int], tuple[int, float, float, float, float, float]]:
    series, _ = await store.select_rollup(metric, [], BY_NAME[window], start, end)
    out = {}
    for s in series:
        columns = zip(
            s.bucket.tolist(),
            s.count.tolist(),
            s.sum.tolist(),
            s.min.tolist(),
            s.max.tolist(),
            s.sumsq.tolist(),
            s.last.tolist(),
            strict=True,
        )
        for bucket, *agg in columns:
            out[(s.labels["host"], bucket)] = tuple(agg)
    return out


def same(a: dict[Any, tuple[Any, ...]], b: dict[Any, tuple[Any, ...]]) -> bool:
    """Equal, NaN equal to NaN (-0.0 and 0.0 compare equal: rollups may keep either)."""
    if a.keys() != b.keys():
        return False
    return all(
        x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))
        for key in a
        for x, y in zip(a[key], b[key], strict=True)
    )


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    writes=st.lists(
        st.lists(
            st.tuples(
                st.integers(0, 1), st.integers(0, 11).map(lambda s: s * 20_000), rollup_values
            ),
            min_size=1,
            max_size=12,
        ),
        min_size=1,
        max_size=3,
    )
)
def test_rollups_leave_nan_out(
    database_url: str, writes: list[list[tuple[int, int, float]]]
) -> None:
    """Before and after the job materializes them, buckets aggregate the values that are not
    NaN (last: the latest such value); a bucket of NaN only has no row, also when its values
    were overwritten with NaN after it was materialized."""
    metric, t0 = f"nan_{next(_metrics)}", base_time()
    truth: dict[tuple[str, int], float] = {}

    async def check(store: Store) -> None:
        for res in RESOLUTIONS:
            expected = expected_buckets(truth, res.ms)
            served = await served_buckets(store, metric, res.name, t0, t0 + HOUR - 1)
            assert same(served, expected), (res.name, served, expected)

    async def work(store: Store) -> None:
        for rows in writes:
            await store.append(batch(metric, [(h, t0 + off, v) for h, off, v in rows]))
            for h, off, v in rows:
                truth[(f"h{h}", t0 + off)] = v
            await check(store)  # from raw
            for res in RESOLUTIONS:
                await store.materialize(res, t0 + HOUR)
            await check(store)  # stored

    with_store(database_url, work)


def test_sums_stay_in_range(database_url: str) -> None:
    """Magnitudes whose sums or squares leave the range of a double count as infinite (and tiny
    squares as 0) on both backends, instead of failing the job on PostgreSQL."""
    metric, t0 = f"huge_{next(_metrics)}", base_time()
    cases = {  # host index -> values in one minute, and the (sum, sumsq) expected
        0: ([1e305, 1e305], (math.inf, math.inf)),
        1: ([1e200, 1e200], (2e200, math.inf)),
        2: ([1e-200, 3e-200], (1e-200 + 3e-200, 0.0)),
        3: ([-1e305, 1.0], (-math.inf, math.inf)),
    }
    rows = [(h, t0 + i * 1000, v) for h, (values, _) in cases.items() for i, v in enumerate(values)]

    async def work(store: Store) -> None:
        keys = [series_key(metric, f'{{"host":"h{i}"}}'.encode()) for i in range(len(cases))]
        await store.append(
            SampleBatch(
                keys,
                np.array([r[0] for r in rows], dtype=np.int64),
                np.array([r[1] for r in rows], dtype=np.int64),
                np.array([r[2] for r in rows], dtype=np.float64),
            )
        )
        for stage in ("raw", "stored"):
            if stage == "stored":
                assert await store.materialize(BY_NAME["1m"], t0 + HOUR) == len(cases)
            served = await served_buckets(store, metric, "1m", t0, t0 + 59_999)
            got = {key: agg[1:5:3] for key, agg in served.items()}
            assert got == {(f"h{h}", t0): sums for h, (_, sums) in cases.items()}, stage

    with_store(database_url, work)
