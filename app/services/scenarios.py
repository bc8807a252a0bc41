"""Labelled synthetic series for evaluating anomaly detection: a seasonal or trending base with
anomalies of known kind and time planted in it. Pure numpy, reproducible from a seed.

Bases (the phase of the day and the week is taken from the absolute time, as real metrics have it):
- `daily`: a working-day curve (a rise in the morning, a peak after noon, quiet nights);
- `weekly`: the same curve, much lower on Saturdays and Sundays;
- `trend`: a level drifting linearly, no seasonality;
- `noise`: a constant level.
Every base adds autocorrelated noise (AR(1), phi 0.3), as sampled gauges have.

Kinds (each planted after the warm-up, one per slot, labelled with the window it covers):
spike, dip (one sample 6-12 noise sigmas out), level_shift (the level moves 4-8 sigmas for good),
variance_change (the noise grows 3-5 times for 1-3 h), seasonal_break (for 2-5 h around the
afternoon peak the curve is what it was 8 hours earlier; seasonal bases only), flatline (the
value stuck for 1-3 h) and missing (no samples for 30-90 intervals).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

BASES = ("daily", "weekly", "trend", "noise")
KINDS = (
    "spike",
    "dip",
    "level_shift",
    "variance_change",
    "seasonal_break",
    "flatline",
    "missing",
)
SEASONAL_ONLY = frozenset({"seasonal_break"})
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
AR_PHI = 0.3


@dataclass(frozen=True)
class Label:
    kind: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class Shape:
    level: float = 100.0
    amplitude: float = 40.0  # daily swing of the seasonal bases; the trend's rise over the series
    noise: float = 2.0  # standard deviation of the noise


@dataclass(frozen=True, eq=False)
class LabelledSeries:
    ts_ms: IntArray
    values: FloatArray
    labels: tuple[Label, ...]
    base: str
    evaluate_from_ms: int  # labels and scoring start here; the time before is warm-up
    interval_ms: int


def day_curve(ts_ms: IntArray) -> FloatArray:
    """A working day between 0 (night) and 1 (the afternoon peak), smooth, by hour of the day."""
    hour = (ts_ms % DAY_MS) / HOUR_MS
    morning = 1.0 / (1.0 + np.exp(-(hour - 8.0) * 1.5))
    evening = 1.0 / (1.0 + np.exp((hour - 19.0) * 1.2))
    peak = np.exp(-(((hour - 14.0) / 3.0) ** 2))
    return np.clip(0.7 * morning * evening + 0.3 * peak, 0.0, 1.0)


def week_factor(ts_ms: IntArray) -> FloatArray:
    """1 on working days, 0.3 at weekends (1970-01-01 was a Thursday)."""
    weekday = (ts_ms // DAY_MS + 3) % 7  # 0 Monday ... 6 Sunday
    return np.where(weekday >= 5, 0.3, 1.0)


def base_signal(base: str, ts_ms: IntArray, shape: Shape) -> FloatArray:
    """The anomaly-free signal of a base, without noise."""
    if base not in BASES:
        raise ValueError(f"unknown base {base!r}; choose from {', '.join(BASES)}")
    level = np.full(ts_ms.size, shape.level)
    if base == "daily":
        return level + shape.amplitude * day_curve(ts_ms)
    if base == "weekly":
        return level + shape.amplitude * day_curve(ts_ms) * week_factor(ts_ms)
    if base == "trend" and ts_ms.size:
        span = max(1, int(ts_ms[-1] - ts_ms[0]))
        rise: FloatArray = level + shape.amplitude * (ts_ms - ts_ms[0]) / span
        return rise
    return level


def ar_noise(rng: np.random.Generator, n: int, sigma: float, phi: float = AR_PHI) -> FloatArray:
    """AR(1) noise with stationary standard deviation `sigma` (vectorized in blocks)."""
    innovations = rng.standard_normal(n) * sigma * np.sqrt(1.0 - phi * phi)
    out = np.empty(n)
    level = 0.0
    for start in range(0, n, 32):  # within a block: closed form via powers of phi
        part = innovations[start : start + 32]
        k = np.arange(part.size)
        weights = phi ** (-k.astype(np.float64))
        acc = np.cumsum(part * weights) * phi**k
        out[start : start + part.size] = acc + level * phi ** (k + 1)
        level = out[start + part.size - 1]
    return out


def labelled_series(
    base: str,
    kinds: Sequence[str],
    ts_ms: IntArray,
    *,
    evaluate_from_ms: int,
    slot_ms: int = DAY_MS,
    seed: int = 0,
    shape: Shape | None = None,
) -> LabelledSeries:
    """The base over the (evenly spaced, ascending) `ts_ms`; from `evaluate_from_ms` on, one
    anomaly per slot of `slot_ms`, of the kinds in turn (none when `kinds` is empty)."""
    for kind in kinds:
        if kind not in KINDS:
            raise ValueError(f"unknown anomaly kind {kind!r}; choose from {', '.join(KINDS)}")
        if kind in SEASONAL_ONLY and base not in ("daily", "weekly"):
            raise ValueError(f"{kind} needs a seasonal base (daily or weekly)")
    s = shape or Shape()
    rng = np.random.default_rng(seed)
    ts = np.asarray(ts_ms, dtype=np.int64)
    signal = base_signal(base, ts, s)
    noise = ar_noise(rng, ts.size, s.noise)
    keep = np.ones(ts.size, dtype=bool)
    labels = []
    interval = int(ts[1] - ts[0]) if ts.size > 1 else 0
    slots = int((ts[-1] + interval - evaluate_from_ms) // slot_ms) if ts.size and kinds else 0
    for slot in range(max(slots, 0)):
        kind = kinds[slot % len(kinds)]
        slot_start = evaluate_from_ms + slot * slot_ms
        labels.append(_plant(kind, ts, signal, noise, keep, rng, slot_start, slot_ms, s, base))
    values = signal + noise
    flat = np.isnan(noise)  # flatline: noise removed and the value held (see _plant)
    values[flat] = signal[flat]
    return LabelledSeries(ts[keep], values[keep], tuple(labels), base, evaluate_from_ms, interval)


def grid(start_ms: int, days: float, interval_ms: int) -> IntArray:
    """Evenly spaced timestamps over `days` from `start_ms`."""
    return np.arange(start_ms, start_ms + round(days * DAY_MS), interval_ms, dtype=np.int64)


def _plant(
    kind: str,
    ts: IntArray,
    signal: FloatArray,
    noise: FloatArray,
    keep: npt.NDArray[np.bool_],
    rng: np.random.Generator,
    slot_start: int,
    slot_ms: int,
    shape: Shape,
    base: str,
) -> Label:
    """Plant one anomaly in the slot (changing signal/noise/keep in place); its label."""
    step = int(ts[1] - ts[0])
    if kind == "seasonal_break":  # around the afternoon peak of a working day
        day0 = slot_start - slot_start % DAY_MS
        begin = day0 + int(rng.uniform(11.0, 13.0) * HOUR_MS)
    else:
        begin = slot_start + int(rng.uniform(0.2, 0.6) * slot_ms)
    begin -= begin % step
    i = int(np.searchsorted(ts, begin))
    sigma = shape.noise
    if kind in ("spike", "dip"):
        size = rng.uniform(6.0, 12.0) * sigma * (1 if kind == "spike" else -1)
        signal[i] += size
        return Label(kind, int(ts[i]), int(ts[i]))
    if kind == "level_shift":
        signal[i:] += rng.choice([-1.0, 1.0]) * rng.uniform(4.0, 8.0) * sigma
        return Label(kind, int(ts[i]), int(ts[i]) + HOUR_MS // 2)
    duration = {
        "variance_change": rng.uniform(1.0, 3.0) * HOUR_MS,
        "seasonal_break": rng.uniform(2.0, 5.0) * HOUR_MS,
        "flatline": rng.uniform(1.0, 3.0) * HOUR_MS,
        "missing": rng.uniform(30, 90) * step,
    }[kind]
    j = int(np.searchsorted(ts, begin + int(duration)))
    if kind == "variance_change":
        noise[i:j] *= rng.uniform(3.0, 5.0)
    elif kind == "seasonal_break":  # the day's curve as it was 8 hours earlier: no afternoon
        signal[i:j] = base_signal(base, ts[i:j] - 8 * HOUR_MS, shape)
    elif kind == "flatline":
        held = signal[i] + noise[i]
        signal[i:j] = held
        noise[i:j] = np.nan
    else:
        keep[i:j] = False
    return Label(kind, int(ts[i]), int(ts[max(i, j - 1)]))
