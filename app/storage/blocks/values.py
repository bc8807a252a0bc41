"""How a block's values are written: as decimal integers where that is exact, else as floats.

Most metrics are decimal numbers with few places (`50.123`, a counter `1234`). A JSON parser turns
`50.123` into the double nearest to 50123 / 10**3, and that double is exactly what dividing the
integer 50123 by the double 1000.0 gives (IEEE 754 division is correctly rounded). So a value v
is stored as the integer k = rint(v * 10**d) whenever k / 10**d gives back v's very bits and
|k| < 2**53 (so that k is exact as a double). pcodec packs those integers tighter and about three
times faster than the doubles (measured in bench/blocks_lab/).

Values that are not such decimals (NaN of any payload, such as the Prometheus stale marker,
infinities, -0.0, full-precision values) become *exceptions*: their position and their 64 raw
bits are written as they are, and the integer column holds the previous value in their place. A
block with more exceptions than `max_exceptions` is written as doubles; pcodec keeps every float64
bit pattern, NaN payloads included (tested in tests/storage/blocks/).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_PLACES = 12  # decimal places tried
EXACT_INT = 2**53  # integers of smaller magnitude are exact as doubles
PROBE = 16  # values looked at before the whole block is tried
# exact: converted from Python's integers (every power of ten up to 1e22 is a double), not
# computed by a pow() whose last bit could differ between platforms; decoders divide by these
POW10 = np.array([float(10**d) for d in range(MAX_PLACES + 1)])


@dataclass(frozen=True)
class Decimals:
    places: int
    ints: np.ndarray  # int64: value * 10**places, the previous value at exceptions
    positions: np.ndarray  # int64, ascending: where the values are exceptions
    bits: np.ndarray  # int64: the raw bits of the values at `positions`


def decoded(ints: np.ndarray, places: int) -> np.ndarray:
    """The doubles that decimal integers stand for (the decoder's one formula)."""
    out: np.ndarray = ints.astype(np.float64) / POW10[places]
    return out


def exact_at(values: np.ndarray, places: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The integers `values` stand for at `places` decimals (0 where none), and which are exact;
    `places` broadcasts against `values` (a column of them tries several at once). Call under
    np.errstate(over="ignore", invalid="ignore"): huge values overflow when scaled."""
    scaled = np.rint(values * POW10[places])
    fits = np.abs(scaled) < EXACT_INT  # False for NaN and infinities
    ints = np.where(fits, scaled, 0.0).astype(np.int64)
    back = ints.astype(np.float64) / POW10[places]
    exact: np.ndarray = fits & (back.view(np.int64) == values.view(np.int64))
    return ints, exact


def probe_places(values: np.ndarray) -> int | None:
    """The fewest places that make most probed values exact, or None if most are no decimals;
    every number of places tried at once, as one (probe, places) array."""
    probe = values[:: max(1, values.size // PROBE)][:PROBE]
    _, exact = exact_at(probe[:, None], np.arange(MAX_PLACES + 1)[None, :])
    some = exact.any(axis=1)
    if int(np.count_nonzero(some)) * 4 < probe.size * 3:
        return None
    return int(np.argmax(exact, axis=1)[some].max())


def as_decimals(values: np.ndarray, max_exceptions: int) -> Decimals | None:
    """`values` as decimal integers with at most `max_exceptions` exceptions, or None. When
    the probe's places leave too many values out (a block mostly constant at 7.0 with a few
    values like 50.123), the values left out are probed for more places, up to twice."""
    with np.errstate(over="ignore", invalid="ignore"):
        places = probe_places(values)
        for _ in range(3):
            if places is None:
                return None
            ints, exact = exact_at(values, np.array(places))
            misses = values.size - int(np.count_nonzero(exact))
            if misses <= max_exceptions and misses < values.size:
                return _with_exceptions(places, ints, exact, values)
            more = probe_places(values[~exact])
            places = more if more is not None and more > places else None
    return None


def _with_exceptions(
    places: int, ints: np.ndarray, exact: np.ndarray, values: np.ndarray
) -> Decimals:
    if exact.all():
        return Decimals(places, ints, np.empty(0, np.int64), np.empty(0, np.int64))
    positions = np.flatnonzero(~exact)
    index = np.where(exact, np.arange(exact.size), 0)
    index[: int(np.argmax(exact))] = int(np.argmax(exact))  # before the first exact value
    ints = ints[np.maximum.accumulate(index)]
    return Decimals(places, ints, positions, values.view(np.int64)[positions])


def first_differences_pay(ints: np.ndarray) -> bool:
    """Whether first differences are likely to pack tighter than the integers themselves: when
    they vary less (a counter, a slow drift), as the entropy of a normal variable grows with the
    log of its variance. pcodec's own choice ("auto") missed this on the benchmark's day-long
    blocks: 1.95 B/sample without differences against 1.79 with."""
    if ints.size < 3:
        return False
    level = ints.astype(np.float64)
    level -= level.mean()
    steps = np.diff(level)
    steps -= steps.mean()
    return bool(steps @ steps / steps.size < level @ level / level.size)
