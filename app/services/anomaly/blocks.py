"""Blocks: a series summarized per epoch-aligned time block, as a rollup bucket summarizes it
(count, sum, sum of squares, min, max). The detector's baselines are built from blocks, so they can
come from raw points or straight from stored rollups, with the same numbers either way."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.services.buckets import resolved_variance, trimmed

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS


@dataclass(frozen=True, eq=False)
class Blocks:
    """Non-empty blocks of one width, ascending by `index` (block start = index * width)."""

    width_ms: int
    index: IntArray
    count: FloatArray
    total: FloatArray
    sumsq: FloatArray
    low: FloatArray
    high: FloatArray

    def __len__(self) -> int:
        return int(self.index.size)

    @classmethod
    def empty(cls, width_ms: int) -> Blocks:
        f = np.empty(0)
        return cls(width_ms, np.empty(0, np.int64), f, f, f, f, f)

    def before(self, block_index: int) -> Blocks:
        """The blocks with an index below `block_index`."""
        cut = int(np.searchsorted(self.index, block_index, side="left"))
        return self.take(slice(0, cut))

    def since(self, block_index: int) -> Blocks:
        cut = int(np.searchsorted(self.index, block_index, side="left"))
        return self.take(slice(cut, None))

    def take(self, where: slice | npt.NDArray[np.bool_]) -> Blocks:
        return Blocks(
            self.width_ms,
            self.index[where],
            self.count[where],
            self.total[where],
            self.sumsq[where],
            self.low[where],
            self.high[where],
        )

    def concat(self, later: Blocks) -> Blocks:
        """These blocks followed by `later`'s (every index of `later` above ours)."""
        return Blocks(
            self.width_ms,
            np.concatenate((self.index, later.index)),
            *(
                np.concatenate((getattr(self, name), getattr(later, name)))
                for name in ("count", "total", "sumsq", "low", "high")
            ),
        )


def aggregate(ts_ms: IntArray, values: FloatArray, width_ms: int) -> Blocks:
    """The blocks of ascending points (vectorized: one pass of reduceat per aggregate)."""
    if ts_ms.size == 0:
        return Blocks.empty(width_ms)
    index = ts_ms // width_ms
    starts = np.concatenate(([0], np.flatnonzero(np.diff(index)) + 1))
    count = np.diff(np.concatenate((starts, [index.size]))).astype(np.float64)
    return Blocks(
        width_ms,
        index[starts],
        count,
        np.add.reduceat(values, starts),
        np.add.reduceat(values * values, starts),
        np.minimum.reduceat(values, starts),
        np.maximum.reduceat(values, starts),
    )


def from_rollups(
    bucket_ms: IntArray,
    count: npt.ArrayLike,
    total: npt.ArrayLike,
    sumsq: npt.ArrayLike,
    low: npt.ArrayLike,
    high: npt.ArrayLike,
    bucket_width_ms: int,
    width_ms: int,
) -> Blocks:
    """Blocks of `width_ms` from stored rollup buckets of `bucket_width_ms` (which divides it):
    the buckets themselves, or merged (counts and sums add, min and max combine)."""
    n = np.asarray(count, dtype=np.float64)
    keep = n > 0
    buckets = np.asarray(bucket_ms, dtype=np.int64)[keep]
    arrays = [np.asarray(a, dtype=np.float64)[keep] for a in (count, total, sumsq, low, high)]
    if width_ms % bucket_width_ms:
        raise ValueError("the block width must be a multiple of the rollup width")
    index = buckets // width_ms
    if buckets.size == 0:
        return Blocks.empty(width_ms)
    if width_ms == bucket_width_ms:
        return Blocks(width_ms, index, *arrays)
    starts = np.concatenate(([0], np.flatnonzero(np.diff(index)) + 1))
    c, s, q, lo, hi = arrays
    return Blocks(
        width_ms,
        index[starts],
        np.add.reduceat(c, starts),
        np.add.reduceat(s, starts),
        np.add.reduceat(q, starts),
        np.minimum.reduceat(lo, starts),
        np.maximum.reduceat(hi, starts),
    )


@dataclass(frozen=True, eq=False)
class BlockStats:
    """What the model reads from each block: a robust location (the mean without the samples a
    spike could be, `app.services.buckets.trimmed`), the within-block spread (NaN where unresolved
    or fewer than 2 samples) and the trimmed spread the variance test compares (sample variances).
    """

    location: FloatArray
    mean: FloatArray
    spread: FloatArray  # sample standard deviation
    trimmed_var: FloatArray
    trimmed_count: FloatArray
    flat: npt.NDArray[np.bool_]


def block_stats(blocks: Blocks) -> BlockStats:
    n, s, q, lo, hi = blocks.count, blocks.total, blocks.sumsq, blocks.low, blocks.high
    mean = s / n
    with np.errstate(divide="ignore", invalid="ignore"):
        # Sample variance (n - 1): the population form underestimates by a fifth at 5 samples.
        var = resolved_variance(n, s, q, lo, hi) * n / (n - 1)
    var[n < 2] = np.nan
    tn, ts, tq = trimmed(n, s, q, lo, hi)
    location = ts / tn
    with np.errstate(divide="ignore", invalid="ignore"):
        t_var = resolved_variance(tn, ts, tq, lo, hi) * tn / (tn - 1)
    t_var[tn < 2] = np.nan
    # Flat: every sample of the block equal, and equal to the previous block's (a value that
    # stays put across blocks; for one-sample blocks, a repeated value).
    same_as_before = np.zeros(n.shape, dtype=bool)
    same_as_before[1:] = (lo[1:] == hi[:-1]) & (lo[:-1] == hi[:-1])
    same_as_before[1:] &= np.diff(blocks.index) == 1
    flat = (lo == hi) & ((n >= 2) | same_as_before)
    return BlockStats(location, mean, np.sqrt(var), t_var, tn, flat)
