"""How fast this machine is right now, so that runs on different days or machines can be compared.

The same fixed work every run: a pure-Python loop (the interpreter's speed, which bounds request
handling) and a numpy sort (vectorized work). Times are the best of three.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def _best_of(runs: int, work: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best * 1000


def _python_loop() -> int:
    total = 0
    for i in range(3_000_000):
        total += i ^ (i >> 3)
    return total


def _numpy_sort() -> None:
    np.sort(np.random.default_rng(1).random(3_000_000))


def measure() -> dict[str, float]:
    return {"python_loop_ms": _best_of(3, _python_loop), "numpy_sort_ms": _best_of(3, _numpy_sort)}


if __name__ == "__main__":
    print(measure())
