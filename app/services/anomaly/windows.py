"""Trailing windows over an array of blocks, vectorized: for each position p the `size` values
before it (p itself excluded), optionally not reaching back past a per-position first position
(a segment start). Rows are NaN where a value is missing or out of the window."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def trailing(
    values: FloatArray, p0: int, p1: int, size: int, first: IntArray | None = None
) -> FloatArray:
    """Rows p0..p1-1: values[p - size : p], NaN before position first[p] (or before 0)."""
    padded = np.concatenate((np.full(size, np.nan), values))
    rows = sliding_window_view(padded, size)[p0:p1].copy()
    if first is not None and rows.size:
        positions = np.arange(p0, p1)[:, None] - size + np.arange(size)[None, :]
        rows[positions < first[p0:p1, None]] = np.nan
    return rows


def trailing_valid(
    values: FloatArray, p0: int, p1: int, size: int, first: IntArray | None = None
) -> FloatArray:
    """Rows p0..p1-1: the last `size` non-NaN values before p, NaN where they lie before
    first[p]. Missing or excluded blocks do not shorten the window; they are skipped."""
    return trailing_valid_at(values, np.arange(p0, p1), size, first)


def trailing_valid_at(
    values: FloatArray, positions: IntArray, size: int, first: IntArray | None = None
) -> FloatArray:
    """`trailing_valid` for any ascending positions."""
    upto = values[: int(positions[-1]) + 1] if positions.size else values[:0]
    valid = np.flatnonzero(~np.isnan(upto))
    packed = np.concatenate((np.full(size, np.nan), upto[valid]))
    end = np.searchsorted(valid, positions, side="left")
    rows = sliding_window_view(packed, size)[end]  # fancy indexing: already a copy
    if first is not None and rows.size:
        where = np.concatenate((np.full(size, -1, dtype=np.int64), valid))
        held = sliding_window_view(where, size)[end]
        rows[(held < first[positions, None]) | (held < 0)] = np.nan
    return rows


def anchors(
    index: IntArray, p0: int, p1: int, stride: int, floor: IntArray | None = None
) -> tuple[IntArray, IntArray]:
    """For positions p0..p1-1 of blocks `index`: the distinct anchor positions (the first block
    of each group of `stride` block indices) and, per position, which of them it takes. Slowly
    changing references are computed at anchors only, a stride-th of the work, and depend on the
    absolute block index, not on where the data starts. No anchor lies before floor[p].
    """
    group = index // stride
    p = np.arange(p0, p1)
    first_of_group = np.searchsorted(group, group[p], side="left")
    if floor is not None:  # never reach back past a segment start
        first_of_group = np.maximum(first_of_group, floor[p])
    distinct, which = np.unique(first_of_group, return_inverse=True)
    return distinct.astype(np.int64), which.astype(np.int64)


def quantile_rows(rows: FloatArray, q: float) -> tuple[FloatArray, IntArray]:
    """The q-quantile of each row's non-NaN values (linear interpolation, as numpy's default),
    NaN for rows without any; and how many values each row has. Full rows (the usual case) go
    through numpy's selection, the others through a sort."""
    missing = np.isnan(rows)
    count = rows.shape[1] - np.sum(missing, axis=1)
    out = np.full(rows.shape[0], np.nan)
    if rows.size == 0:
        return out, count
    full = count == rows.shape[1]
    if full.any():
        out[full] = np.quantile(rows[full], q, axis=1)
    partial = np.flatnonzero(~full & (count > 0))
    if partial.size:
        ordered = np.sort(rows[partial], axis=1)  # NaN sorts last
        n = count[partial]
        pos = (n - 1) * q
        below = np.floor(pos).astype(np.int64)
        above = np.minimum(below + 1, n - 1)
        frac = pos - below
        r = np.arange(partial.size)
        low, high = ordered[r, below], ordered[r, above]
        out[partial] = low + (high - low) * frac
    return out, count


def median_rows(rows: FloatArray) -> tuple[FloatArray, IntArray]:
    return quantile_rows(rows, 0.5)


def window_sum(values: FloatArray, p0: int, p1: int, size: int) -> tuple[FloatArray, IntArray]:
    """Sum and count of the non-NaN values among the `size` before each position p0..p1-1."""
    lo = max(0, p0 - size)
    part = values[lo:p1]
    ok = ~np.isnan(part)
    csum = np.concatenate(([0.0], np.cumsum(np.where(ok, part, 0.0))))
    ccount = np.concatenate(([0], np.cumsum(ok)))
    p = np.arange(p0, p1) - lo
    start = np.maximum(p - size, 0)
    return csum[p] - csum[start], (ccount[p] - ccount[start]).astype(np.int64)
