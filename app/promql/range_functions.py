"""Functions over range vectors (`rate`, `*_over_time`, ...), vectorized over series and steps.

Each function takes the range vector, the window bounds `lo`, `hi` (K, N) of every series at
every step, the values of its scalar arguments per step, and the evaluation times; it returns
the result values and where they exist. Semantics follow Prometheus 3 (promql/functions.go):
windows are left-open `(end - range, end]`, stale markers are not in them, `rate` and friends
extrapolate as described in docs/promql.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from app.promql import windows
from app.promql.values import RangeVector

Result = tuple[np.ndarray, np.ndarray]  # values (K, N), present (K, N)


@dataclass
class Windows:
    rv: RangeVector
    lo: np.ndarray
    hi: np.ndarray
    params: list[np.ndarray]  # scalar arguments, (N,) each
    step_times: np.ndarray  # (N,) evaluation times (ms)

    @property
    def count(self) -> np.ndarray:
        out: np.ndarray = self.hi - self.lo
        return out

    def at(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Timestamps and values at flat indices (clipped; mask the result yourself)."""
        safe = np.clip(index, 0, max(self.rv.ts.size - 1, 0))
        if self.rv.ts.size == 0:
            zeros = np.zeros(index.shape)
            return zeros.astype(np.int64), zeros
        return self.rv.ts[safe], self.rv.values[safe]


def extrapolated_rate(w: Windows, is_counter: bool, is_rate: bool) -> Result:
    """rate, increase and delta (Prometheus 3's extrapolatedRate for float samples)."""
    n = w.count
    ok = n >= 2
    t0, v0 = w.at(w.lo)
    t1, v1 = w.at(w.hi - 1)
    with np.errstate(all="ignore"):
        result = v1 - v0
        if is_counter:
            prev, has_prev = windows.previous_in_series(w.rv.values, w.rv.starts)
            added = np.where(has_prev & (w.rv.values < prev), prev, 0.0)
            second = np.minimum(w.lo + 1, w.hi)
            result = result + windows.reduce(np.add, added, second, w.hi, empty=0.0)
        ends = w.rv.ends[None, :]
        to_start = (t0 - (ends - w.rv.range_ms)) / 1000
        to_end = (ends - t1) / 1000
        sampled = (t1 - t0) / 1000
        average = sampled / np.maximum(n - 1, 1)
        threshold = average * 1.1
        to_start = np.where(to_start >= threshold, average / 2, to_start)
        if is_counter:
            to_zero = np.where((result > 0) & (v0 >= 0), sampled * (v0 / result), to_start)
            to_start = np.where(to_zero < to_start, to_zero, to_start)
        to_end = np.where(to_end >= threshold, average / 2, to_end)
        factor = (sampled + to_start + to_end) / sampled
        if is_rate:
            factor = factor / (w.rv.range_ms / 1000)
        return np.where(ok, result * factor, 0.0), ok


def instant_value(w: Windows, is_rate: bool) -> Result:
    """irate and idelta: the last two samples of each window."""
    ok = w.count >= 2
    t0, v0 = w.at(w.hi - 2)
    t1, v1 = w.at(w.hi - 1)
    with np.errstate(all="ignore"):
        if is_rate:
            delta = np.where(v1 < v0, v1, v1 - v0)
            result = delta / ((t1 - t0) / 1000)
        else:
            result = v1 - v0
    return np.where(ok, result, 0.0), ok


def _present(w: Windows) -> np.ndarray:
    return w.count >= 1


def sum_over_time(w: Windows) -> Result:
    return windows.reduce(np.add, w.rv.values, w.lo, w.hi, 0.0), _present(w)


def count_over_time(w: Windows) -> Result:
    return w.count.astype(np.float64), _present(w)


