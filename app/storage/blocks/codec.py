"""One raw block: the strictly ascending int64 ms timestamps and float64 values of one series.

Layout, version 1 (varints LEB128, signed ones zigzag; columns as in column.py):

    byte     format version (1)
    uint     n, the number of samples; nothing follows when it is 0
    2 bytes  pcodec's file header
    column   timestamps (integers: a regular series is "arithmetic", no chunk at all)
    column   values (floats: decimals, doubles or constant)

A reader that finds another version refuses the block (ValueError), so later formats can be
told apart. Every float64 bit pattern survives.
"""

from __future__ import annotations

import numpy as np

from app.storage.blocks import column, pco, varint
from app.storage.blocks.column import DEFAULT, Settings

VERSION = 1
MAX_SAMPLES = pco.MAX_CHUNK


def check_rows(ts: np.ndarray, values: np.ndarray) -> None:
    """ValueError unless ts is 1-D strictly ascending int64 and values 1-D float64 alike."""
    if ts.dtype != np.int64 or values.dtype != np.float64 or ts.ndim != 1 or values.ndim != 1:
        raise ValueError("a block takes 1-D int64 timestamps and 1-D float64 values")
    if ts.size != values.size:
        raise ValueError(f"{ts.size} timestamps but {values.size} values")
    if ts.size > MAX_SAMPLES:
        raise ValueError(f"a block holds at most {MAX_SAMPLES} samples, not {ts.size}")
    if ts.size > 1 and not bool(np.all(ts[1:] > ts[:-1])):
        raise ValueError("block timestamps must be strictly ascending")


def encode_block(ts: np.ndarray, values: np.ndarray, settings: Settings = DEFAULT) -> bytes:
    check_rows(ts, values)
    out = bytearray([VERSION])
    varint.put_uint(out, ts.size)
    if ts.size:
        out += pco.file_header()
        column.put_ints(out, ts, settings)
        column.put_floats(out, values, settings)
    return bytes(out)


def block_size(buf: bytes) -> int:
    """The number of samples in a block, from its header alone."""
    _check_version(buf)
    return varint.get_uint(buf, 1)[0]


def decode_block(buf: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The timestamps (int64) and values (float64) of a block, bit for bit as encoded."""
    _check_version(buf)
    n, at = varint.get_uint(buf, 1)
    if n == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    header = buf[at : at + 2]
    ts, at = column.read_ints(buf, at + 2, header, n)
    values, at = column.read_floats(buf, at, header, n)
    if at != len(buf):
        raise ValueError(f"a block of {len(buf)} bytes ends at byte {at}")
    return ts, values


def _check_version(buf: bytes) -> None:
    if not buf or buf[0] != VERSION:
        found = buf[0] if buf else None
        raise ValueError(f"not a version {VERSION} block (version byte {found})")
