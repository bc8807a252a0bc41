"""The block-level model of the causal detector: what each block should look like, judged only
from the blocks before it, and whether it did. Pure and vectorized; docs/anomaly-detection.md
gives the reasoning behind every choice.

For block k (positions into the sparse array of non-empty blocks):
- predictors from earlier blocks: the trailing median of the last K block locations (within the
  current level segment), and for daily and weekly periods the median of the same phase in the
  last periods plus the trailing median offset from it;
- the predictor chosen is the one with the smallest recent error (geometric mean over the last
  week of blocks), seasonal only when clearly better than the trailing one;
- the expected spread of a point: within-block spread plus the predictor's own error, both from
  the trailing blocks (medians), with a resolution floor;
- a heavy-tail factor >= 1: how much larger the recent blocks' largest deviations were than the
  same number of normal samples would give;
- tests on complete blocks: the robust block mean against the prediction (level), the trimmed
  spread against the recent ones (variance), and runs of flat blocks against how often the series
  is flat (flat-line). Two or more consecutive level deviations of one sign confirm a level shift,
  three variance deviations a variance change; both start a new segment, so the baseline re-learns
  instead of flagging the new level for hours.
"""

from __future__ import annotations

import math

import numpy as np

from app.services.anomaly import calibration, windows
from app.services.anomaly.blocks import Blocks, block_stats
from app.services.anomaly.features import Features
from app.services.anomaly.model_types import (
    MAD_EFFICIENCY,
    MAD_TO_SIGMA,
    VARIANCE_RISE,
    BlockModel,
    BoolArray,
    FloatArray,
    IntArray,
    Tuning,
    chi2_median,
)

__all__ = ["BlockModel", "Tuning", "fit"]


def fit(blocks: Blocks, complete: int, alpha: float, tuning: Tuning | None = None) -> BlockModel:
    """The model over `blocks`, the first `complete` of them complete (the rest still filling)."""
    model = BlockModel(blocks, block_stats(blocks), complete, alpha, tuning or Tuning())
    if len(blocks) == 0:
        return model
    _Fitter(model).run()
    return model


