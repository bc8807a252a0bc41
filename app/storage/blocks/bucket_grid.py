"""The part a payload of bucket aggregates starts with, shared by `agg_codec` (the lab's
aggregates of a span) and `rollup_codec` (rollup blocks): the version byte, the number of
buckets, their width, pcodec's file header and three integer columns (bucket / width, count,
last_ts - bucket). What follows (the floats) is each codec's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.storage.blocks import column, pco, varint
from app.storage.blocks.column import Settings


def check_buckets(bucket: np.ndarray, width_ms: int) -> None:
    """ValueError unless the bucket starts are multiples of `width_ms` and strictly ascending."""
    if bool(np.any(np.mod(bucket, width_ms))):
        raise ValueError(f"bucket starts must be multiples of {width_ms} ms")
    if bucket.size > 1 and not bool(np.all(bucket[1:] > bucket[:-1])):
        raise ValueError("bucket starts must be strictly ascending")


def put_grid(
    version: int,
    bucket: np.ndarray,
    count: np.ndarray,
    last_ts: np.ndarray,
    width_ms: int,
    settings: Settings,
) -> bytearray:
    """The payload's start; nothing follows the count when there is no bucket."""
    out = bytearray([version])
    varint.put_uint(out, bucket.size)
    if bucket.size == 0:
        return out
    varint.put_uint(out, width_ms)
    out += pco.file_header()
    column.put_ints(out, bucket // width_ms, settings)
    column.put_ints(out, count, settings)
    column.put_ints(out, last_ts - bucket, settings)
    return out


@dataclass(frozen=True)
class Grid:
    """A payload's start, decoded; `at` is where the codec's own columns begin."""

    n: int
    header: bytes
    bucket: np.ndarray
    count: np.ndarray
    last_ts: np.ndarray
    at: int


def read_grid(buf: bytes, version: int, what: str) -> Grid | None:
    """The start of a payload of `version` (None when it holds no bucket); `what` names the
    payload in the error when the version is another."""
    if not buf or buf[0] != version:
        raise ValueError(f"not a version {version} {what}")
    n, at = varint.get_uint(buf, 1)
    if n == 0:
        return None
    width, at = varint.get_uint(buf, at)
    header, at = buf[at : at + 2], at + 2
    index, at = column.read_ints(buf, at, header, n)
    count, at = column.read_ints(buf, at, header, n)
    offset, at = column.read_ints(buf, at, header, n)
    bucket = index * width
    return Grid(n, header, bucket, count, bucket + offset, at)
