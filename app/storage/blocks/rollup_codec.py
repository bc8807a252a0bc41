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
    byte     how sumsq follows: 0 floats (the only form of version 1; room for a model of
             the sum of squares from the sum, which bench/rollup numbers would have to justify)
    column   sumsq as floats

Sizes on the benchmark's data (1 day, 10 s samples), bytes per raw sample: 1m 2.02, 5m 0.46,
1h 0.07; of a 1m bucket's 12 bytes the sum of squares takes 4.4 (full-precision doubles that
pcodec's float modes still find some grid in), sum 2.3, min, max and last 1.8 each.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.storage.blocks import column, pco, varint
from app.storage.blocks.column import DEFAULT, Settings

VERSION = 1
SUMSQ_FLOATS = 0
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
    out.append(SUMSQ_FLOATS)
    column.put_floats(out, day.sumsq, settings, decimals=False)
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
    else:
        raise ValueError(f"unknown sumsq kind {kind}")
    if at != len(buf):
        raise ValueError(f"a rollup block of {len(buf)} bytes ends at byte {at}")
    bucket = index * width
    return DayBuckets(bucket, count, total, low, high, sumsq, last, bucket + offset)
