"""The detector's block model types and constants: `Tuning` (every fixed number, explained in
docs/anomaly-detection.md) and `BlockModel` (per block: the prediction made before it and the
tests once it is complete)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from app.services.anomaly import calibration
from app.services.anomaly.blocks import DAY_MS, WEEK_MS, Blocks, BlockStats

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

MAD_TO_SIGMA = 1.4826  # the MAD of normal data times this is its standard deviation
VARIANCE_RISE = 3.0
MAD_EFFICIENCY = 0.37  # a MAD-based spread is worth this share of a standard deviation's samples


@dataclass(frozen=True)
class Tuning:
    """The model's fixed constants (documented in docs/anomaly-detection.md)."""

    location_blocks: int = 12
    spread_blocks: int = 96
    spread_dof: float = 200.0  # effective degrees of freedom of the estimated point spread
    tail_blocks: int = 96
    tail_quantile: float = 0.9
    # Slowly changing references are recomputed every this long (in blocks: at least every one):
    # the tail factor, the variance reference and the typical counts hourly, the spreads every
    # 20 minutes. With 5-minute blocks that is a twelfth and a quarter of the work.
    reference_stride_ms: int = 3_600_000
    spread_stride_ms: int = 1_200_000

    min_tail_blocks: int = 10
    daily_periods: int = 4
    weekly_periods: int = 3
    seasonal_margin: float = 0.8
    weekly_margin: float = 0.9
    variance_dof: float = 20.0
    variance_pool: int = 12
    shift_blocks: int = 2
    shift_points: int = 6
    variance_blocks: int = 3
    min_points: int = 30
    min_blocks: int = 3
    flat_min_points: int = 5
    resolution: float = 1e-9

    def reference_stride(self, width_ms: int) -> int:
        return max(1, self.reference_stride_ms // width_ms)

    def spread_stride(self, width_ms: int) -> int:
        return max(1, self.spread_stride_ms // width_ms)

    def day_blocks(self, width_ms: int) -> int:
        """Blocks in the flat-rate, missing-rate and variance windows: a day, 14 to 288."""
        return min(288, max(14, DAY_MS // width_ms))

    def selection_blocks(self, width_ms: int) -> int:
        """Blocks over which the predictors' errors are compared: a week (so that a weekly
        pattern's weekend counts), at least 14."""
        return max(14, WEEK_MS // width_ms)

    def horizon(self, width_ms: int) -> int:
        """How far (in blocks) a new segment can change later results."""
        return (
            self.location_blocks
            + max(self.day_blocks(width_ms), self.selection_blocks(width_ms))
            + self.spread_blocks
            + self.tail_blocks
            + 2
        )


@dataclass(eq=False)
class BlockModel:
    """Per block position: the prediction made before it, and the tests once it is complete."""

    blocks: Blocks
    stats: BlockStats
    complete: int  # positions below this are complete blocks
    alpha: float
    tuning: Tuning
    expected: FloatArray = field(init=False)
    sigma: FloatArray = field(init=False)  # expected spread of one point
    tail: FloatArray = field(init=False)  # heavy-tail factor, >= 1
    season: IntArray = field(init=False)  # 0 trailing, 1 daily, 2 weekly
    judged: BoolArray = field(init=False)
    level_z: FloatArray = field(init=False)
    level_p: FloatArray = field(init=False)
    var_p: FloatArray = field(init=False)
    flat_p: FloatArray = field(init=False)
    flat_start: IntArray = field(init=False)  # first position of the flat run ending here
    var_start: IntArray = field(init=False)  # first position the variance test pooled
    interval: FloatArray = field(init=False)  # typical time between samples, ms
    missing_rate: FloatArray = field(init=False)  # share of expected samples recently missing
    shifts: list[tuple[int, int]] = field(default_factory=list)  # (first, confirmed) positions
    variance_changes: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        size = len(self.blocks)
        nan = np.full(size, np.nan)
        self.expected, self.sigma, self.tail = nan.copy(), nan.copy(), np.ones(size)
        self.season = np.zeros(size, dtype=np.int64)
        self.level_z, self.level_p = nan.copy(), np.ones(size)
        self.var_p, self.flat_p = np.ones(size), np.ones(size)
        self.flat_start = np.arange(size, dtype=np.int64)
        self.judged = np.zeros(size, dtype=bool)
        self.interval, self.missing_rate = nan.copy(), nan.copy()

    def flagged(self) -> BoolArray:
        """Complete blocks failing a test at `alpha`."""
        a = self.alpha
        return (
            calibration.below(self.level_p, a)
            | calibration.below(self.var_p, a)
            | (calibration.below(self.flat_p, a))
        )


def lookup(index: IntArray, target: IntArray) -> IntArray:
    """Positions of `target` block indices in the sorted `index`, -1 where absent."""
    pos = np.searchsorted(index, target)
    found = pos < index.size
    found[found] = index[pos[found]] == target[found]
    return np.where(found, pos, -1).astype(np.int64)


def chi2_median(dof: npt.ArrayLike) -> FloatArray:
    """The median of chi-square(k) / k (Wilson-Hilferty): the median of k-dof sample variances
    relative to the true variance, which a median of block variances must be divided by."""
    k = np.maximum(np.asarray(dof, dtype=np.float64), 1.0)
    return np.asarray((1.0 - 2.0 / (9.0 * k)) ** 3, dtype=np.float64)
