"""Rollup blocks (app.storage.blocks.rollup_codec): every column of the row tables back bit for
bit, whatever the float64 patterns; bad input refused."""

from __future__ import annotations

import numpy as np
import pytest
from block_strategies import value_arrays
from hypothesis import given, settings
from hypothesis import strategies as st

from app.services.rollup import aggregate
from app.storage.blocks.rollup_codec import DAY_MS, VERSION, DayBuckets, decode_day, encode_day

MINUTE = 60_000
FLOATS = ("sum", "min", "max", "sumsq", "last")


def same(got: DayBuckets, want: DayBuckets) -> None:
    for name in ("bucket", "count", "last_ts"):
        assert getattr(got, name).tolist() == getattr(want, name).tolist(), name
    for name in FLOATS:
        got_bits, want_bits = getattr(got, name).view(np.int64), getattr(want, name).view(np.int64)
        assert got_bits.tolist() == want_bits.tolist(), name


@settings(max_examples=150)
@given(st.data(), st.sampled_from([MINUTE, 5 * MINUTE, 3_600_000]))
def test_round_trip_keeps_every_bit_pattern(data: st.DataObject, width: int) -> None:
    n = data.draw(st.integers(0, 300))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32)))
    gaps = rng.integers(1, data.draw(st.sampled_from([2, 5, 10**6])), size=n)
    bucket = (np.cumsum(gaps) + data.draw(st.integers(-(10**6), 10**6))) * width
    columns = [data.draw(value_arrays(n, n)) for _ in FLOATS]
    count = rng.integers(1, data.draw(st.sampled_from([2, 10**6, 2**62])), size=n)
    offset = rng.integers(0, data.draw(st.sampled_from([1, width])), size=n)
    total, low, high, sumsq, last = columns
    day = DayBuckets(bucket, count, total, low, high, sumsq, last, bucket + offset)
    same(decode_day(encode_day(day, width)), day)


@settings(max_examples=100)
@given(st.data(), st.sampled_from([MINUTE, 5 * MINUTE, 3_600_000]))
def test_round_trip_of_aggregated_values(data: st.DataObject, width: int) -> None:
    """Buckets the rollup job computes from values of every flavour (decimals with odd patterns
    among them, where the sum of squares is modelled from the sum; arbitrary bits)."""
    values = data.draw(value_arrays(1, 2000))
    ts = np.arange(values.size, dtype=np.int64) * data.draw(st.sampled_from([1, 10_000, 61_000]))
    b = aggregate(np.zeros(ts.size, np.int64), ts, values, width)
    day = DayBuckets(b.bucket, b.count, b.sum, b.min, b.max, b.sumsq, b.last, b.last_ts)
    same(decode_day(encode_day(day, width)), day)


def test_a_workload_day_is_small() -> None:
    """The benchmark's values (10 s, three decimals): a 1m day in under 11 bytes a bucket (the
    decimal model; float columns take 12.2)."""
    rng = np.random.default_rng(3)
    ts = np.arange(8640, dtype=np.int64) * 10_000 + 20_000 * DAY_MS
    values = np.round(50 + 20 * np.sin(np.arange(ts.size) / 1375) + rng.normal(0, 3, ts.size), 3)
    values[17] = np.nan  # left out of its bucket
    b = aggregate(np.zeros(ts.size, np.int64), ts, values, MINUTE)
    day = DayBuckets(b.bucket, b.count, b.sum, b.min, b.max, b.sumsq, b.last, b.last_ts)
    payload = encode_day(day, MINUTE)
    same(decode_day(payload), day)
    assert len(payload) < 11 * len(day)


def test_empty_and_bad_input() -> None:
    ints, floats = np.empty(0, np.int64), np.empty(0)
    empty = DayBuckets(ints, ints, floats, floats, floats, floats, floats, ints)
    assert encode_day(empty, MINUTE) == bytes([VERSION, 0])
    assert len(decode_day(encode_day(empty, MINUTE))) == 0
    one = np.ones(2)
    unaligned = DayBuckets(np.array([0, 30_000]), np.array([1, 1]), *([one] * 5), np.array([0, 0]))
    with pytest.raises(ValueError, match="multiples"):
        encode_day(unaligned, MINUTE)
    backwards = DayBuckets(np.array([MINUTE, 0]), np.array([1, 1]), *([one] * 5), np.array([0, 0]))
    with pytest.raises(ValueError, match="ascending"):
        encode_day(backwards, MINUTE)
    good = encode_day(DayBuckets(np.array([0]), np.array([1]), *([one[:1]] * 5), np.array([0])), 1)
    with pytest.raises(ValueError, match="version"):
        decode_day(bytes([VERSION + 1]) + good[1:])
    with pytest.raises(ValueError, match="ends at byte"):
        decode_day(good + b"\0")
