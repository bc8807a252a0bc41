"""The classic detectors over one series: pure, vectorized numpy functions (no database, no HTTP).

Every detector answers a `SeriesAnomalies`: how many points were analyzed, their population mean
and standard deviation (None for an empty series), and the positions and signed scores of the
points whose absolute score exceeds `threshold` (strictly; scores within `TIE_TOLERANCE` of the
threshold count as equal to it, since rounding cannot tell them apart).

- `zscore`: (x - mean) / stddev over the whole series (population stddev).
- `rolling_zscore`: each point against the points in the trailing window (t - lookback, t), the
  point itself excluded, so a level shift or a slow drift stops being flagged once the window has
  caught up. A point needs at least 2 points in its window to be scored. A window of (near) zero
  spread is scored against a resolution floor: a jump out of a flat stretch is flagged.
- `mad`: robust z = 0.6745 * (x - median) / MAD, MAD the median absolute deviation from the median;
  when more than half of the points are equal (MAD = 0), the mean absolute deviation takes its
  place as (x - median) / (1.2533 * MeanAD) (Iglewicz and Hoaglin's modified z-score).
- `zscore_from_buckets`: the z-score of rollup bucket averages, the overall mean and stddev
  computed exactly from the buckets' stored count, sum and sum of squares.

zscore and mad judge every point with the whole range, later points included: they describe a
range after the fact. The causal detector (`app.services.anomaly.detector`) is for live use.
Nothing here emits numpy warnings: inputs are scaled by a power of two (exact) so that no sum
overflows, and every score stays finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

MAD_SCALE = 0.6745  # makes the MAD of normal data comparable with its standard deviation
MEAN_AD_SCALE = 1.2533  # sqrt(pi / 2): the same for the mean absolute deviation
TIE_TOLERANCE = 1e-9  # |score| within this relative distance of the threshold is "at" it
# A window constant up to this relative resolution counts as flat: a point is scored against a
# spread of this size, so a jump out of the flat stretch is flagged and rounding noise is not.
FLAT_RESOLUTION = 1e-9
_EPS = float(np.finfo(np.float64).eps)
# Spreads below this, relative to the largest magnitude in the input, count as zero: data cannot
# resolve them, and it keeps every score finite.
_MIN_SPREAD = 1e-140
DEFAULT_LOOKBACK_MS = 3_600_000
LOOKBACK_INTERVALS = 60


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


def default_lookback_ms(ts_ms: npt.ArrayLike) -> int:
    """The rolling window when none is given: 1 hour, or 60 of the series' typical intervals when
    that is longer (on hourly data an hour holds no earlier point at all)."""
    ts = np.asarray(ts_ms, dtype=np.int64)
    if ts.size < 2:
        return DEFAULT_LOOKBACK_MS
    steps = np.diff(ts)
    steps = steps[steps > 0]
    typical = int(np.median(steps)) if steps.size else 0
    return max(DEFAULT_LOOKBACK_MS, LOOKBACK_INTERVALS * typical)


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
    """Points with |0.6745 * (x - median) / MAD| > threshold (or the MeanAD form when MAD = 0);
    mean and stddev reported as zscore does."""
    limit = validate_threshold(threshold)
    arr = _as_values(values)
    if arr.size == 0:
        return _empty()
    scale = _pow2_scale(float(np.max(np.abs(arr))))
    scaled = arr / scale
    mean, std, _ = _moments(scaled)
    dev = scaled - float(np.median(scaled))
    spread = float(np.median(np.abs(dev)))
    scores = None
    if spread > _MIN_SPREAD:
        scores = MAD_SCALE * dev / spread
    else:
        mean_ad = float(np.mean(np.abs(dev)))
        if mean_ad > _MIN_SPREAD:
            scores = dev / (MEAN_AD_SCALE * mean_ad)
    return _verdict(arr.size, mean * scale, std * scale, scores, limit)


def rolling_zscore(
    ts_ms: npt.ArrayLike, values: npt.ArrayLike, lookback_ms: int, threshold: float
) -> SeriesAnomalies:
    """Each point against the mean and population stddev of the points in (t - lookback, t).

    `ts_ms` must be ascending (epoch milliseconds). Points with fewer than 2 earlier points in their
    window are not scored. mean/stddev reported are the global ones.
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
    scaled = arr / scale
    mean, std, centered = _moments(scaled)
    scores = _window_scores(centered, lo, hi)
    _rescore_untrusted(scores, scaled, lo, hi)
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
    (a running sum of k terms is off by at most k * eps * the sum of their magnitudes); rows below
    it are marked +inf for `_rescore_untrusted`, which recomputes them from local sums.
    """
    scores = np.full(centered.shape, np.nan)
    rows = np.flatnonzero(hi - lo >= 2)
    if rows.size == 0:
        return scores
    lo_r, hi_r = lo[rows], hi[rows]
    w_mean, var, floor = _prefix_moments(centered, lo_r, hi_r, hi_r.astype(np.float64))
    trusted = var > floor
    good = rows[trusted]
    scores[good] = (centered[good] - w_mean[trusted]) / np.sqrt(var[trusted])
    scores[rows[~trusted]] = np.inf
    return scores


def _prefix_moments(
    values: FloatArray, lo: IntArray, hi: IntArray, terms: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Mean, population variance and the variance's rounding floor of values[lo:hi] per row, from
    prefix sums over `values` (`terms`: how many terms each row's prefix sums have added)."""
    zero = np.zeros(1)
    s1 = np.concatenate((zero, np.cumsum(values)))
    s2 = np.concatenate((zero, np.cumsum(values * values)))
    a1 = np.concatenate((zero, np.cumsum(np.abs(values))))
    n = (hi - lo).astype(np.float64)
    w_mean = (s1[hi] - s1[lo]) / n
    w_meansq = (s2[hi] - s2[lo]) / n
    var = w_meansq - w_mean * w_mean
    err_mean = 2 * _EPS * terms * a1[hi] / n
    err_meansq = 2 * _EPS * terms * s2[hi] / n
    floor = 4 * (err_meansq + 2 * np.abs(w_mean) * err_mean + err_mean * err_mean)
    floor += 4 * _EPS * w_meansq + _MIN_SPREAD * _MIN_SPREAD
    return w_mean, var, floor


