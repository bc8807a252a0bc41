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
    column   floats: sum, then min, max, last
    byte     how sumsq follows, the smaller of:
             0  column: floats
             1  byte d (decimal places of the values), then two integer columns: K - S*S // count
                and the bits of sumsq minus the bits of K / 10**(2d) (modulo 2**64), where
                S = rint(sum * 10**d) and K = rint(sumsq * 10**(2d)) (each 0 where it is not
                finite or too large to be exact)

The second form models the sum of squares of decimal values: a sum of squares of values with d
places is close to an integer K of 10**-(2d), and K less what the sum already says about it
(S*S // count) is about count x the variance x 10**(2d), a much smaller number than K; the
residual bits are a few units of the last place. Any bits survive either form: the decoder
computes the same S, K / 10**(2d) and adds the same residual.

Sizes on the benchmark's data (one day, 10 s samples, three decimals), bytes per raw sample:
1m 1.88, 5m 0.43, 1h 0.065; of a 1m bucket's 11.3 bytes the sum of squares takes 3.6 (4.4 as
floats), the sum 2.3, min, max and last 1.8 each.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.storage.blocks import column, pco, varint
from app.storage.blocks.column import DEFAULT, Settings
from app.storage.blocks.values import POW10, probe_places

VERSION = 1
SUMSQ_FLOATS, SUMSQ_MODELLED = 0, 1
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


def _predicted(total: np.ndarray, count: np.ndarray, places: int) -> np.ndarray:
    """S * S // count, S the sum as an integer of 10**-places: the decoder's formula."""
    whole = _scaled(total, places, SQUARABLE)
    out: np.ndarray = (whole * whole) // count
    return out


def _approx(k: np.ndarray, places: int) -> np.ndarray:
    out: np.ndarray = k.astype(np.float64) / POW10[2 * places]
    return out


def _put_modelled(day: DayBuckets, settings: Settings) -> bytearray | None:
    """Form 1 of sumsq, or None if the values are no decimals of at most MAX_PLACES places."""
    with np.errstate(all="ignore"):
        places = probe_places(day.min)
    if places is None or places > MAX_PLACES:
        return None
    k = _scaled(day.sumsq, 2 * places, EXACT)
    last_place = day.sumsq.view(np.uint64) - _approx(k, places).view(np.uint64)
    out = bytearray([SUMSQ_MODELLED, places])
    column.put_ints(out, k - _predicted(day.sum, day.count, places), settings)
    column.put_ints(out, last_place.view(np.int64), settings)
    return out


def encode_day(day: DayBuckets, width_ms: int, settings: Settings = DEFAULT) -> bytes:
    """ValueError unless buckets are aligned to `width_ms`, strictly ascending and few enough."""
    n = len(day)
    if n > pco.MAX_CHUNK:
        raise ValueError(f"a rollup block holds at most {pco.MAX_CHUNK} buckets")
    if bool(np.any(np.mod(day.bucket, width_ms))):
        raise ValueError(f"bucket starts must be multiples of {width_ms} ms")
    if n > 1 and not bool(np.all(day.bucket[1:] > day.bucket[:-1])):
        raise ValueError("bucket starts must be strictly ascending")
    out = bytearray([VERSION])
    varint.put_uint(out, n)
    if n == 0:
        return bytes(out)
    varint.put_uint(out, width_ms)
    out += pco.file_header()
    column.put_ints(out, day.bucket // width_ms, settings)
    column.put_ints(out, day.count, settings)
    column.put_ints(out, day.last_ts - day.bucket, settings)
    # sums seldom are exact decimals; pcodec's float modes (level 8) still find their grid
    column.put_floats(out, day.sum, settings, decimals=False)
    for values in (day.min, day.max, day.last):
        column.put_floats(out, values, settings)
    floats = bytearray([SUMSQ_FLOATS])
    column.put_floats(floats, day.sumsq, settings, decimals=False)
    modelled = _put_modelled(day, settings)
    out += modelled if modelled is not None and len(modelled) < len(floats) else floats
    return bytes(out)


def decode_day(buf: bytes) -> DayBuckets:
    """The buckets of a payload, bit for bit as encoded."""
    if not buf or buf[0] != VERSION:
        raise ValueError(f"not a version {VERSION} rollup block")
    n, at = varint.get_uint(buf, 1)
    if n == 0:
        ints, none = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
        return DayBuckets(ints, ints, none, none, none, none, none, ints)
    width, at = varint.get_uint(buf, at)
    header, at = buf[at : at + 2], at + 2
    index, at = column.read_ints(buf, at, header, n)
    count, at = column.read_ints(buf, at, header, n)
    offset, at = column.read_ints(buf, at, header, n)
    floats: list[np.ndarray] = []
    for _ in range(4):
        values, at = column.read_floats(buf, at, header, n)
        floats.append(values)
    total, low, high, last = floats
    kind = buf[at]
    if kind == SUMSQ_FLOATS:
        sumsq, at = column.read_floats(buf, at + 1, header, n)
    elif kind == SUMSQ_MODELLED:
        places = buf[at + 1]
        residual, at = column.read_ints(buf, at + 2, header, n)
        last_place, at = column.read_ints(buf, at, header, n)
        approx = _approx(_predicted(total, count, places) + residual, places)
        sumsq = (approx.view(np.uint64) + last_place.view(np.uint64)).view(np.float64)
    else:
        raise ValueError(f"unknown sumsq kind {kind}")
    if at != len(buf):
        raise ValueError(f"a rollup block of {len(buf)} bytes ends at byte {at}")
    bucket = index * width
    return DayBuckets(bucket, count, total, low, high, sumsq, last, bucket + offset)
