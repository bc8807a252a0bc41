"""Every float64 bit pattern, stored and read back exactly, and what rollups make of them.

SQLite's REAL column keeps neither NaN (stored as NULL) nor the sign of -0.0 (stored as the
integer 0). So on SQLite those values are written as 0.0 with their IEEE 754 bits, as a signed
64-bit integer, in `samples.bits`, and a raw read puts the bits back (a partial index finds the
rows). PostgreSQL's float8 keeps every pattern through binary parameters and binary COPY, the
only ways values travel there; `bits` stays NULL.

Rollups leave NaN out (a Prometheus stale marker is a NaN; so is a value nobody could measure):
count, sum, min, max, sumsq and last are over the other values, so a NaN never poisons a sum.
Infinities are ordinary values, with IEEE 754 arithmetic, except where PostgreSQL raises an error
on float overflow or underflow: the terms of the sums are bounded (app.services.rollup:
SUM_LIMIT, SQUARE_LIMIT, SQUARE_FLOOR), the same way on both backends and in the aggregation of
merged history, so all answer alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

NEG_ZERO_BITS = -(2**63)  # the bits of -0.0 as a signed 64-bit integer
KEY = np.dtype([("series", "<i8"), ("ts", "<i8")])


def kept_apart(values: np.ndarray) -> np.ndarray:
    """Which values SQLite's REAL cannot hold exactly: NaN (any payload) and -0.0."""
    apart: np.ndarray = np.isnan(values) | ((values == 0.0) & np.signbit(values))
    return apart


def as_bits(values: np.ndarray) -> np.ndarray:
    """The IEEE 754 bits of float64 values as signed 64-bit integers (no conversion)."""
    return np.ascontiguousarray(values, dtype=np.float64).view(np.int64)


def put_back(
    sids: np.ndarray, ts: np.ndarray, values: np.ndarray, apart: Sequence[Sequence[Any]]
) -> None:
    """Write the exact values of rows kept apart, `(series_id, ts, bits)`, into `values`, the
    value column of rows ordered by (series, ts). Rows not among them are skipped."""
    if not apart or sids.size == 0:
        return
    table = np.array([tuple(row) for row in apart], dtype=np.int64).reshape(-1, 3)
    keys = np.empty(table.shape[0], dtype=KEY)
    keys["series"], keys["ts"] = table[:, 0], table[:, 1]
    rows = np.empty(sids.size, dtype=KEY)
    rows["series"], rows["ts"] = sids, ts
    at = np.minimum(np.searchsorted(rows, keys), sids.size - 1)
    found = (rows["series"][at] == keys["series"]) & (rows["ts"][at] == keys["ts"])
    values[at[found]] = table[found, 2].view(np.float64)