def _rescore_untrusted(scores: FloatArray, scaled: FloatArray, lo: IntArray, hi: IntArray) -> None:
    """Rows whose window variance the global prefix sums could not resolve (marked +inf), scored
    again from sums over just their windows, centred on the windows' median: a quiet stretch
    inside a series of large values is then resolved down to its own magnitude. Windows flat even
    then are scored against the FLAT_RESOLUTION floor."""
    rows = np.flatnonzero(np.isposinf(scores))
    if rows.size == 0:
        return
    breaks = np.flatnonzero(np.diff(rows) > 1) + 1
    for group in np.split(rows, breaks):
        first, last = int(lo[group[0]]), int(hi[group[-1]])
        span = scaled[first:last]
        center = float(np.median(span))
        local = span - center
        lo_g, hi_g = lo[group] - first, hi[group] - first
        w_mean, var, floor = _prefix_moments(local, lo_g, hi_g, hi_g.astype(np.float64))
        flat = FLAT_RESOLUTION * np.abs(w_mean + center) + _MIN_SPREAD
        resolved = np.sqrt(np.maximum(var, 0.0))
        spread = np.where(var > floor, resolved, np.maximum(np.sqrt(floor), flat))
        scores[group] = (scaled[group] - center - w_mean) / spread


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
        indices = np.flatnonzero(np.abs(scores) > limit * (1 + TIE_TOLERANCE))
    return SeriesAnomalies(count, mean, std, indices, scores[indices].astype(np.float64))


def _no_indices() -> IntArray:
    return np.empty(0, dtype=np.intp)


def _empty() -> SeriesAnomalies:
    return SeriesAnomalies(0, None, None, _no_indices(), np.empty(0))
