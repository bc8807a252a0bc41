"""A brute-force reference for range functions: one window at a time in plain Python,
transcribing the float path of Prometheus 3's promql/functions.go, for property tests of the
vectorized evaluator."""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Sequence

Sample = tuple[int, float]  # (ms, value)


def is_stale(v: float) -> bool:
    return struct.pack("<d", v) == struct.pack("<Q", 0x7FF0000000000002)


def window(samples: Sequence[Sample], end: int, range_ms: int) -> list[Sample]:
    """Samples in (end - range, end], stale markers left out."""
    return [(t, v) for t, v in samples if end - range_ms < t <= end and not is_stale(v)]


def instant(samples: Sequence[Sample], ref: int, lookback: int = 300_000) -> float | None:
    found = [(t, v) for t, v in samples if ref - lookback < t <= ref]
    if not found or is_stale(found[-1][1]):
        return None
    return found[-1][1]


def extrapolated_rate(
    w: list[Sample], end: int, range_ms: int, is_counter: bool, is_rate: bool
) -> float | None:
    if len(w) < 2:
        return None
    result = w[-1][1] - w[0][1]
    if is_counter:
        prev = w[0][1]
        for _, v in w[1:]:
            if v < prev:
                result += prev
            prev = v
    to_start = (w[0][0] - (end - range_ms)) / 1000
    to_end = (end - w[-1][0]) / 1000
    sampled = (w[-1][0] - w[0][0]) / 1000
    average = sampled / (len(w) - 1)
    threshold = average * 1.1
    if to_start >= threshold:
        to_start = average / 2
    if is_counter:
        to_zero = to_start
        if result > 0 and w[0][1] >= 0:
            to_zero = sampled * (w[0][1] / result)
        if to_zero < to_start:
            to_start = to_zero
    if to_end >= threshold:
        to_end = average / 2
    factor = (sampled + to_start + to_end) / sampled
    if is_rate:
        factor /= range_ms / 1000
    return result * factor


def instant_value(w: list[Sample], is_rate: bool) -> float | None:
    if len(w) < 2:
        return None
    (t0, v0), (t1, v1) = w[-2], w[-1]
    result = v1 if (is_rate and v1 < v0) else v1 - v0
    if is_rate:
        result /= (t1 - t0) / 1000
    return result


def kahan_sum(values: Sequence[float]) -> float:
    total = c = 0.0
    for v in values:
        t = total + v
        if math.isinf(t):
            c = 0.0
        elif abs(total) >= abs(v):
            c += (total - t) + v
        else:
            c += (v - t) + total
        total = t
    return total if math.isinf(total) else total + c


def quantile(q: float, values: Sequence[float]) -> float:
    if not values or math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted(values, key=lambda v: (not math.isnan(v), v if not math.isnan(v) else 0))
    n = len(ordered)
    rank = q * (n - 1)
    lower = max(0, math.floor(rank))
    upper = min(n - 1, lower + 1)
    weight = rank - math.floor(rank)
    return ordered[lower] * (1 - weight) + ordered[upper] * weight


def variance(values: Sequence[float]) -> float:
    count = mean = aux = 0.0
    for v in values:
        count += 1
        delta = v - mean
        mean += delta / count
        aux += delta * (v - mean)
    return aux / count


def regression(w: list[Sample], origin: int) -> tuple[float, float]:
    ys = [v for _, v in w]
    if all(y == ys[0] for y in ys[1:]):
        if math.isinf(ys[0]):
            return math.nan, math.nan
        return 0.0, ys[0]
    n = float(len(w))
    xs = [(t - origin) / 1000 for t, _ in w]
    sum_x, sum_y = sum(xs), sum(ys)
    sum_xy = sum(x * y for x, y in zip(xs, ys, strict=True))
    sum_x2 = sum(x * x for x in xs)
    cov = sum_xy - sum_x * sum_y / n
    var = sum_x2 - sum_x * sum_x / n
    slope = cov / var
    return slope, sum_y / n - slope * sum_x / n


def over_time(name: str, w: list[Sample], param: float = 0.0, step_time: int = 0) -> float | None:
    """One range function on one window (None: no output)."""
    values = [v for _, v in w]
    if name == "rate":
        return None  # handled by extrapolated_rate
    if not w:
        return None
    match name:
        case "sum_over_time":
            return kahan_sum(values)
        case "count_over_time":
            return float(len(values))
        case "avg_over_time":
            return kahan_sum(values) / len(values)
        case "min_over_time":
            best = values[0]
            for v in values:
                if v < best or math.isnan(best):
                    best = v
            return best
        case "max_over_time":
            best = values[0]
            for v in values:
                if v > best or math.isnan(best):
                    best = v
            return best
        case "last_over_time":
            return values[-1]
        case "present_over_time":
            return 1.0
        case "stdvar_over_time":
            return variance(values)
        case "stddev_over_time":
            return math.sqrt(variance(values))
        case "quantile_over_time":
            return quantile(param, values)
        case "changes":
            return float(
                sum(
                    1
                    for a, b in itertools.pairwise(values)
                    if b != a and not (math.isnan(a) and math.isnan(b))
                )
            )
        case "resets":
            return float(sum(1 for a, b in itertools.pairwise(values) if b < a))
        case "deriv":
            return regression(w, w[0][0])[0] if len(w) >= 2 else None
        case "predict_linear":
            if len(w) < 2:
                return None
            slope, intercept = regression(w, step_time)
            return slope * param + intercept
    raise ValueError(name)
