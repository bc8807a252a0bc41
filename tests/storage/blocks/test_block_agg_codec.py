"""Aggregate payloads: every column back bit for bit; bad input refused."""

from __future__ import annotations

import math

import numpy as np
import pytest
from block_strategies import value_arrays
from hypothesis import given, settings
from hypothesis import strategies as st

from app.storage.blocks.agg_codec import VERSION, decode_aggregates, encode_aggregates
from app.storage.blocks.aggregates import Buckets, aggregate

MINUTE = 60_000


def same(got: Buckets, want: Buckets) -> None:
    for name in ("series", "bucket", "count", "last_ts"):
        assert getattr(got, name).tolist() == getattr(want, name).tolist(), name
    for name in ("sum", "min", "max", "m2", "last"):
        got_bits, want_bits = getattr(got, name).view(np.int64), getattr(want, name).view(np.int64)
        assert got_bits.tolist() == want_bits.tolist(), name


@settings(max_examples=150)
@given(st.data(), st.sampled_from([MINUTE, 5 * MINUTE, 3_600_000]))
def test_round_trip_is_bit_exact(data: st.DataObject, width: int) -> None:
    n = data.draw(st.integers(0, 200))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32)))
    gaps = rng.integers(1, data.draw(st.sampled_from([2, 5, 10**6])), size=n)
    bucket = (np.cumsum(gaps) + data.draw(st.integers(-(10**6), 10**6))) * width
    columns = [data.draw(value_arrays(n, n)) for _ in range(5)]
    count = rng.integers(1, data.draw(st.sampled_from([2, 10**6])), size=n)
    offset = rng.integers(0, data.draw(st.sampled_from([1, width])), size=n)
    buckets = Buckets(np.full(n, 7, np.int64), bucket, count, *columns, bucket + offset)
    same(decode_aggregates(encode_aggregates(buckets, width), 7), buckets)


def test_a_workload_day() -> None:
    rng = np.random.default_rng(3)
    ts = np.arange(8640, dtype=np.int64) * 10_000
    values = np.round(50 + rng.normal(0, 3, ts.size), 3)
    values[17] = math.nan
    buckets = aggregate(np.full(ts.size, 4, np.int64), ts, values, 5 * MINUTE)
    payload = encode_aggregates(buckets, 5 * MINUTE)
    same(decode_aggregates(payload, 4), buckets)
    assert len(payload) < 20 * len(buckets)


def test_bad_input_is_refused() -> None:
    ones = np.ones(2)
    two = Buckets(
        np.array([1, 2]),
        np.array([0, MINUTE]),
        np.array([1, 1]),
        ones,
        ones,
        ones,
        ones,
        ones,
        np.array([0, MINUTE]),
    )
    with pytest.raises(ValueError, match="one series"):
        encode_aggregates(two, MINUTE)
    with pytest.raises(ValueError, match="multiples of"):
        encode_aggregates(two.take(slice(1, 2)), 7 * MINUTE + 1)
    backwards = Buckets(
        np.array([1, 1]),
        np.array([MINUTE, 0]),
        np.array([1, 1]),
        ones,
        ones,
        ones,
        ones,
        ones,
        np.array([MINUTE, 0]),
    )
    with pytest.raises(ValueError, match="strictly ascending"):
        encode_aggregates(backwards, MINUTE)
    payload = encode_aggregates(two.take(slice(0, 1)), MINUTE)
    with pytest.raises(ValueError, match=f"not a version {VERSION}"):
        decode_aggregates(bytes([9]) + payload[1:], 1)
    with pytest.raises(ValueError, match="ends at byte"):
        decode_aggregates(payload + b"\x01", 1)
    assert len(decode_aggregates(encode_aggregates(two.take(slice(0, 0)), MINUTE), 1)) == 0
