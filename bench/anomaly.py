"""`python -m bench.anomaly`: the causal detector (method=auto) in-process, no database, no HTTP.

Times `detect` over 1,000,000 points as one series of 10 s samples (115 days), as 100 series of
10,000 (the workload of `make bench`), and as one series of 1 s samples; median of --repeats
runs each. Figures depend on the machine: run it on a quiet one.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from app.services.anomaly import detector

T0 = 1_767_225_600_000


def series(n: int, step_ms: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    ts = T0 + np.arange(n, dtype=np.int64) * step_ms
    day = (ts % 86_400_000) / 86_400_000
    rng = np.random.default_rng(seed)
    values = 50 + 20 * np.sin(2 * np.pi * day) + rng.normal(0, 2, n)
    values[rng.integers(0, n, max(1, n // 20_000))] += 40.0
    return ts, values


def timed(parts: list[tuple[np.ndarray, np.ndarray, int]], repeats: int) -> tuple[float, float]:
    """Median wall-clock and CPU seconds (CPU time is less disturbed by a busy machine)."""
    wall, cpu = [], []
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        for ts, values, step in parts:
            detector.detect(ts, values, block_ms=detector.block_width(step))
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return statistics.median(wall), statistics.median(cpu)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.anomaly", description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cases = {
        "1 series x 1,000,000 points at 10 s": [(*series(1_000_000, 10_000, 1), 10_000)],
        "100 series x 10,000 points at 10 s": [
            (*series(10_000, 10_000, i), 10_000) for i in range(100)
        ],
        "1 series x 1,000,000 points at 1 s": [(*series(1_000_000, 1_000, 2), 1_000)],
    }
    for name, parts in cases.items():
        wall, cpu = timed(parts, args.repeats)
        print(f"{name:<40} {wall:7.3f} s wall, {cpu:7.3f} s CPU (median of {args.repeats})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
