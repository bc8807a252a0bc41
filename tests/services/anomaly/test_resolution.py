"""Which resolution the causal detector judges, decided from the data (pure)."""

from __future__ import annotations

import numpy as np

from app.services.anomaly import resolution
from app.services.anomaly.blocks import DAY_MS, HOUR_MS

START = 1_767_225_600_000


def hours(n: int, per_hour: float) -> tuple[np.ndarray, np.ndarray]:
    return START + np.arange(n, dtype=np.int64) * HOUR_MS, np.full(n, per_hour)


def test_volume_reads_points_and_interval_from_hourly_counts() -> None:
    buckets, counts = hours(48, 360)  # one sample every 10 s
    v = resolution.volume(buckets, counts, START + DAY_MS, START + 2 * DAY_MS - 1)
    assert v.points == 24 * 360
    assert v.interval_ms == 10_000
    hourly = resolution.volume(*hours(48, 1), START, START + 2 * DAY_MS)
    assert hourly.interval_ms == HOUR_MS
    daily = resolution.volume(
        START + np.arange(10) * DAY_MS, np.ones(10), START, START + 10 * DAY_MS
    )
    assert daily.interval_ms == DAY_MS


def test_short_ranges_are_judged_raw_long_ones_on_rollups() -> None:
    ten_s = resolution.SeriesVolume(8_640, 10_000.0)
    day = resolution.plan([ten_s] * 3, START, START + DAY_MS, 1_000_000)
    assert (day.resolution, day.block_ms) == ("raw", 300_000)
    month = resolution.SeriesVolume(259_200, 10_000.0)
    long = resolution.plan([month], START, START + 30 * DAY_MS, 1_000_000)
    assert (long.resolution, long.block_ms) == ("5m", 3_600_000)
    many = resolution.plan([ten_s] * 200, START, START + DAY_MS, 1_000_000)
    assert many.resolution == "5m"  # 1,728,000 raw points would exceed MAX_QUERY_POINTS


def test_coarse_data_is_never_judged_finer_than_it_is() -> None:
    hourly = resolution.SeriesVolume(400_000, float(HOUR_MS))
    plan = resolution.plan([hourly], START, START + 400 * DAY_MS, 1_000_000)
    assert plan.resolution == "1h"
    assert resolution.plan([hourly], START, START + DAY_MS, 10, "1m").interval_ms == HOUR_MS


def test_a_given_window_is_used() -> None:
    v = resolution.SeriesVolume(100, 10_000.0)
    plan = resolution.plan([v], START, START + HOUR_MS, 1_000_000, "1m")
    assert (plan.window, plan.block_ms) == ("1m", 300_000)
    assert resolution.rollup_for_blocks(DAY_MS).name == "1h"
    assert resolution.rollup_for_blocks(300_000).name == "5m"
