"""Hypothesis strategies shared by the block tests: float64 bit patterns and series of samples."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

STALE = 0x7FF0000000000002  # the Prometheus stale marker: a signalling NaN with a payload
NAMED_BITS = [
    STALE,
    0x7FF8000000000001,  # a quiet NaN with a payload
    0xFFF8000000000000,  # a negative quiet NaN
    0x7FFFFFFFFFFFFFFF,  # the largest NaN payload
    0x7FF0000000000000,  # +Inf
    0xFFF0000000000000,  # -Inf
    0x8000000000000000,  # -0.0
    0x0000000000000000,  # 0.0
    0x0000000000000001,  # the smallest subnormal
    0x800FFFFFFFFFFFFF,  # the largest negative subnormal
    0x7FEFFFFFFFFFFFFF,  # the largest finite double
    0x3FF0000000000000,  # 1.0
]
any_bits = st.one_of(st.sampled_from(NAMED_BITS), st.integers(0, 2**64 - 1))
decimal = st.builds(lambda k, d: k / 10.0**d, st.integers(-(10**9), 10**9), st.integers(0, 6))


def as_floats(bits: list[int]) -> np.ndarray:
    return np.array(bits, dtype=np.uint64).view(np.float64)


@st.composite
def value_arrays(draw: st.DrawFn, min_size: int = 0, max_size: int = 300) -> np.ndarray:
    """float64 arrays of every flavour: decimals with a few odd patterns among them (the
    decimal encoding with exceptions), arbitrary bit patterns (doubles), or a constant. The bulk
    comes from a seeded numpy generator (hypothesis drawing hundreds of numbers one by one is
    slow); the odd patterns, their places and the sizes from hypothesis."""
    n = draw(st.integers(min_size, max_size))
    kind = draw(st.sampled_from(["decimals", "bits", "constant"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32)))
    if kind == "constant":
        return np.full(n, as_floats([draw(any_bits)])[0])
    if kind == "bits":
        values = rng.integers(0, 2**64, size=n, dtype=np.uint64, endpoint=False).view(np.float64)
    else:
        places, spread = draw(st.integers(0, 4)), draw(st.sampled_from([10, 10**4, 10**7]))
        ints = rng.integers(-spread, spread, size=n) + draw(st.integers(-(10**9), 10**9))
        values = ints.astype(np.float64) / 10.0**places
    odd = draw(st.lists(st.tuples(st.integers(0, max(n - 1, 0)), any_bits), max_size=4))
    for position, bits in odd:
        if n:
            values[position] = as_floats([bits])[0]
    return values


@st.composite
def timestamps(draw: st.DrawFn, n: int) -> np.ndarray:
    """n strictly ascending int64 ms timestamps: regular, jittered or arbitrary steps."""
    first = draw(st.integers(-(2**50), 2**50))
    kind = draw(st.sampled_from(["regular", "jittered", "steps"]))
    if kind == "regular":
        step = draw(st.integers(1, 10**7))
        return first + step * np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(draw(st.integers(0, 2**32)))
    if kind == "jittered":
        return first + 10_000 * np.arange(n, dtype=np.int64) + rng.integers(0, 40, size=n)
    return first + np.cumsum(rng.integers(1, draw(st.sampled_from([2, 10**3, 10**9])), size=n))
