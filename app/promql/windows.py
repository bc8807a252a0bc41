"""Reductions over the windows of a range vector, all windows at once.

`reduce` runs a ufunc over every window with `ufunc.reduceat` on interleaved (lo, hi) indices:
each window is reduced on its own, overlapping or not, at a cost of the samples it holds.
`Expanded` lays the samples of a batch of windows out one window after another, for the
reductions that need a window's own statistic per sample (two-pass variance, sorting for a
quantile, a regression relative to the window's first sample); batches bound the memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

EXPANDED_CHUNK = 1 << 22  # samples laid out per batch of windows


def reduce(
    ufunc: np.ufunc, values: np.ndarray, lo: np.ndarray, hi: np.ndarray, empty: float = np.nan
) -> np.ndarray:
    """`ufunc.reduce(values[lo:hi])` for every window; `empty` where a window has no sample."""
    shape = lo.shape
    flat_lo, flat_hi = lo.ravel(), hi.ravel()
    if flat_lo.size == 0:
        return np.empty(shape)
    padded = np.append(values, 0.0)  # so that an index equal to len(values) is valid
    indices = np.empty(2 * flat_lo.size, dtype=np.int64)
    indices[0::2], indices[1::2] = flat_lo, flat_hi
    with np.errstate(all="ignore"):
        out = ufunc.reduceat(padded, indices)[0::2]
    return np.where(flat_hi > flat_lo, out, empty).reshape(shape)


def prefix_difference(increments: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Sum of integer `increments[lo:hi]` per window, from an exact integer prefix sum."""
    prefix = np.zeros(increments.size + 1, dtype=np.int64)
    np.cumsum(increments, out=prefix[1:])
    out: np.ndarray = prefix[hi] - prefix[lo]
    return out


def previous_in_series(values: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's predecessor in its series, and a mask of samples that have one."""
    prev = np.empty_like(values)
    if values.size:
        prev[1:] = values[:-1]
        prev[0] = values[0]
    has_prev = np.ones(values.size, dtype=bool)
    firsts = starts[:-1][starts[:-1] < values.size]
    has_prev[firsts] = False
    return prev, has_prev


@dataclass
class Expanded:
    """The samples of some windows, window after window."""

    windows: np.ndarray  # flat indices of the windows in this batch
    counts: np.ndarray  # samples per window (> 0)
    offsets: np.ndarray  # where each window begins in `index`
    index: np.ndarray  # flat sample index of each laid-out sample
    window_of: np.ndarray  # position (in `windows`) of each laid-out sample's window

    def reduce_sum(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.add.reduceat(x, self.offsets) if x.size else np.empty(0)


def expanded(lo: np.ndarray, hi: np.ndarray) -> Iterator[Expanded]:
    """Batches of the non-empty windows (flattened (K, N) positions), laid out."""
    flat_lo, flat_hi = lo.ravel(), hi.ravel()
    counts = flat_hi - flat_lo
    nonempty = np.flatnonzero(counts > 0)
    if nonempty.size == 0:
        return
    sizes = counts[nonempty]
    ends = np.cumsum(sizes)
    first = 0
    while first < nonempty.size:
        limit = (ends[first - 1] if first else 0) + EXPANDED_CHUNK
        last = max(first + 1, int(np.searchsorted(ends, limit, side="right")))
        windows = nonempty[first:last]
        part = sizes[first:last]
        offsets = np.zeros(part.size, dtype=np.int64)
        np.cumsum(part[:-1], out=offsets[1:])
        window_of = np.repeat(np.arange(part.size), part)
        index = np.arange(int(part.sum())) - offsets[window_of] + flat_lo[windows][window_of]
        yield Expanded(windows, part, offsets, index, window_of)
        first = last
