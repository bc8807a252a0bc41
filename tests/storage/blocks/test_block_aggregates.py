"""Bucket aggregates: equal to brute force, NaN left out, and mergeable: the merge of the
aggregates of disjoint sample sets equals the aggregate of their union (exactly for count, min,
max, last, last_ts; within rounding for sum and m2)."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.storage.blocks.aggregates import Buckets, aggregate, concat, empty, merge, replace_range

MINUTE, HOUR = 60_000, 3_600_000
WIDTHS = [MINUTE, 5 * MINUTE, HOUR]
value = st.one_of(
    st.integers(-400, 400).map(lambda k: k / 4),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.just(math.nan),
)
samples = st.dictionaries(
    st.tuples(st.integers(1, 3), st.integers(-3 * HOUR, 3 * HOUR).map(lambda t: t - t % 5000)),
    value,
    max_size=120,
)


def rows(data: dict[tuple[int, int], float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    keys = sorted(data)
    return (
        np.array([s for s, _ in keys], dtype=np.int64),
        np.array([t for _, t in keys], dtype=np.int64),
        np.array([data[k] for k in keys], dtype=np.float64),
    )


def brute_force(data: dict[tuple[int, int], float], width: int) -> dict[tuple[int, int], tuple]:
    groups: dict[tuple[int, int], list[tuple[int, float]]] = defaultdict(list)
    for (series, ts), v in sorted(data.items()):
        if not math.isnan(v):
            groups[(series, ts - ts % width)].append((ts, v))
    out = {}
    for key, members in groups.items():
        values = [v for _, v in members]
        mean = math.fsum(values) / len(values)
        m2 = math.fsum((v - mean) ** 2 for v in values)
        out[key] = (len(values), math.fsum(values), min(values), max(values), m2, *members[-1])
    return out


def close(got: float, want: float, count: int, magnitudes: float) -> bool:
    """Within the error bound of adding `count` terms of these total magnitudes in another
    order, count x 2**-52 x magnitudes, with a margin of about 2."""
    return abs(got - want) <= 5e-16 * count * magnitudes


def check(got: Buckets, want: dict[tuple[int, int], tuple]) -> None:
    assert list(zip(got.series.tolist(), got.bucket.tolist(), strict=True)) == sorted(want)
    for i, key in enumerate(sorted(want)):
        count, total, low, high, m2, last_ts, last = want[key]
        assert (got.count[i], got.min[i], got.max[i]) == (count, low, high)
        assert (got.last_ts[i], got.last[i]) == (last_ts, last)
        top = max(abs(low), abs(high))
        assert close(got.sum[i], total, count, count * top)
        assert close(got.m2[i], m2, count, 4 * count * top * top)


@settings(max_examples=150)
@given(samples, st.sampled_from(WIDTHS))
def test_aggregate_equals_brute_force(data: dict[tuple[int, int], float], width: int) -> None:
    check(aggregate(*rows(data), width), brute_force(data, width))


@settings(max_examples=150)
@given(samples, st.sampled_from(WIDTHS), st.data())
def test_merge_of_aggregates_equals_aggregate_of_union(
    data: dict[tuple[int, int], float], width: int, draw: st.DataObject
) -> None:
    parts: list[dict[tuple[int, int], float]] = [{} for _ in range(draw.draw(st.integers(1, 4)))]
    for key, v in data.items():
        parts[draw.draw(st.integers(0, len(parts) - 1))][key] = v
    merged = merge([aggregate(*rows(part), width) for part in parts])
    whole = aggregate(*rows(data), width)
    check(merged, brute_force(data, width))
    assert merged.count.tolist() == whole.count.tolist()
    assert np.allclose(merged.sum, whole.sum, rtol=1e-9, atol=1e-6)


def test_nan_only_buckets_have_no_row_and_nan_is_left_out() -> None:
    got = aggregate(
        np.array([1, 1, 1, 1]),
        np.array([0, 1, MINUTE, MINUTE + 1]),
        np.array([math.nan, math.nan, 2.0, math.nan]),
        MINUTE,
    )
    assert got.bucket.tolist() == [MINUTE]
    assert (got.count[0], got.sum[0], got.last[0], got.last_ts[0]) == (1, 2.0, 2.0, MINUTE)


def test_infinities() -> None:
    got = aggregate(
        np.zeros(5, dtype=np.int64),
        np.array([0, 1, MINUTE, MINUTE + 1, 2 * MINUTE]),
        np.array([1.0, math.inf, math.inf, -math.inf, 1e301]),
        MINUTE,
    )
    assert got.sum[0] == math.inf and math.isnan(got.m2[0])
    assert math.isnan(got.sum[1]) and math.isnan(got.m2[1])
    assert got.sum[2] == math.inf  # beyond 1e300 a value adds infinity, as in the row tables
    assert got.min.tolist() == [1.0, -math.inf, 1e301]


def test_m2_keeps_a_small_spread_around_a_large_mean() -> None:
    """Three values 1e9, 1e9 + 1, 1e9 + 2: the sum of squares gives a standard deviation of 0
    (docs/rollups-and-retention.md); the second moment gives 0.816, also after a merge."""
    series, ts = np.zeros(3, dtype=np.int64), np.array([0, 1, 2])
    values = np.array([1e9, 1e9 + 1, 1e9 + 2])
    whole = aggregate(series, ts, values, MINUTE)
    assert whole.stddev()[0] == pytest.approx(math.sqrt(2 / 3), rel=1e-12)
    naive = np.sqrt(np.maximum(whole.sumsq() / 3 - (whole.sum / 3) ** 2, 0.0))
    assert naive[0] != pytest.approx(math.sqrt(2 / 3), rel=1e-3)
    parts = merge(
        [
            aggregate(series[:1], ts[:1], values[:1], MINUTE),
            aggregate(series[1:], ts[1:], values[1:], MINUTE),
        ]
    )
    assert parts.stddev()[0] == pytest.approx(math.sqrt(2 / 3), rel=1e-12)


def test_sumsq_and_stddev() -> None:
    got = aggregate(np.zeros(4, dtype=np.int64), np.arange(4), np.array([1.0, 2, 3, 4]), MINUTE)
    assert got.sumsq()[0] == pytest.approx(30.0)
    assert got.stddev()[0] == pytest.approx(math.sqrt(1.25))


def test_merge_of_nothing_and_concat() -> None:
    assert len(merge([])) == 0
    assert len(merge([empty(), empty()])) == 0
    one = aggregate(np.zeros(2, dtype=np.int64), np.array([0, MINUTE]), np.ones(2), MINUTE)
    assert len(concat([one, one])) == 4
    assert len(merge([one, empty()])) == 2


def test_equal_last_ts_takes_the_later_part() -> None:
    a = aggregate(np.zeros(1, dtype=np.int64), np.array([5]), np.array([1.0]), MINUTE)
    b = aggregate(np.zeros(1, dtype=np.int64), np.array([5]), np.array([2.0]), MINUTE)
    assert merge([a, b]).last.tolist() == [2.0]
    assert merge([b, a]).last.tolist() == [1.0]


def test_replace_range_swaps_the_buckets_of_a_span() -> None:
    ts = np.arange(0, 4 * HOUR, 10 * MINUTE)
    day = aggregate(np.zeros(ts.size, dtype=np.int64), ts, np.ones(ts.size), HOUR)
    span = aggregate(
        np.zeros(2, dtype=np.int64), np.array([HOUR, 2 * HOUR]), np.array([5.0, 7.0]), HOUR
    )
    got = replace_range(day, span, HOUR, 3 * HOUR)
    assert got.bucket.tolist() == [0, HOUR, 2 * HOUR, 3 * HOUR]
    assert got.count.tolist() == [6, 1, 1, 6]
    assert got.sum.tolist() == [6.0, 5.0, 7.0, 6.0]
    gone = replace_range(day, empty(), HOUR, 3 * HOUR)  # the span has no samples any more
    assert gone.bucket.tolist() == [0, 3 * HOUR]
    with pytest.raises(ValueError, match="outside"):
        replace_range(day, span, 2 * HOUR, 3 * HOUR)
