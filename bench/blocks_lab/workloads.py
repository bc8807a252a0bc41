"""The workloads measured: the benchmark's, and harder ones of the same shape (100 series x
10,000 points at 10 s unless said otherwise)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench import workload

SEED = 20251203
END_MS = 1_764_763_200_000  # 2025-12-03T12:00:00Z, on the hour
STEP_MS = workload.STEP_MS


@dataclass(frozen=True)
class Lab:
    name: str
    note: str
    ts: np.ndarray  # (series, points) int64 ms
    values: np.ndarray  # (series, points) float64

    @property
    def samples(self) -> int:
        return int(self.values.size)


def _grid(series: int, points: int, step_ms: int = STEP_MS) -> np.ndarray:
    start = END_MS - points * step_ms
    return np.tile(start + step_ms * np.arange(points, dtype=np.int64), (series, 1))


def bench_values(series: int, points: int) -> np.ndarray:
    return workload.build(series, points, SEED, END_MS).values


def full_precision(series: int, points: int) -> np.ndarray:
    """The benchmark's values before rounding: 50 + 20 sin + N(0, 3) at full precision."""
    rng = np.random.default_rng(SEED)
    phase = rng.uniform(0, 2 * np.pi, size=(series, 1))
    wave = 20 * np.sin(2 * np.pi * np.arange(points) / 8640 + phase)
    values: np.ndarray = 50 + wave + rng.normal(0, 3, size=(series, points))
    return values


def counters(series: int, points: int) -> np.ndarray:
    """Integer counters (requests, bytes): Poisson increments at a rate per series from 1 to
    10,000 per step, one reset to 0 per series."""
    rng = np.random.default_rng(SEED + 1)
    rates = np.exp(rng.uniform(0, np.log(10_000), size=(series, 1)))
    steps = rng.poisson(rates, size=(series, points)).astype(np.float64)
    totals = np.cumsum(steps, axis=1)
    reset = rng.integers(1, points, size=series)
    for i, at in enumerate(reset):
        totals[i, at:] -= totals[i, at - 1]
    return totals


def mostly_constant(series: int, points: int) -> np.ndarray:
    """`up`-like series (1 with a rare 0) and small gauges that step every ~500 samples."""
    rng = np.random.default_rng(SEED + 2)
    out = np.ones((series, points))
    out[rng.random((series, points)) < 0.001] = 0.0
    half = series // 2
    steps = (rng.random((series - half, points)) < 1 / 500) * rng.integers(
        -2, 3, (series - half, points)
    )
    out[half:] = 8 + np.cumsum(steps, axis=1)
    return out


def jittered(ts: np.ndarray) -> np.ndarray:
    """Scrape timestamps: the 10 s grid with up to ±25 ms of jitter."""
    rng = np.random.default_rng(SEED + 3)
    return ts + rng.integers(-25, 26, size=ts.shape)


def every(series: int = 100, points: int = 10_000) -> list[Lab]:
    grid = _grid(series, points)
    return [
        Lab(
            "bench",
            "the benchmark: round(50 + 20 sin + N(0, 3), 3)",
            grid,
            bench_values(series, points),
        ),
        Lab("full_precision", "the same values unrounded", grid, full_precision(series, points)),
        Lab(
            "counters",
            "integer counters, Poisson increments, one reset",
            grid,
            counters(series, points),
        ),
        Lab(
            "mostly_constant",
            "up-like 1/0 and rarely stepping gauges",
            grid,
            mostly_constant(series, points),
        ),
        Lab(
            "bench_60s",
            "the benchmark's values every 60 s instead of 10 s (a 2h block holds 120)",
            _grid(series, points, 60_000),
            bench_values(series, points),
        ),
        Lab(
            "jittered_ts",
            "the benchmark's values at jittered (±25 ms) timestamps",
            jittered(grid),
            bench_values(series, points),
        ),
    ]