def avg_over_time(w: Windows) -> Result:
    n = w.count
    total = windows.reduce(np.add, w.rv.values, w.lo, w.hi, 0.0)
    with np.errstate(all="ignore"):
        mean = total / n
        # A sum that overflows although the values are finite: the mean from scaled values,
        # as Prometheus switches to an incremental mean then.
        overflow = np.isinf(total)
        if overflow.any():
            finite = np.where(np.isfinite(w.rv.values), w.rv.values, 0.0)
            infinite = windows.reduce(
                np.add, (~np.isfinite(w.rv.values)).astype(np.float64), w.lo, w.hi, 0.0
            )
            scaled = windows.reduce(np.add, finite * 2.0**-600, w.lo, w.hi, 0.0)
            fix = overflow & (infinite == 0)
            mean = np.where(fix, scaled / n * 2.0**600, mean)
    return np.where(n > 0, mean, 0.0), _present(w)


def min_over_time(w: Windows) -> Result:
    return windows.reduce(np.fmin, w.rv.values, w.lo, w.hi), _present(w)


def max_over_time(w: Windows) -> Result:
    return windows.reduce(np.fmax, w.rv.values, w.lo, w.hi), _present(w)


def last_over_time(w: Windows) -> Result:
    _, values = w.at(w.hi - 1)
    return values, _present(w)


def present_over_time(w: Windows) -> Result:
    ok = _present(w)
    return ok.astype(np.float64), ok


def _variance(w: Windows) -> np.ndarray:
    """Population variance per window, two-pass (mean first, then squared deviations)."""
    out = np.zeros(w.lo.size)
    values = w.rv.values
    for batch in windows.expanded(w.lo, w.hi):
        x = values[batch.index]
        with np.errstate(all="ignore"):
            mean = batch.reduce_sum(x) / batch.counts
            deviation = x - mean[batch.window_of]
            out[batch.windows] = batch.reduce_sum(deviation * deviation) / batch.counts
    return out.reshape(w.lo.shape)


def stdvar_over_time(w: Windows) -> Result:
    return _variance(w), _present(w)


def stddev_over_time(w: Windows) -> Result:
    return np.sqrt(_variance(w)), _present(w)


def sorted_quantile(
    sorted_values: np.ndarray, offsets: np.ndarray, counts: np.ndarray, q: np.ndarray
) -> np.ndarray:
    """Prometheus' quantile() of each sorted segment (NaN first), q per segment."""
    n = counts.astype(np.float64)
    with np.errstate(all="ignore"):
        rank = q * (n - 1)
        lower = np.clip(np.floor(rank), 0, None)
        upper = np.minimum(n - 1, lower + 1)
        weight = rank - np.floor(rank)
        lower_i = offsets + np.nan_to_num(lower, nan=0).astype(np.int64)
        upper_i = offsets + np.nan_to_num(upper, nan=0).astype(np.int64)
        last = offsets + counts - 1
        lower_v = sorted_values[np.minimum(lower_i, last)]
        upper_v = sorted_values[np.minimum(upper_i, last)]
        out = lower_v * (1 - weight) + upper_v * weight
    out = np.where(q < 0, -np.inf, out)
    out = np.where(q > 1, np.inf, out)
    return np.where(np.isnan(q), np.nan, out)


def quantile_over_time(w: Windows) -> Result:
    q_per_step = w.params[0]
    out = np.zeros(w.lo.size)
    steps = w.lo.shape[1] if w.lo.ndim == 2 else 1
    values = w.rv.values
    for batch in windows.expanded(w.lo, w.hi):
        x = values[batch.index]
        # Sorted within each window, NaN first as in Prometheus' vectorByValueHeap.
        order = np.lexsort((x, ~np.isnan(x), batch.window_of))
        q = q_per_step[batch.windows % steps]
        out[batch.windows] = sorted_quantile(x[order], batch.offsets, batch.counts, q)
    return out.reshape(w.lo.shape), _present(w)


