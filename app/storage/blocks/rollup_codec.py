"""One rollup block: the stored buckets of one series at one resolution over one UTC day, as the
row tables `rollup_<res>` hold them (count, sum, min, max, sumsq, last, last_ts), every float64
bit pattern kept (docs/storage.md#rollup-blocks).

Layout, version 1 (varints LEB128, signed ones zigzag; columns as in column.py):

    byte     format version (1)
    uint     n, the number of buckets; nothing follows when it is 0
    uint     the width of the buckets in ms
    2 bytes  pcodec's file header
    column   integers: bucket / width (consecutive buckets are "arithmetic", no chunk)
    column   integers: count
    column   integers: last_ts - bucket
    byte     how the five floats follow, the smaller of:
             0  float columns: sum, min, max, last, sumsq
             1  byte d, the decimal places of the values, then integer columns:
                S, and the bits of sum less the bits of S / 10**d;
                for min, max and last each: V - S // count, and its bits less those of V / 10**d;
                K - S * S // count, and the bits of sumsq less those of K / 10**(2d);
                where S = rint(sum * 10**d), V = rint(value * 10**d), K = rint(sumsq * 10**(2d)),
                each 0 where it is not finite or too large to be exact, and the differences of
                bits are modulo 2**64

The second form models buckets of decimal values (most metrics): the sum is an integer S of
10**-d up to a few units of the last place, and min, max, last and the sum of squares are close
to what S says of them (the mean S // count, and S * S // count, whose difference from K is about
count x the variance x 10**(2d)), so the columns hold small numbers. Any bits survive either
form: the decoder computes the same predictions from S and adds the same differences.

Sizes on the benchmark's data (one day, 10 s samples, three decimals), bytes per raw sample:
1m 1.82, 5m 0.41, 1h 0.06 (as float columns 2.01, 0.45, 0.07).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.storage.blocks import bucket_grid, column, pco
from app.storage.blocks.column import DEFAULT, INT_PCO, Settings
from app.storage.blocks.values import POW10, probe_places

VERSION = 1
FLOATS, DECIMAL_MODEL = 0, 1
MAX_PLACES = 6  # 10**(2 * 6) is the last power of ten values.POW10 holds
EXACT = 2**52
SQUARABLE = 2**31  # |S| below it: S * S fits in an int64
DAY_MS = 86_400_000


@dataclass(frozen=True)
class DayBuckets:
    """The buckets of one series, resolution and day, ascending by bucket."""

    bucket: np.ndarray  # int64 ms
    count: np.ndarray  # int64
    sum: np.ndarray  # float64 (NaN where a bucket holds +Inf and -Inf)
    min: np.ndarray
    max: np.ndarray
    sumsq: np.ndarray
    last: np.ndarray
    last_ts: np.ndarray  # int64 ms

    def __len__(self) -> int:
        return int(self.bucket.size)


def _scaled(values: np.ndarray, places: int, limit: int) -> np.ndarray:
    """rint(values * 10**places) as int64, 0 where that is not finite or not below `limit`."""
    with np.errstate(all="ignore"):
        scaled = np.rint(values * POW10[places])
        fits = np.abs(scaled) < limit  # False for NaN and infinities
    out: np.ndarray = np.where(fits, scaled, 0.0).astype(np.int64)
    return out


def _unscaled(ints: np.ndarray, places: int) -> np.ndarray:
    """The doubles integers of 10**-places stand for: the decoder's one formula."""
    out: np.ndarray = ints.astype(np.float64) / POW10[places]
    return out


def _bits_less(values: np.ndarray, approx: np.ndarray) -> np.ndarray:
    out: np.ndarray = (values.view(np.uint64) - approx.view(np.uint64)).view(np.int64)
    return out


def _bits_plus(approx: np.ndarray, difference: np.ndarray) -> np.ndarray:
    out: np.ndarray = (approx.view(np.uint64) + difference.view(np.uint64)).view(np.float64)
    return out


def _put_trend(out: bytearray, values: np.ndarray, settings: Settings) -> None:
    """An integer column that drifts (sums): pcodec on first differences, which pay on sums
    of a slowly moving level (0.33 against 0.38 B per raw sample at 1m on the benchmark)."""
    steps = np.diff(values)
    if values.size < 3 or bool(np.all(steps == steps[0])):
        column.put_ints(out, values, settings)
        return
    out.append(INT_PCO)
    out += pco.chunk(values, settings.int_level, "first")