class _Fitter(Features):
    """Computes a BlockModel range by range, re-running the ranges a new segment changes."""

    def run(self) -> None:
        self.compute(0, self.size)
        pos = 0
        while True:
            found = self._first_confirmation(pos)
            if found is None:
                return
            kind, first, confirmed = found
            if kind == "shift":
                self.m.shifts.append((first, confirmed))
                self.seg_loc[confirmed + 1 :] = first
            else:
                self.m.variance_changes.append((first, confirmed))
                self.seg_var[confirmed + 1 :] = first
            end = min(self.size, confirmed + 1 + self.t.horizon(self.width))
            if confirmed + 1 < end:
                self.compute(confirmed + 1, end)
            pos = confirmed + 1

    # -- one range --------------------------------------------------------------------------

    def compute(self, p0: int, p1: int) -> None:
        self._predict(p0, p1)
        self._choose(p0, p1)
        self._spread(p0, p1)
        self._tail(p0, p1)
        self._tests(p0, p1)

    def _predict(self, p0: int, p1: int) -> None:
        k = self.t.location_blocks
        rows = windows.trailing_valid(self.loc, p0, p1, k, self.seg_loc)
        trailing, _ = windows.median_rows(rows)
        self.candidates["trailing"][p0:p1] = trailing
        for name, profile in self.seasonal.items():
            offsets = windows.trailing_valid(self.loc - profile, p0, p1, k, self.seg_loc)
            offset, _ = windows.median_rows(offsets)
            self.candidates[name][p0:p1] = profile[p0:p1] + offset
        for name, values in self.candidates.items():
            self.errors[name][p0:p1] = np.abs(self.loc[p0:p1] - values[p0:p1])

    def _choose(self, p0: int, p1: int) -> None:
        trailing = self.candidates["trailing"][p0:p1]
        expected = trailing.copy()
        season = np.zeros(p1 - p0, dtype=np.int64)
        best = np.ones(p1 - p0)
        for code, name in ((1, "daily"), (2, "weekly")):
            if name not in self.seasonal:
                continue
            ratio = self._error_ratio(name, p0, p1)
            margin = self.t.seasonal_margin if code == 1 else self.t.weekly_margin
            limit = np.minimum(self.t.seasonal_margin, margin * best)
            candidate = self.candidates[name][p0:p1]
            better = (ratio < limit) & ~np.isnan(candidate)
            expected = np.where(better, candidate, expected)
            season = np.where(better, code, season)
            best = np.where(better, ratio, best)
        self.m.expected[p0:p1] = expected
        self.m.season[p0:p1] = season

    def _error_ratio(self, name: str, p0: int, p1: int) -> FloatArray:
        """Geometric mean of a seasonal predictor's errors over the trailing week, divided by the
        trailing predictor's over the same blocks; NaN with fewer than half a day of both."""
        ours, theirs = self.errors[name], self.errors["trailing"]
        both = ~np.isnan(ours) & ~np.isnan(theirs)
        tiny = self.t.resolution * np.abs(np.nan_to_num(self.loc)) + 1e-300
        log_ours = np.where(both, np.log(np.where(both, ours, 1.0) + tiny), np.nan)
        log_theirs = np.where(both, np.log(np.where(both, theirs, 1.0) + tiny), np.nan)
        week = self.t.selection_blocks(self.width)
        sum_ours, count = windows.window_sum(log_ours, p0, p1, week)
        sum_theirs, _ = windows.window_sum(log_theirs, p0, p1, week)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            ratio = np.exp((sum_ours - sum_theirs) / count)
        ratio[count < max(7, self.day // 2)] = np.nan
        return ratio

    def _spread(self, p0: int, p1: int) -> None:
        ks = self.t.spread_blocks
        expected = self.m.expected[p0:p1]
        self.chosen_error[p0:p1] = np.abs(self.loc[p0:p1] - expected)
        stride = self.t.spread_stride(self.width)
        at, which = windows.anchors(self.m.blocks.index, p0, p1, stride, self.seg_var)
        err_rows = windows.trailing_valid_at(self.chosen_error, at, ks, self.seg_var)
        err_median, err_count = windows.median_rows(err_rows)
        err_median, err_count = err_median[which], err_count[which]
        sigma_b = np.maximum(MAD_TO_SIGMA * err_median, self._phase_error(p0, p1))
        within = np.where(self.usable, self.m.stats.spread, np.nan)
        within_rows = windows.trailing_valid_at(within, at, ks, self.seg_var)
        sigma_w = windows.median_rows(within_rows)[0][which]
        n_typical = self.n_typical[p0:p1]
        sigma_w = sigma_w / np.sqrt(chi2_median(n_typical - 1.0))
        single = n_typical < 2
        unresolved = np.isnan(sigma_w) & ~single
        sigma_w = np.where(single, 0.0, sigma_w)
        sigma_w = np.where(unresolved, sigma_b * np.sqrt(n_typical), sigma_w)
        pred_var = np.maximum(sigma_b**2 - np.where(unresolved, 0.0, sigma_w**2 / n_typical), 0.0)
        pred_var = np.where(unresolved, 0.0, pred_var)
        floor = self.t.resolution * np.maximum(np.abs(expected), self.magnitude[p0:p1]) + 1e-300
        sigma = np.maximum(np.sqrt(sigma_w**2 + pred_var), floor)
        sigma[np.isnan(expected) | (err_count == 0)] = np.nan
        self.m.sigma[p0:p1] = sigma
        self.pred_var[p0:p1] = pred_var
        self.within[p0:p1] = sigma_w

    def _phase_error(self, p0: int, p1: int) -> FloatArray:
        """The chosen seasonal predictor's error spread at the same phase of earlier periods
        (and the blocks beside it): a daily curve is harder to predict at its steep morning rise
        than at night, and the trailing error spread would miss that."""
        out = np.zeros(p1 - p0)
        season = self.m.season[p0:p1]
        for code, name in ((1, "daily"), (2, "weekly")):
            rows = np.flatnonzero(season == code)
            if rows.size == 0 or name not in self.phase_positions:
                continue
            near = self.phase_positions[name][p0 + rows]
            values = np.where(near >= 0, self.chosen_error[np.maximum(near, 0)], np.nan)
            median, count = windows.median_rows(values)
            out[rows] = np.where(count >= 4, MAD_TO_SIGMA * median, 0.0)
        return np.nan_to_num(out)

    def _tail(self, p0: int, p1: int) -> None:
        """The spread the recent blocks' extremes imply: the 90th percentile, over the trailing
        blocks, of each block's largest deviation from its prediction divided by what that
        quantile is for as many normal samples. Where it exceeds the modelled spread, the ratio
        is the heavy-tail factor (>= 1). Comparing deviations, not scores, keeps it independent
        of how the modelled spread itself moved."""
        b = self.m.blocks
        lo = max(0, p0 - self.t.tail_blocks)
        sl = slice(lo, p1)
        with np.errstate(invalid="ignore", divide="ignore"):
            dev = np.maximum(
                np.abs(b.high[sl] - self.m.expected[sl]), np.abs(b.low[sl] - self.m.expected[sl])
            )
            implied = dev / calibration.max_abs_quantile(b.count[sl], self.t.tail_quantile)
        implied[~self.usable[sl] | np.isnan(self.m.sigma[sl])] = np.nan
        full = np.full(self.size, np.nan)
        full[sl] = implied
        at, which = windows.anchors(
            self.m.blocks.index, p0, p1, self.t.reference_stride(self.width)
        )
        rows = windows.trailing_valid_at(full, at, self.t.tail_blocks)
        quantile, count = windows.quantile_rows(rows, self.t.tail_quantile)
        quantile, count = quantile[which], count[which]
        with np.errstate(invalid="ignore", divide="ignore"):
            factor = quantile / self.m.sigma[p0:p1]
        self.m.tail[p0:p1] = np.maximum(np.nan_to_num(factor, nan=1.0, posinf=1.0), 1.0)
        # A verdict needs the calibration too: enough blocks to know how heavy the tails are.
        calibrated = count >= self.t.min_tail_blocks
        self.m.judged[p0:p1] = self.enough[p0:p1] & ~np.isnan(self.m.sigma[p0:p1]) & calibrated

    def _tests(self, p0: int, p1: int) -> None:
        s = self.m.stats
        sl = slice(p0, p1)
        done = (np.arange(p0, p1) < self.m.complete) & self.m.judged[sl]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_var = self.pred_var[sl] + self.within[sl] ** 2 / np.maximum(s.trimmed_count[sl], 1)
            floor = self.m.sigma[sl] ** 2 * 1e-18
            z = (s.location[sl] - self.m.expected[sl]) / np.sqrt(np.maximum(mean_var, floor))
        z = np.where(done, z, np.nan)
        self.m.level_z[sl] = z
        # The heavy-tail factor is about single samples; a mean of n of them is closer to normal.
        factor = 1.0 + (self.m.tail[sl] - 1.0) / np.sqrt(np.maximum(s.trimmed_count[sl], 1.0))
        # The error spread is a median of `spread_blocks` errors: about 37% as efficient as a
        # standard deviation, so the score follows t with that many fewer degrees of freedom.
        dof = MAD_EFFICIENCY * self.t.spread_blocks
        t = calibration.student_to_normal(np.nan_to_num(z) / factor, dof)
        p_level = calibration.two_sided_p(t)
        self.m.level_p[sl] = np.where(done, p_level, 1.0)
        self._variance_test(p0, p1, done)

    def _variance_test(self, p0: int, p1: int, done: BoolArray) -> None:
        """The log of the pooled spread of the last blocks against the same statistic over the
        last day (median and MAD): distribution-free, so neither few samples per block nor
        correlated noise make it overconfident."""
        sl = slice(p0, p1)
        stride = self.t.reference_stride(self.width)
        at, which = windows.anchors(self.m.blocks.index, p0, p1, stride, self.seg_var)
        rows = windows.trailing_valid_at(self.log_var, at, self.day, self.seg_var)
        center, count = windows.median_rows(rows)
        spread, _ = windows.median_rows(np.abs(rows - center[:, None]))
        center, count, spread = center[which], count[which], spread[which]
        with np.errstate(invalid="ignore", divide="ignore"):
            z = (self.log_var[sl] - center) / (MAD_TO_SIGMA * spread)
        testable = done & (count >= self.t.min_tail_blocks) & (spread > 0) & np.isfinite(z)
        z = calibration.student_to_normal(np.nan_to_num(z), max(3.0, MAD_EFFICIENCY * self.day / 4))
        self.m.var_p[sl] = np.where(testable, calibration.upper_p(z), 1.0)
        self._variance_starts(p0, p1, center)

    def _variance_starts(self, p0: int, p1: int, center: FloatArray) -> None:
        """Where a flagged variance change began: the first block of the pooled group whose
        own variance is VARIANCE_RISE times the typical one (not simply the group's first block).
        """
        flagged = p0 + np.flatnonzero(calibration.below(self.m.var_p[p0:p1], self.m.alpha))
        own = np.log(np.maximum(np.nan_to_num(self.m.stats.trimmed_var), 1e-300))
        for p in flagged.tolist():
            first = p - int(self.var_groups[p]) + 1
            typical = center[p - p0] + math.log(VARIANCE_RISE)
            above = np.flatnonzero(own[first : p + 1] > typical)
            self.m.var_start[p] = first + (int(above[0]) if above.size else 0)

    # -- confirmations ----------------------------------------------------------------------

    def _first_confirmation(self, pos: int) -> tuple[str, int, int] | None:
        shift = self._first_chain(
            pos, self._level_signs(), self.t.shift_blocks, self.t.shift_points
        )
        var_sign = calibration.below(self.m.var_p, self.m.alpha).astype(np.int64)
        variance = self._first_chain(pos, var_sign, self.t.variance_blocks, 0)
        options = [("shift", *shift)] if shift else []
        if variance:
            options.append(("variance", *variance))
        if not options:
            return None
        return min(options, key=lambda option: option[2])

    def _level_signs(self) -> IntArray:
        signs = np.sign(np.nan_to_num(self.m.level_z)).astype(np.int64)
        return np.where(calibration.below(self.m.level_p, self.m.alpha), signs, 0)

    def _first_chain(
        self, pos: int, signs: IntArray, blocks: int, points: int
    ) -> tuple[int, int] | None:
        """The first chain of >= `blocks` adjacent flagged blocks of one sign (holding >= `points`
        samples) that ends at or after `pos` and starts at or after it: (first, last) positions."""
        part = signs[pos:]
        if part.size == 0:
            return None
        index = self.m.blocks.index[pos:]
        cont = np.zeros(part.size, dtype=bool)
        cont[1:] = (part[1:] != 0) & (part[1:] == part[:-1]) & (np.diff(index) <= 2)
        starts = np.flatnonzero((part != 0) & ~cont)
        if starts.size == 0:
            return None
        owner = np.searchsorted(starts, np.arange(part.size), side="right") - 1
        start_of = np.where((owner >= 0) & (part != 0), starts[np.maximum(owner, 0)], -1)
        length = np.arange(part.size) - start_of + 1
        counts = np.concatenate(([0.0], np.cumsum(self.m.blocks.count[pos:])))
        held = counts[np.arange(part.size) + 1] - counts[np.maximum(start_of, 0)]
        ok = (start_of >= 0) & (length >= blocks) & (held >= points)
        hits = np.flatnonzero(ok)
        if hits.size == 0:
            return None
        last = int(hits[0])
        return pos + int(start_of[last]), pos + last


def z_threshold(alpha: float) -> float:
    """The two-sided normal score whose tail is alpha."""
    return calibration.z_for_p(alpha) if 0 < alpha < 1 else math.inf