def _counted_changes(w: Windows, changed: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Result:
    values = w.rv.values
    prev, has_prev = windows.previous_in_series(values, w.rv.starts)
    increments = (has_prev & changed(values, prev)).astype(np.int64)
    counted = windows.prefix_difference(increments, np.minimum(w.lo + 1, w.hi), w.hi)
    return counted.astype(np.float64), _present(w)


def changes(w: Windows) -> Result:
    return _counted_changes(w, lambda v, p: (v != p) & ~(np.isnan(v) & np.isnan(p)))


def resets(w: Windows) -> Result:
    return _counted_changes(w, lambda v, p: v < p)


def _regression(w: Windows, relative_to_step: bool) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares slope and intercept per window (Prometheus' linearRegression), x in
    seconds relative to the window's first sample or to the evaluation time."""
    slope = np.zeros(w.lo.size)
    intercept = np.zeros(w.lo.size)
    steps = w.lo.shape[1]
    ts, values = w.rv.ts, w.rv.values
    for batch in windows.expanded(w.lo, w.hi):
        y = values[batch.index]
        t = ts[batch.index]
        if relative_to_step:
            origin = w.step_times[batch.windows % steps][batch.window_of]
        else:
            origin = t[batch.offsets][batch.window_of]
        x = (t - origin) / 1000
        n = batch.counts.astype(np.float64)
        with np.errstate(all="ignore"):
            sum_x, sum_y = batch.reduce_sum(x), batch.reduce_sum(y)
            sum_xy, sum_x2 = batch.reduce_sum(x * y), batch.reduce_sum(x * x)
            cov = sum_xy - sum_x * sum_y / n
            var = sum_x2 - sum_x * sum_x / n
            b_slope = cov / var
            b_intercept = sum_y / n - b_slope * sum_x / n
        first = y[batch.offsets]
        differs = np.add.reduceat((y != first[batch.window_of]).astype(np.int64), batch.offsets)
        constant = differs == 0
        infinite = np.isinf(first)
        b_slope = np.where(constant, np.where(infinite, np.nan, 0.0), b_slope)
        b_intercept = np.where(constant, np.where(infinite, np.nan, first), b_intercept)
        slope[batch.windows], intercept[batch.windows] = b_slope, b_intercept
    return slope.reshape(w.lo.shape), intercept.reshape(w.lo.shape)


def deriv(w: Windows) -> Result:
    slope, _ = _regression(w, relative_to_step=False)
    return slope, w.count >= 2


def predict_linear(w: Windows) -> Result:
    slope, intercept = _regression(w, relative_to_step=True)
    with np.errstate(all="ignore"):
        return slope * w.params[0][None, :] + intercept, w.count >= 2


RANGE_FUNCTIONS: dict[str, Callable[[Windows], Result]] = {
    "rate": lambda w: extrapolated_rate(w, is_counter=True, is_rate=True),
    "increase": lambda w: extrapolated_rate(w, is_counter=True, is_rate=False),
    "delta": lambda w: extrapolated_rate(w, is_counter=False, is_rate=False),
    "irate": lambda w: instant_value(w, is_rate=True),
    "idelta": lambda w: instant_value(w, is_rate=False),
    "sum_over_time": sum_over_time,
    "count_over_time": count_over_time,
    "avg_over_time": avg_over_time,
    "min_over_time": min_over_time,
    "max_over_time": max_over_time,
    "last_over_time": last_over_time,
    "present_over_time": present_over_time,
    "stddev_over_time": stddev_over_time,
    "stdvar_over_time": stdvar_over_time,
    "quantile_over_time": quantile_over_time,
    "changes": changes,
    "resets": resets,
    "deriv": deriv,
    "predict_linear": predict_linear,
}
# Functions whose result keeps the metric name (they act like an offset).
KEEP_NAME = frozenset({"last_over_time"})
# The position of the range vector among the arguments, where it is not the first.
MATRIX_ARGUMENT = {"quantile_over_time": 1}
