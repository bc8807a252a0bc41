"""The benchmark workload: `series` x `points` samples at 10 s, deterministic for a seed.

Metric `cpu_usage`, labels host=hostNNN and region among four values (a quarter of hosts each).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REGIONS = ("us-east", "us-west", "eu-west", "ap-south")
STEP_MS = 10_000
METRIC = "cpu_usage"


@dataclass(frozen=True)
class Workload:
    labels: list[dict[str, str]]
    start_ms: int
    ts: np.ndarray  # (points,) int64, shared by every series
    values: np.ndarray  # (series, points) float64

    @property
    def samples(self) -> int:
        return int(self.values.size)

    @property
    def end_ms(self) -> int:
        return int(self.ts[-1])


def build(series: int, points: int, seed: int, end_ms: int) -> Workload:
    rng = np.random.default_rng(seed)
    end_ms -= end_ms % 3_600_000  # whole hours, so every 1h bucket closes
    start = end_ms - points * STEP_MS
    ts = start + np.arange(points, dtype=np.int64) * STEP_MS
    phase = rng.uniform(0, 2 * np.pi, size=(series, 1))
    wave = 20 * np.sin(2 * np.pi * np.arange(points) / 8640 + phase)
    values = np.round(50 + wave + rng.normal(0, 3, size=(series, points)), 3)
    labels = [{"host": f"host{i:03d}", "region": REGIONS[i % len(REGIONS)]} for i in range(series)]
    return Workload(labels, start, ts, values)


def item_batches(work: Workload, batch: int) -> list[list[dict[str, object]]]:
    """The item form, `batch` samples per request, time-major like live collection."""
    stamps = (work.ts / 1000).tolist()
    rows = work.values.T.tolist()
    items: list[dict[str, object]] = []
    for t, row in zip(stamps, rows, strict=True):
        for labels, value in zip(work.labels, row, strict=True):
            items.append({"metric_name": METRIC, "value": value, "timestamp": t, "labels": labels})
    return [items[i : i + batch] for i in range(0, len(items), batch)]


def columnar_batches(
    work: Workload, batch: int, metric: str = METRIC
) -> list[list[dict[str, object]]]:
    """The columnar form: one entry per series, split so a request holds about `batch` samples."""
    per = max(1, batch // work.ts.size)
    stamps = (work.ts / 1000).tolist()
    entries = [
        {"metric_name": metric, "labels": labels, "timestamps": stamps, "values": row}
        for labels, row in zip(work.labels, work.values.tolist(), strict=True)
    ]
    return [entries[i : i + per] for i in range(0, len(entries), per)]
