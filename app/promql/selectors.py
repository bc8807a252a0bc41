"""Selecting samples: the instant vector selector with its lookback, and the windows of range
selectors, for all series and all steps in a few searchsorted calls.

Series are stored one after another in flat arrays (`SeriesSet`). To search every series at
once, each sample gets the key `row * span + (ts - base)`, which is ascending over the flat
array; a query for series `row` at time `t` searches the key `row * span + (t - base)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from app.promql.values import InstantVector, Labels, RangeVector, is_stale

LOOKBACK_MS = 300_000
KEY_LIMIT = 2**62


@dataclass
class SeriesSet:
    """The samples of the series one selector matches, stale markers included."""

    labels: list[Labels]
    starts: np.ndarray  # (K + 1,) int64
    ts: np.ndarray  # flat int64 ms, ascending within each series
    values: np.ndarray  # flat float64
    _fresh: SeriesSet | None = field(default=None, repr=False, compare=False)

    @classmethod
    def empty(cls) -> SeriesSet:
        nothing = np.empty(0, dtype=np.int64)
        return cls([], np.zeros(1, dtype=np.int64), nothing, np.empty(0))

    @classmethod
    def from_rows(
        cls, labels: list[Labels], rows: np.ndarray, ts: np.ndarray, values: np.ndarray
    ) -> SeriesSet:
        """From samples sorted by (row, ts), `rows` giving each sample's series index."""
        counts = np.bincount(rows, minlength=len(labels)) if rows.size else np.zeros(len(labels))
        starts = np.zeros(len(labels) + 1, dtype=np.int64)
        np.cumsum(counts, out=starts[1:])
        return cls(labels, starts, ts.astype(np.int64, copy=False), values)

    @property
    def rows(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.labels)), np.diff(self.starts))

    def without_stale(self) -> SeriesSet:
        """The same series without stale markers (what range selectors see)."""
        if self._fresh is None:
            stale = is_stale(self.values)
            if not stale.any():
                self._fresh = self
            else:
                keep = ~stale
                self._fresh = SeriesSet.from_rows(
                    self.labels, self.rows[keep], self.ts[keep], self.values[keep]
                )
        return self._fresh


def search(
    starts: np.ndarray, ts: np.ndarray, times: np.ndarray, side: str = "right"
) -> np.ndarray:
    """For every series k and time t, the index into the flat arrays of the first sample of k
    with ts > t (side "right") or ts >= t (side "left"): shape (K, len(times))."""
    k = starts.size - 1
    if k == 0:
        return np.empty((0, times.size), dtype=np.int64)
    base = min(int(ts.min()) if ts.size else 0, int(times.min()))
    span = max(int(ts.max()) if ts.size else 0, int(times.max())) - base + 1
    if k * span >= KEY_LIMIT:  # keys would overflow: one search per series instead
        out = np.empty((k, times.size), dtype=np.int64)
        for row in range(k):
            lo, hi = starts[row], starts[row + 1]
            out[row] = lo + np.searchsorted(ts[lo:hi], times, side=side)  # type: ignore[call-overload]
        return out
    row_base = np.arange(k, dtype=np.int64)[:, None] * span
    keys = np.repeat(row_base[:, 0], np.diff(starts)) + (ts - base)
    return np.searchsorted(keys, row_base + (times - base)[None, :], side=side)  # type: ignore[call-overload, no-any-return]


def instant(data: SeriesSet, refs: np.ndarray, lookback_ms: int = LOOKBACK_MS) -> InstantVector:
    """The instant vector selector at reference times `refs` (evaluation time minus offset, or
    the `@` time): the newest sample in `(ref - lookback, ref]`, absent if it is a stale
    marker. Returns the sample values and, as `sample_ts`, their timestamps."""
    vector, _ = instant_with_ts(data, refs, lookback_ms)
    return vector


def instant_with_ts(
    data: SeriesSet, refs: np.ndarray, lookback_ms: int = LOOKBACK_MS
) -> tuple[InstantVector, np.ndarray]:
    if not data.labels:
        return InstantVector.empty(refs.size), np.empty((0, refs.size), dtype=np.int64)
    idx = search(data.starts, data.ts, refs) - 1
    row_start = data.starts[:-1, None]
    found = idx >= row_start
    safe = np.where(found, idx, 0)
    if data.ts.size == 0:
        found[:] = False
        sample_ts = np.zeros_like(idx)
        values = np.zeros(idx.shape)
    else:
        sample_ts = data.ts[safe]
        values = data.values[safe]
        found &= sample_ts > refs[None, :] - lookback_ms
        found &= ~is_stale(values)
    return InstantVector(list(data.labels), np.where(found, values, 0.0), found), sample_ts


def range_vector(data: SeriesSet, ends: np.ndarray, range_ms: int) -> RangeVector:
    """A range selector: windows `(end - range, end]`, stale markers left out."""
    fresh = data.without_stale()
    return RangeVector(fresh.labels, fresh.starts, fresh.ts, fresh.values, ends, range_ms)


def window_bounds(rv: RangeVector) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi), each (K, N): series k's samples in step n's window are flat[lo:hi]."""
    hi = search(rv.starts, rv.ts, rv.ends)
    lo = search(rv.starts, rv.ts, rv.ends - rv.range_ms)
    return lo, hi


def window_samples(rv: RangeVector) -> list[tuple[Labels, np.ndarray, np.ndarray]]:
    """The samples of a range vector evaluated at a single step, per series (for a range
    vector as the result of an instant query)."""
    lo, hi = window_bounds(rv)
    out = []
    for row, labels in enumerate(rv.labels):
        a, b = int(lo[row, 0]), int(hi[row, 0])
        if b > a:
            out.append((labels, rv.ts[a:b], rv.values[a:b]))
    return out
