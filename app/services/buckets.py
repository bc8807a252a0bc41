"""Bucket arithmetic: what a rollup bucket's stored aggregates (count, sum, sum of squares, min,
max) say about the samples in it. Pure numpy; shared by the rollup queries, the z-score over
rollups and the anomaly detector, so that every caller derives an average or a spread the same way.

A bucket's variance from its sums, `sumsq / n - mean**2`, loses every digit the mean has in common
with the samples: a bucket of values near 1e9 that vary by 0.1 has `sumsq / n` near 1e18, where one
rounding step is about 200. `resolved_variance` says where that rounding leaves nothing to trust.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
EPS = float(np.finfo(np.float64).eps)
# Relative rounding of a stored sum of squares (the database adds n terms one by one) below which
# a variance computed from the sums is noise. 8 eps covers the subtraction and a few ulps of the
# stored sums; beyond that the summation error grows with n, hence the factor n as well.
_ROUNDING_ULPS = 8.0


def bucket_avg_stddev(
    count: npt.ArrayLike, total: npt.ArrayLike, sumsq: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Average and population standard deviation per bucket, clamped at 0 where rounding makes
    the variance slightly negative. Buckets with a count of 0 give NaN."""
    n = np.asarray(count, dtype=np.float64)
    s = np.asarray(total, dtype=np.float64)
    q = np.asarray(sumsq, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        avg = s / n
        var = q / n - avg * avg
    return avg, np.sqrt(np.maximum(var, 0.0))  # NaN (empty buckets) stays NaN


def resolved_variance(
    count: npt.ArrayLike,
    total: npt.ArrayLike,
    sumsq: npt.ArrayLike,
    low: npt.ArrayLike,
    high: npt.ArrayLike,
) -> FloatArray:
    """Population variance per bucket from its sums; exactly 0 when min == max; NaN where the
    sums cannot resolve it (rounding of sumsq larger than the variance) or the count is 0."""
    n = np.asarray(count, dtype=np.float64)
    s = np.asarray(total, dtype=np.float64)
    q = np.asarray(sumsq, dtype=np.float64)
    lo = np.asarray(low, dtype=np.float64)
    hi = np.asarray(high, dtype=np.float64)
    out = np.full(n.shape, np.nan)
    ok = n > 0
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        mean = np.where(ok, s / np.where(ok, n, 1.0), 0.0)
        meansq = np.where(ok, q / np.where(ok, n, 1.0), 0.0)
        var = meansq - mean * mean
    noise = _ROUNDING_ULPS * EPS * np.maximum(n, 1.0) * np.abs(meansq)
    # The spread can never exceed half the range squared: a cheap second check on the sums.
    bound = 0.25 * (hi - lo) ** 2
    trusted = ok & np.isfinite(var) & (var > noise)
    out[trusted] = np.minimum(var[trusted], bound[trusted])
    out[ok & (lo == hi)] = 0.0
    return out


def trimmed(
    count: FloatArray, total: FloatArray, sumsq: FloatArray, low: FloatArray, high: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """count, sum and sum of squares without the samples one spike could be: the smallest and
    the largest where a bucket holds at least 8, the one farther from the mean where it holds 4
    to 7. One spike then moves neither the trimmed mean nor the trimmed spread. Smaller buckets
    are returned unchanged."""
    big = count >= 8
    mid = (count >= 4) & ~big
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    far = np.where(high - mean >= mean - low, high, low)
    n = np.where(big, count - 2, np.where(mid, count - 1, count))
    s = np.where(big, total - low - high, np.where(mid, total - far, total))
    q = np.where(big, sumsq - low * low - high * high, np.where(mid, sumsq - far * far, sumsq))
    return n, s, q
