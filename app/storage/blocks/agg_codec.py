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

from app.storage.blocks import bucket_grid, column
from app.storage.blocks.aggregates import Buckets, empty
from app.storage.blocks.column import DEFAULT, Settings

VERSION = 1
FLOATS = ("sum", "min", "max", "m2", "last")


def encode_aggregates(buckets: Buckets, width_ms: int, settings: Settings = DEFAULT) -> bytes:
    """ValueError unless the buckets are of one series, aligned to `width_ms` and ascending."""
    n = len(buckets)
    if n and bool(np.any(buckets.series != buckets.series[0])):
        raise ValueError("aggregates of one series only")
    bucket_grid.check_buckets(buckets.bucket, width_ms)
    out = bucket_grid.put_grid(
        VERSION, buckets.bucket, buckets.count, buckets.last_ts, width_ms, settings
    )
    if n == 0:
        return bytes(out)
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
    grid = bucket_grid.read_grid(buf, VERSION, "aggregates payload")
    if grid is None:
        return empty()
    n, header, at = grid.n, grid.header, grid.at
    floats = []
    for _ in FLOATS:
        values, at = column.read_floats(buf, at, header, n)
        floats.append(values)
    if at != len(buf):
        raise ValueError(f"an aggregates payload of {len(buf)} bytes ends at byte {at}")
    total, low, high, m2, last = floats
    ids = np.full(n, series, dtype=np.int64)
    return Buckets(ids, grid.bucket, grid.count, total, low, high, m2, last, grid.last_ts)