def _put_model(day: DayBuckets, settings: Settings) -> bytearray | None:
    """Form 1 of the floats, or None unless the values are decimals of at most MAX_PLACES."""
    with np.errstate(all="ignore"):
        places = probe_places(day.min)
    if places is None or places > MAX_PLACES:
        return None
    out = bytearray([DECIMAL_MODEL, places])
    whole = _scaled(day.sum, places, SQUARABLE)
    _put_trend(out, whole, settings)
    column.put_ints(out, _bits_less(day.sum, _unscaled(whole, places)), settings)
    mean = whole // day.count
    for values in (day.min, day.max, day.last):
        scaled = _scaled(values, places, EXACT)
        column.put_ints(out, scaled - mean, settings)
        column.put_ints(out, _bits_less(values, _unscaled(scaled, places)), settings)
    k = _scaled(day.sumsq, 2 * places, EXACT)
    column.put_ints(out, k - (whole * whole) // day.count, settings)
    column.put_ints(out, _bits_less(day.sumsq, _unscaled(k, 2 * places)), settings)
    return out


def _read_model(
    buf: bytes, at: int, header: bytes, count: np.ndarray
) -> tuple[list[np.ndarray], int]:
    n, places = count.size, buf[at]
    at += 1
    whole, at = column.read_ints(buf, at, header, n)
    difference, at = column.read_ints(buf, at, header, n)
    out = [_bits_plus(_unscaled(whole, places), difference)]
    mean = whole // count
    for _ in range(3):
        residual, at = column.read_ints(buf, at, header, n)
        difference, at = column.read_ints(buf, at, header, n)
        out.append(_bits_plus(_unscaled(residual + mean, places), difference))
    residual, at = column.read_ints(buf, at, header, n)
    difference, at = column.read_ints(buf, at, header, n)
    k = residual + (whole * whole) // count
    out.append(_bits_plus(_unscaled(k, 2 * places), difference))
    return out, at  # sum, min, max, last, sumsq


def _put_floats(day: DayBuckets, settings: Settings) -> bytearray:
    out = bytearray([FLOATS])
    # sums seldom are exact decimals; pcodec's float modes (level 8) still find their grid
    column.put_floats(out, day.sum, settings, decimals=False)
    for values in (day.min, day.max, day.last):
        column.put_floats(out, values, settings)
    column.put_floats(out, day.sumsq, settings, decimals=False)
    return out


def encode_day(day: DayBuckets, width_ms: int, settings: Settings = DEFAULT) -> bytes:
    """ValueError unless buckets are aligned to `width_ms`, strictly ascending and few enough."""
    n = len(day)
    if n > pco.MAX_CHUNK:
        raise ValueError(f"a rollup block holds at most {pco.MAX_CHUNK} buckets")
    bucket_grid.check_buckets(day.bucket, width_ms)
    out = bucket_grid.put_grid(VERSION, day.bucket, day.count, day.last_ts, width_ms, settings)
    if n == 0:
        return bytes(out)
    floats = _put_floats(day, settings)
    model = _put_model(day, settings)
    out += model if model is not None and len(model) < len(floats) else floats
    return bytes(out)


def decode_day(buf: bytes) -> DayBuckets:
    """The buckets of a payload, bit for bit as encoded."""
    grid = bucket_grid.read_grid(buf, VERSION, "rollup block")
    if grid is None:
        ints, none = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
        return DayBuckets(ints, ints, none, none, none, none, none, ints)
    n, header, at, count = grid.n, grid.header, grid.at, grid.count
    kind = buf[at]
    if kind == DECIMAL_MODEL:
        floats, at = _read_model(buf, at + 1, header, count)
    elif kind == FLOATS:
        at += 1
        floats = []
        for _ in range(5):
            values, at = column.read_floats(buf, at, header, n)
            floats.append(values)
    else:
        raise ValueError(f"unknown float form {kind}")
    if at != len(buf):
        raise ValueError(f"a rollup block of {len(buf)} bytes ends at byte {at}")
    total, low, high, last, sumsq = floats
    return DayBuckets(grid.bucket, count, total, low, high, sumsq, last, grid.last_ts)
