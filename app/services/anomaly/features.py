"""The parts of the block model that depend on no baseline, computed once per fit: counts
before each block, the typical interval and missing rate, the flat-line runs (kept out of every
baseline), the seasonal profiles, and the pooled variance statistic."""

from __future__ import annotations

import numpy as np

from app.services.anomaly import calibration, windows
from app.services.anomaly.blocks import DAY_MS, WEEK_MS
from app.services.anomaly.model_types import (
    BlockModel,
    FloatArray,
    IntArray,
    lookup,
)


class Features:
    """Static per-block arrays of a BlockModel under construction (the fitter extends it)."""

    def __init__(self, model: BlockModel) -> None:
        self.m = model
        self.t = model.tuning
        b, s = model.blocks, model.stats
        size = len(b)
        self.size = size
        self.width = b.width_ms
        self.day = self.t.day_blocks(self.width)
        self.seg_loc = np.zeros(size, dtype=np.int64)
        self.seg_var = np.zeros(size, dtype=np.int64)
        done = np.arange(size) < model.complete
        counts = np.where(done, b.count, 0.0)
        self.points_before = np.concatenate(([0.0], np.cumsum(counts)[:-1]))
        self.blocks_before = np.concatenate(([0], np.cumsum(done)[:-1]))
        self.enough = (self.points_before >= self.t.min_points) & (
            self.blocks_before >= self.t.min_blocks
        )
        self.flat_rate = self._flat_rate()
        self.n_typical = self._typical_counts()
        self.magnitude = self._magnitude()
        # Flat-line blocks are found first (they depend on nothing the baselines decide) and
        # kept out of every baseline, so a stuck stretch teaches the model nothing.
        self._flat_runs()
        self.usable = done & ~calibration.below(model.flat_p, model.alpha)
        self.loc = np.where(self.usable, s.location, np.nan)
        self.phase_positions: dict[str, IntArray] = {}
        self.seasonal = self._seasonal_profiles()
        self.var_groups = self._variance_groups()
        self.m.var_start = np.arange(size, dtype=np.int64) - self.var_groups + 1
        self.log_var = self._pooled_log_variance()
        self.errors = {key: np.full(size, np.nan) for key in ("trailing", *self.seasonal)}
        self.candidates = {key: np.full(size, np.nan) for key in self.errors}
        self.chosen_error = np.full(size, np.nan)
        self.pred_var = np.full(size, np.nan)
        self.within = np.full(size, np.nan)

    def _seasonal_profiles(self) -> dict[str, FloatArray]:
        """Per candidate period, the median location of the same phase in the last periods."""
        profiles: dict[str, FloatArray] = {}
        index = self.m.blocks.index
        for name, period_ms, periods in (
            ("daily", DAY_MS, self.t.daily_periods),
            ("weekly", WEEK_MS, self.t.weekly_periods),
        ):
            step = period_ms // self.width
            if step < 4 or index.size == 0 or index[-1] - index[0] < 2 * step:
                continue
            rows = np.full((index.size, periods), np.nan)
            near = np.full((index.size, 3 * periods), -1, dtype=np.int64)
            for back in range(1, periods + 1):
                for shift in (-1, 0, 1):
                    pos = lookup(index, index - back * step + shift)
                    near[:, 3 * (back - 1) + shift + 1] = pos
                    if shift == 0:
                        found = pos >= 0
                        rows[found, back - 1] = self.loc[pos[found]]
            median, count = windows.median_rows(rows)
            median[count < 2] = np.nan
            profiles[name] = median
            self.phase_positions[name] = near
        return profiles

    def _flat_rate(self) -> FloatArray:
        """How often the series had a flat block over the last day of blocks (Laplace-smoothed)."""
        done = np.arange(self.size) < self.m.complete
        eligible = done & ((self.m.blocks.count >= 2) | self.m.stats.flat)
        flat = np.where(eligible, self.m.stats.flat.astype(np.float64), np.nan)
        total, count = windows.window_sum(flat, 0, self.size, self.day)
        return (total + 0.5) / (count + 1.0)

    def _typical_counts(self) -> FloatArray:
        """The median sample count of the recent complete blocks; from it the typical interval
        and how much of what was expected over the last day is missing."""
        b = self.m.blocks
        done = np.arange(self.size) < self.m.complete
        counts = np.where(done, b.count, np.nan)
        at, which = windows.anchors(b.index, 0, self.size, self.t.reference_stride(self.width))
        rows = windows.trailing_valid_at(counts, at, self.t.spread_blocks)
        typical = windows.median_rows(rows)[0][which]
        typical = np.maximum(np.nan_to_num(typical, nan=1.0), 1.0)
        self.m.interval[:] = self.width / typical
        received, present = windows.window_sum(counts, 0, self.size, self.day)
        first = np.maximum(np.arange(self.size) - self.day, 0)
        span = np.where(present > 0, b.index - b.index[first], 0).astype(np.float64)
        # The span from the window's first block to this one, this one excluded.
        expected = span * typical
        with np.errstate(invalid="ignore", divide="ignore"):
            missing = np.clip(1.0 - received / expected, 0.0, 1.0)
        self.m.missing_rate[:] = np.where(expected > 0, missing, np.nan)
        return typical

    def _magnitude(self) -> FloatArray:
        """The largest magnitude among the recent blocks: what the resolution floor of the
        spread is relative to (a counter at 0 whose values are 0 or 1 resolves 1e-9, not 1e-300).
        """
        b = self.m.blocks
        done = np.arange(self.size) < self.m.complete
        peak = np.where(done, np.maximum(np.abs(b.high), np.abs(b.low)), np.nan)
        at, which = windows.anchors(b.index, 0, self.size, self.t.spread_stride(self.width))
        rows = windows.trailing_valid_at(peak, at, self.t.spread_blocks)
        return np.nan_to_num(windows.quantile_rows(rows, 1.0)[0][which])

    def _variance_groups(self) -> IntArray:
        """How many blocks the variance test pools at each position: enough for about
        `variance_dof` degrees of freedom, at most `variance_pool` blocks."""
        dof = np.maximum(np.nan_to_num(self.m.stats.trimmed_count, nan=1.0) - 1.0, 1.0)
        index = self.m.blocks.index
        at, which = windows.anchors(index, 0, self.size, self.t.reference_stride(self.width))
        rows = windows.trailing_valid_at(dof, at, self.t.spread_blocks)
        typical = windows.median_rows(rows)[0][which]
        typical = np.nan_to_num(typical, nan=1.0)
        groups = np.ceil(self.t.variance_dof / np.maximum(typical, 1.0))
        groups = np.clip(groups, 1, self.t.variance_pool).astype(np.int64)
        return np.minimum(groups, np.arange(self.size) + 1)

    def _pooled_log_variance(self) -> FloatArray:
        """log of the pooled trimmed variance of the last `var_groups` blocks at each position
        (NaN where they hold fewer than 3 degrees of freedom). Depends on no baseline."""
        s = self.m.stats
        dof = np.where(self.usable & (s.trimmed_count >= 3), s.trimmed_count - 1.0, 0.0)
        dof = np.nan_to_num(dof)
        weighted = np.cumsum(np.concatenate(([0.0], dof * np.nan_to_num(s.trimmed_var))))
        total = np.cumsum(np.concatenate(([0.0], dof)))
        end = np.arange(self.size) + 1
        start = end - self.var_groups
        pooled_dof = total[end] - total[start]
        with np.errstate(invalid="ignore", divide="ignore"):
            pooled = (weighted[end] - weighted[start]) / pooled_dof
            out: FloatArray = np.log(pooled)
        out[(pooled_dof < 3) | ~np.isfinite(out)] = np.nan
        return out

    def _flat_runs(self) -> None:
        """Runs of flat blocks holding one value, and how unlikely each is: the flat-block rate
        before the run, to the power of the run's length in blocks."""
        s, b = self.m.stats, self.m.blocks
        flat = s.flat & (np.arange(self.size) < self.m.complete)
        cont = np.zeros(self.size, dtype=bool)
        cont[1:] = flat[1:] & flat[:-1] & (b.low[1:] == b.low[:-1]) & (np.diff(b.index) == 1)
        starts = np.flatnonzero(flat & ~cont)
        start_of = np.full(self.size, -1, dtype=np.int64)
        if starts.size:
            owner = np.searchsorted(starts, np.arange(self.size), side="right") - 1
            ok = (owner >= 0) & flat
            start_of[ok] = starts[owner[ok]]
        run_blocks = np.where(start_of >= 0, np.arange(self.size) - start_of + 1, 0)
        points = np.concatenate(([0.0], np.cumsum(b.count)))
        run_points = np.where(
            start_of >= 0, points[np.arange(self.size) + 1] - points[np.maximum(start_of, 0)], 0
        )
        rate = self.flat_rate[np.maximum(start_of, 0)]
        with np.errstate(divide="ignore", over="ignore", under="ignore"):
            p = np.where(
                (start_of >= 0) & (run_points >= self.t.flat_min_points),
                np.exp(run_blocks * np.log(rate)),
                1.0,
            )
        p[~self.enough[np.maximum(start_of, 0)]] = 1.0
        self.m.flat_p[:] = p
        self.m.flat_start[:] = np.where(start_of >= 0, start_of, np.arange(self.size))
