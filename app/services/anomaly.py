"""Anomaly detection over one series: pure, vectorized numpy functions (no database, no HTTP).

Every detector answers a `SeriesAnomalies`: how many points were analyzed, their population mean
and standard deviation (None for an empty series), and the positions and signed scores of the
points whose absolute score exceeds `threshold` (strictly).

- `zscore`: (x - mean) / stddev over the whole series (population stddev).
- `rolling_zscore`: each point against the points in the trailing window (t - lookback, t), the
  point itself excluded, so a level shift or a slow drift stops being flagged once the window has
  caught up. A point needs at least 2 points in its window to be scored.
- `mad`: robust z = 0.6745 * (x - median) / MAD, MAD the median absolute deviation from the median.
- `zscore_from_buckets`: the z-score of rollup bucket averages, the overall mean and stddev
  computed exactly from the buckets' stored count, sum and sum of squares.

A spread of zero (a constant series or window; for `mad`, more than half of the points equal),
one point or no point flags nothing. Nothing here emits numpy warnings: inputs are scaled by a
power of two (exact) so that no sum overflows, and every score stays finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

MAD_SCALE = 0.6745  # makes the MAD of normal data comparable with its standard deviation
_EPS = float(np.finfo(np.float64).eps)
# Spreads below this, relative to the largest magnitude in the input, count as zero: data cannot
# resolve them, and it keeps every score finite.
_MIN_SPREAD = 1e-140


@dataclass(frozen=True, eq=False)
class SeriesAnomalies:
    """The verdict on one series. `indices` are positions in the input arrays, ascending."""

    count: int
    mean: float | None
    stddev: float | None
    indices: IntArray
    zscores: FloatArray


def validate_threshold(threshold: float) -> float:
    """The threshold as a float; ValueError unless it is a finite positive number."""
    value = float(threshold)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"threshold must be a positive number, got {threshold!r}")
    return value


def zscore(values: npt.ArrayLike, threshold: float) -> SeriesAnomalies:
    """Points with |x - mean| / stddev > threshold, mean and population stddev of the series."""
    limit = validate_threshold(threshold)
    arr = _as_values(values)
    if arr.size == 0:
        return _empty()
    scale = _pow2_scale(float(np.max(np.abs(arr))))
    mean, std, dev = _moments(arr / scale)
    scores = dev / std if std > _MIN_SPREAD else None
    return _verdict(arr.size, mean * scale, std * scale, scores, limit)


def mad(values: npt.ArrayLike, threshold: float) -> SeriesAnomalies:
    """Points with |0.6745 * (x - median) / MAD| > threshold; mean and stddev reported as zscore."""
    limit = validate_threshold(threshold)
    arr = _as_values(values)
    if arr.size == 0:
        return _empty()
    scale = _pow2_scale(float(np.max(np.abs(arr))))
    scaled = arr / scale
    mean, std, _ = _moments(scaled)
    dev = scaled - float(np.median(scaled))
    spread = float(np.median(np.abs(dev)))
    scores = MAD_SCALE * dev / spread if spread > _MIN_SPREAD else None
    return _verdict(arr.size, mean * scale, std * scale, scores, limit)


def rolling_zscore(
    ts_ms: npt.ArrayLike, values: npt.ArrayLike, lookback_ms: int, threshold: float
) -> SeriesAnomalies:
    """Each point against the mean and population stddev of the points in (t - lookback, t).

    `ts_ms` must be ascending (epoch milliseconds). Points with fewer than 2 earlier points in their
    window, or a window of zero spread, are not scored. mean/stddev reported are the global ones.
    """
    limit = validate_threshold(threshold)
    if lookback_ms <= 0:
        raise ValueError(f"lookback must be positive, got {lookback_ms!r} ms")
    arr = _as_values(values)
    ts = np.asarray(ts_ms, dtype=np.int64)
    if ts.shape != arr.shape:
        raise ValueError("timestamps and values must have the same length")
    if arr.size == 0:
        return _empty()
    if np.any(ts[1:] < ts[:-1]):
        raise ValueError("timestamps must be ascending")
    # Any lookback longer than the series behaves alike; clamping keeps ts - lookback from wrapping.
    lookback = min(int(lookback_ms), int(ts[-1] - ts[0]) + 1)
    lo = np.searchsorted(ts, ts - lookback, side="right")
    hi = np.searchsorted(ts, ts, side="left")
    scale = _pow2_scale(float(np.max(np.abs(arr))))
    mean, std, centered = _moments(arr / scale)
    scores = _window_scores(centered, lo, hi)
    return _verdict(arr.size, mean * scale, std * scale, scores, limit)


def zscore_from_buckets(
    count: npt.ArrayLike,
    total: npt.ArrayLike,
    sumsq: npt.ArrayLike,
    avg_values: npt.ArrayLike,
    threshold: float,
) -> SeriesAnomalies:
    """Bucket averages scored against the overall mean and population stddev of the raw samples.

    The overall moments come exactly from the buckets' count, sum and sum of squares, as the
    within-bucket plus the between-bucket sum of squares. `count` in the answer is the number of raw
    samples (the sum of the bucket counts); `indices` are bucket positions. Buckets with a count of
    0 are ignored.
    """
    limit = validate_threshold(threshold)
    arrays = [np.asarray(a, dtype=np.float64) for a in (count, total, sumsq, avg_values)]
    if len({a.shape for a in arrays}) != 1 or arrays[0].ndim != 1:
        raise ValueError("count, sum, sumsq and avg must be one-dimensional and of one length")
    keep = np.flatnonzero(arrays[0] > 0)
    n_b, s_b, q_b, avg = (a[keep] for a in arrays)
    if keep.size == 0:
        return _empty()
    if not all(np.all(np.isfinite(a)) for a in (n_b, s_b, q_b, avg)):
        raise ValueError("bucket count, sum, sumsq and avg must be finite")
    peak = max(
        float(np.max(np.abs(s_b))),
        float(np.max(np.abs(avg))),
        math.sqrt(max(0.0, float(np.max(q_b)))),
    )
    scale = _pow2_scale(peak)
    mean, var = _pooled_moments(n_b, s_b / scale, q_b / scale / scale, avg / scale)
    std = math.sqrt(var)
    scores = (avg / scale - mean) / std if std > _MIN_SPREAD else None
    result = _verdict(int(n_b.sum()), mean * scale, std * scale, scores, limit)
    return SeriesAnomalies(
        result.count, result.mean, result.stddev, keep[result.indices], result.zscores
    )


def _as_values(values: npt.ArrayLike) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError("values must be one-dimensional")
    if not np.all(np.isfinite(arr)):
        raise ValueError("values must be finite numbers")
    return arr


def _pow2_scale(peak: float) -> float:
    """A power of two within a factor 2 of `peak`: dividing by it is exact and bounds |x| by 2."""
    if peak == 0.0:
        return 1.0
    _, exponent = math.frexp(peak)  # peak = m * 2**exponent with 0.5 <= m < 1
    return math.ldexp(1.0, exponent - 1)


def _moments(scaled: FloatArray) -> tuple[float, float, FloatArray]:
    """Mean, population stddev and deviations from the mean (corrected two-pass algorithm)."""
    if scaled[0] == scaled.min() == scaled.max():
        return float(scaled[0]), 0.0, np.zeros_like(scaled)
    mean = float(np.mean(scaled))
    dev = scaled - mean
    residual = float(np.mean(dev))  # the rounding error of the first mean, recovered
    dev -= residual
    return mean + residual, math.sqrt(float(np.mean(dev * dev))), dev


def _window_scores(centered: FloatArray, lo: IntArray, hi: IntArray) -> FloatArray:
    """Scores against the windows [lo, hi) from prefix sums; NaN where a point is not scored.

    A window's variance is trusted only above the worst-case rounding error of the prefix sums
    (a running sum of k terms is off by at most k * eps * the sum of their magnitudes), so a
    constant window inside a long, varying series never scores rounding noise.
    """
    scores = np.full(centered.shape, np.nan)
    rows = np.flatnonzero(hi - lo >= 2)
    if rows.size == 0:
        return scores
    zero = np.zeros(1)
    s1 = np.concatenate((zero, np.cumsum(centered)))
    s2 = np.concatenate((zero, np.cumsum(centered * centered)))
    a1 = np.concatenate((zero, np.cumsum(np.abs(centered))))
    lo_r, hi_r = lo[rows], hi[rows]
    n = (hi_r - lo_r).astype(np.float64)
    w_mean = (s1[hi_r] - s1[lo_r]) / n
    w_meansq = (s2[hi_r] - s2[lo_r]) / n
    var = w_meansq - w_mean * w_mean
    k = hi_r.astype(np.float64)
    err_mean = 2 * _EPS * k * a1[hi_r] / n
    err_meansq = 2 * _EPS * k * s2[hi_r] / n
    floor = 4 * (err_meansq + 2 * np.abs(w_mean) * err_mean + err_mean * err_mean)
    floor += 4 * _EPS * w_meansq + _MIN_SPREAD * _MIN_SPREAD
    trusted = var > floor
    rows = rows[trusted]
    scores[rows] = (centered[rows] - w_mean[trusted]) / np.sqrt(var[trusted])
    return scores


def _pooled_moments(
    n_b: FloatArray, s_b: FloatArray, q_b: FloatArray, avg: FloatArray
) -> tuple[float, float]:
    """Overall mean and population variance of the samples behind (scaled) bucket aggregates."""
    total_n = float(n_b.sum())
    mean = float(s_b.sum()) / total_n
    within = q_b - s_b * s_b / n_b
    # A bucket's stored sums carry up to ~n * eps relative rounding: below that, its spread is 0.
    within = np.where(within > 4 * _EPS * n_b * q_b, within, 0.0)
    between = n_b * (s_b / n_b - mean) ** 2
    var = float(within.sum() + between.sum()) / total_n
    # Bucket averages a few ulps apart are rounding, not spread.
    noise = 16 * _EPS * float(np.max(np.abs(avg)))
    return mean, var if var > noise * noise else 0.0


def _verdict(
    count: int, mean: float, std: float, scores: FloatArray | None, limit: float
) -> SeriesAnomalies:
    if scores is None:
        return SeriesAnomalies(count, mean, std, _no_indices(), np.empty(0))
    with np.errstate(invalid="ignore"):  # NaN marks unscored points: never above the limit
        indices = np.flatnonzero(np.abs(scores) > limit)
    return SeriesAnomalies(count, mean, std, indices, scores[indices].astype(np.float64))


def _no_indices() -> IntArray:
    return np.empty(0, dtype=np.intp)


def _empty() -> SeriesAnomalies:
    return SeriesAnomalies(0, None, None, _no_indices(), np.empty(0))
