"""histogram_quantile over classic histograms (`le` buckets), vectorized over steps.

As Prometheus' BucketQuantile: buckets grouped by their labels without `le`; a group needs a
`+Inf` bucket (else NaN) and two buckets at least; buckets with the same bound are added; counts
are made monotonic (increases smaller than a relative 1e-12 are ignored as float noise);
linear interpolation inside the bucket holding the rank, 0 as the lower bound of the first
bucket unless its upper bound is <= 0; a rank in the `+Inf` bucket gives the second-highest
bound; q < 0 gives -Inf, q > 1 +Inf. Series without a parseable `le` are skipped.
"""

from __future__ import annotations

import math
import re

import numpy as np

from app.promql.values import NAME, InstantVector, Labels, merge_rows, remove_labels

SMALL_DELTA = 1e-12
MIN_NORMAL = 2.2250738585072014e-308
_FLOAT_RE = re.compile(r"^[+-]?(?:inf|infinity|nan|(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)$", re.I)


def parse_bound(text: str) -> float | None:
    """`le` as Go's strconv.ParseFloat reads it (decimal forms), or None."""
    if not _FLOAT_RE.match(text.replace("_", "")) or "_" in text:
        return None
    return float(text)


def _almost_equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        total = np.abs(a) + np.abs(b)
        diff = np.abs(a - b)
        tiny = (a == 0) | (b == 0) | (total < MIN_NORMAL)
        relative = diff / np.minimum(total, np.finfo(np.float64).max)
        equal: np.ndarray = (a == b) | np.where(
            tiny, diff < SMALL_DELTA * MIN_NORMAL, relative < SMALL_DELTA
        )
    return equal


def _quantile_of_buckets(
    q: np.ndarray, bounds: np.ndarray, counts: np.ndarray, present: np.ndarray
) -> np.ndarray:
    """One histogram (buckets sorted by bound, same bounds already added) at every step:
    bounds (B,), counts and present (B, N)."""
    steps = counts.shape[1]
    out = np.full(steps, np.nan)
    # Steps differ in which buckets they have: handle each pattern of present buckets at once.
    patterns, pattern_of = np.unique(present.T, axis=0, return_inverse=True)
    for p, pattern in enumerate(patterns):
        cols = np.flatnonzero(pattern_of.reshape(-1) == p)
        have = np.flatnonzero(pattern)
        if have.size < 2 or not math.isinf(bounds[have[-1]]) or bounds[have[-1]] < 0:
            continue
        b, c = bounds[have], counts[have][:, cols].copy()
        prev = c[0].copy()
        for i in range(1, b.size):  # monotonic, ignoring float noise (ensureMonotonic...)
            cur = c[i]
            noise = (cur != prev) & _almost_equal(prev, cur)
            down = (cur < prev) & ~noise
            c[i] = np.where(noise | down, prev, cur)
            prev = np.where(noise | down, prev, cur)
        out[cols] = _interpolate(q[cols], b, c)
    # The quantile's own range is checked first, whatever the buckets.
    out = np.where(q < 0, -np.inf, np.where(q > 1, np.inf, out))
    return np.where(np.isnan(q), np.nan, out)


def _interpolate(q: np.ndarray, bounds: np.ndarray, counts: np.ndarray) -> np.ndarray:
    total = counts[-1]
    with np.errstate(all="ignore"):
        rank = q * total
        reached = counts[:-1] >= rank[None, :]
        index = np.where(reached.any(axis=0), reached.argmax(axis=0), bounds.size - 1)
        steps = np.arange(counts.shape[1])
        upper = bounds[index]
        lower = np.where(index > 0, bounds[np.maximum(index - 1, 0)], 0.0)
        below = np.where(index > 0, counts[np.maximum(index - 1, 0), steps], 0.0)
        inside = counts[index, steps] - below
        value = lower + (upper - lower) * ((rank - below) / inside)
        value = np.where(index == bounds.size - 1, bounds[max(bounds.size - 2, 0)], value)
        value = np.where((index == 0) & (bounds[0] <= 0), bounds[0], value)
    return np.where(total == 0, np.nan, value)


def histogram_quantile(q: np.ndarray, vec: InstantVector) -> InstantVector:
    groups: dict[Labels, list[tuple[float, int]]] = {}
    for row, labels in enumerate(vec.labels):
        bound = parse_bound(next((v for k, v in labels if k == "le"), ""))
        if bound is None:
            continue
        groups.setdefault(remove_labels(labels, ("le",)), []).append((bound, row))
    out_labels, out_values, out_present = [], [], []
    for signature, buckets in groups.items():
        buckets.sort()
        bounds = np.array([b for b, _ in buckets])
        rows = np.array([r for _, r in buckets])
        unique, first = np.unique(bounds, return_index=True)
        counts = np.add.reduceat(np.where(vec.present[rows], vec.values[rows], 0.0), first)
        present = np.logical_or.reduceat(vec.present[rows], first)
        group_present = present.any(axis=0)
        out_labels.append(remove_labels(signature, (NAME,)))
        out_values.append(
            np.where(group_present, _quantile_of_buckets(q, unique, counts, present), 0.0)
        )
        out_present.append(group_present)
    if not out_labels:
        return InstantVector.empty(vec.steps)
    return merge_rows(out_labels, np.stack(out_values), np.stack(out_present)).without_empty()
