"""The aggregates of one series at one resolution over one span, as one payload.

Layout, version 1 (varints LEB128, signed ones zigzag; columns as in column.py):

    byte     format version (1)
    uint     n, the number of buckets; nothing follows when it is 0
    uint     the width of the buckets in ms
    2 bytes  pcodec's file header
    column   integers: bucket / width (consecutive buckets are "arithmetic", no chunk)
    column   integers: count
    column   integers: last_ts - bucket
    column   floats: sum, min, max, m2, last (in this order)

Decoded, the columns are the `Buckets` of aggregates.py with the series id the caller names.
"""

from __future__ import annotations

import numpy as np

from app.storage.blocks import column, varint
from app.storage.blocks.aggregates import Buckets, empty
from app.storage.blocks.column import DEFAULT, Settings
from app.storage.blocks.pco import file_header

VERSION = 1
FLOATS = ("sum", "min", "max", "m2", "last")


def encode_aggregates(buckets: Buckets, width_ms: int, settings: Settings = DEFAULT) -> bytes:
    """ValueError unless the buckets are of one series, aligned to `width_ms` and ascending."""
    n = len(buckets)
    if n and bool(np.any(buckets.series != buckets.series[0])):
        raise ValueError("aggregates of one series only")
    if bool(np.any(np.mod(buckets.bucket, width_ms))):
        raise ValueError(f"bucket starts must be multiples of {width_ms} ms")
    if n > 1 and not bool(np.all(buckets.bucket[1:] > buckets.bucket[:-1])):
        raise ValueError("bucket starts must be strictly ascending")
    out = bytearray([VERSION])
    varint.put_uint(out, n)
    if n == 0:
        return bytes(out)
    varint.put_uint(out, width_ms)
    out += file_header()
    column.put_ints(out, buckets.bucket // width_ms, settings)
    column.put_ints(out, buckets.count, settings)
    column.put_ints(out, buckets.last_ts - buckets.bucket, settings)
    # sums and second moments are seldom exact decimals; pcodec's float modes still find the
    # decimal grid of sums (2.8 B per 5m bucket), level 4 at 0.6x the time of 8 for 1% more
    column.put_floats(out, buckets.sum, settings, decimals=False, level=4)
    for name in ("min", "max"):
        column.put_floats(out, getattr(buckets, name), settings)
    column.put_floats(out, buckets.m2, settings, decimals=False, level=4, delta="none")
    column.put_floats(out, buckets.last, settings)
    return bytes(out)


def decode_aggregates(buf: bytes, series: int) -> Buckets:
    """The buckets of a payload, with `series` as their series id."""
    if not buf or buf[0] != VERSION:
        raise ValueError(f"not a version {VERSION} aggregates payload")
    n, at = varint.get_uint(buf, 1)
    if n == 0:
        return empty()
    width, at = varint.get_uint(buf, at)
    header, at = buf[at : at + 2], at + 2
    index, at = column.read_ints(buf, at, header, n)
    count, at = column.read_ints(buf, at, header, n)
    offset, at = column.read_ints(buf, at, header, n)
    floats = []
    for _ in FLOATS:
        values, at = column.read_floats(buf, at, header, n)
        floats.append(values)
    if at != len(buf):
        raise ValueError(f"an aggregates payload of {len(buf)} bytes ends at byte {at}")
    bucket = index * width
    total, low, high, m2, last = floats
    ids = np.full(n, series, dtype=np.int64)
    return Buckets(ids, bucket, count, total, low, high, m2, last, bucket + offset)
