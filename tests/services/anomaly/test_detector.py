"""The causal detector (method=auto) as pure functions: causality, independence from where the
data starts, equal verdicts from raw or rollup history, and each behaviour the issue asks for."""

from __future__ import annotations

import numpy as np
import pytest

from app.services import scenarios
from app.services.anomaly import blocks, calibration, detector
from app.services.anomaly.blocks import DAY_MS, MINUTE_MS
from app.services.anomaly.detector import detect

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
STEP = MINUTE_MS
BLOCK = detector.block_width(STEP)


def noisy(n: int, seed: int = 1, level: float = 50.0, sigma: float = 2.0) -> np.ndarray:
    return level + np.random.default_rng(seed).normal(0.0, sigma, n)


def stamps(n: int, step: int = STEP, start: int = T0) -> np.ndarray:
    return start + np.arange(n, dtype=np.int64) * step


def run(ts: np.ndarray, x: np.ndarray, **kw: object) -> detector.AutoResult:
    return detect(ts, x, block_ms=detector.block_width(int(np.median(np.diff(ts)))), **kw)  # type: ignore[arg-type]


def daily_series(days: int, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    ts = stamps(days * 1440)
    shape = scenarios.Shape()
    values = scenarios.base_signal("daily", ts, shape) + np.random.default_rng(seed).normal(
        0, shape.noise, ts.size
    )
    return ts, values


# --- causality and determinism --------------------------------------------------------------


def test_a_verdict_never_depends_on_later_data() -> None:
    ts, x = daily_series(6)
    full = run(ts, x)
    cut = ts.size - 700
    early = run(ts[:cut], x[:cut])
    n = early.count
    assert np.array_equal(early.judged, full.judged[:n])
    np.testing.assert_array_equal(early.zscore, full.zscore[:n])
    np.testing.assert_array_equal(early.likelihood, full.likelihood[:n])
    # Changing the future (a huge spike later) changes nothing before it either.
    changed = x.copy()
    changed[cut + 10 :] += 500.0
    again = run(ts, changed)
    np.testing.assert_array_equal(again.zscore[:cut], full.zscore[:cut])


def test_a_verdict_does_not_depend_on_where_the_data_starts() -> None:
    """Two warm-ups of different length, both longer than warmup_ms, judge the common points
    identically: the baselines come from epoch-aligned blocks within a bounded look-back."""
    ts, x = daily_series(30, seed=4)
    judge_from = int(ts[-1440])
    lead = detector.warmup_ms(BLOCK)
    a = run(ts, x, judge_from_ms=judge_from)
    start = np.searchsorted(ts, judge_from - lead - 3 * 3_600_000 - 17 * MINUTE_MS)
    b = run(ts[start:], x[start:], judge_from_ms=judge_from)
    assert a.count == b.count == 1440
    np.testing.assert_allclose(b.zscore, a.zscore, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(b.judged, a.judged)


def test_history_from_rollups_gives_the_same_verdicts_as_raw_points() -> None:
    """The route reads the warm-up as stored 5m rollups (count, sum, sumsq, min, max), not raw."""
    ts, x = daily_series(8, seed=6)
    x[-300] += 40.0
    split = ts.size - 1440
    split -= split % (BLOCK // STEP)  # the raw read starts at a block boundary
    raw = run(ts, x, judge_from_ms=int(ts[split]))
    five = blocks.aggregate(ts[:split], x[:split], 300_000)
    history = blocks.from_rollups(
        five.index * 300_000,
        five.count,
        five.total,
        five.sumsq,
        five.low,
        five.high,
        300_000,
        BLOCK,
    )
    rolled = run(ts[split:], x[split:], history=history, judge_from_ms=int(ts[split]))
    np.testing.assert_allclose(rolled.zscore, raw.zscore, rtol=1e-9)
    assert np.array_equal(rolled.anomalous, raw.anomalous)
    assert rolled.anomalous.sum() >= 1


def test_stale_markers_are_left_out() -> None:
    ts, x = stamps(3000), noisy(3000)
    with_nan = x.copy()
    with_nan[1000:1010] = np.nan
    keep = np.isfinite(with_nan)
    a, b = run(ts, with_nan), run(ts[keep], x[keep])
    np.testing.assert_array_equal(a.zscore, b.zscore)


# --- behaviours --------------------------------------------------------------------------------


def test_judging_starts_after_a_minimum_of_samples_not_only_time() -> None:
    ts, x = stamps(200), noisy(200)
    result = run(ts, x)
    first = int(np.argmax(result.judged))
    assert first >= 30  # at least 30 samples and 3 complete blocks before the first verdict
    assert not result.judged[:first].any()
    sparse = detect(stamps(20, step=3_600_000), noisy(20), block_ms=3_600_000)
    assert not sparse.judged.any()  # twenty points: never enough


def test_a_jump_out_of_a_flat_stretch_is_anomalous() -> None:
    x = np.full(2000, 12.0)
    x[1500] = 12.5
    result = run(stamps(2000), x)
    assert np.flatnonzero(result.anomalous).tolist() == [1500]
    assert np.all(np.isfinite(result.zscore[result.judged]))


def test_a_constant_series_has_no_anomalies() -> None:
    result = run(stamps(3000), np.full(3000, 0.1))
    assert result.judged.any()
    assert not result.anomalous.any()
    assert result.events == []


def test_a_mostly_zero_counter_gets_verdicts() -> None:
    """Ones are routine in this counter (5% of the samples); a burst of 30 is not."""
    rng = np.random.default_rng(3)
    x = (rng.random(6000) < 0.05).astype(np.float64)
    x[5000] = 30.0
    result = run(stamps(6000), x)
    flagged = np.flatnonzero(result.anomalous)
    assert 5000 in flagged.tolist()
    assert flagged.size <= 3


def test_a_spike_is_one_event_with_its_peak() -> None:
    x = noisy(4000)
    x[3000] += 40.0
    result = run(stamps(4000), x)
    [event] = [e for e in result.events if e.start_ms <= stamps(4000)[3000] <= e.end_ms]
    assert event.kind == "spike"
    assert result.event_ts[event.peak] == stamps(4000)[3000]
    assert event.p < 1e-10


def test_a_level_shift_is_reported_once() -> None:
    x = noisy(5000)
    x[3000:] += 20.0  # ten sigmas, for good
    result = run(stamps(5000), x)
    after = [e for e in result.events if e.end_ms >= stamps(5000)[3000]]
    assert [e.kind for e in after] == ["level_shift"]
    assert after[0].start_ms <= stamps(5000)[3010]
    assert int(result.anomalous[3000:].sum()) == 1  # not hundreds of outliers
    assert np.all(result.likelihood[3200:] < 1 - 1e-5)  # the new level is learnt


def test_daily_seasonality_is_found_and_its_transitions_are_not_anomalies() -> None:
    ts, x = daily_series(10, seed=8)
    result = run(ts, x, judge_from_ms=int(ts[-3 * 1440]))
    assert result.season == "daily"
    assert len(result.events) <= 1  # three days of normal data: one noise excursion at most


def test_a_break_of_the_daily_pattern_is_found() -> None:
    ts, x = daily_series(10, seed=9)
    noon = int(np.searchsorted(ts, ts[-1440] + 12 * 3_600_000))
    x[noon : noon + 180] -= 25.0  # no afternoon today (12 noise sigmas, 3 hours)
    result = run(ts, x, judge_from_ms=int(ts[-1440]))
    hits = [e for e in result.events if e.start_ms <= ts[noon + 179] and e.end_ms >= ts[noon]]
    assert hits


def test_a_flat_line_is_found() -> None:
    x = noisy(6000)
    x[4000:4200] = x[4000]
    result = run(stamps(6000), x)
    assert [e.kind for e in result.events] == ["flatline"]
    assert result.events[0].start_ms == stamps(6000)[4000]


def test_missing_data_is_found_and_an_ongoing_silence_too() -> None:
    ts, x = stamps(6000), noisy(6000)
    keep = np.ones(6000, dtype=bool)
    keep[4000:4060] = False
    result = run(ts[keep], x[keep])
    [gap] = result.events
    assert gap.kind == "missing"
    assert (gap.start_ms, gap.end_ms) == (int(ts[3999]), int(ts[4060]))
    silent = run(ts[:5000], x[:5000], now_ms=int(ts[4999]) + 60 * STEP)
    assert [e.kind for e in silent.events] == ["missing"]
    assert silent.events[0].end_ms == int(ts[4999]) + 60 * STEP
    assert run(ts[:5000], x[:5000], now_ms=int(ts[4999]) + 2 * STEP).events == []


def test_a_variance_change_is_found() -> None:
    x = noisy(6000)
    x[4000:4120] = 50.0 + np.random.default_rng(7).normal(0, 8.0, 120)
    result = run(stamps(6000), x)
    assert result.events
    assert all(stamps(6000)[4000] <= e.start_ms <= stamps(6000)[4120] for e in result.events)
    assert "variance_change" in {e.kind for e in result.events}


def test_likelihood_is_calibrated_on_normal_data() -> None:
    """On anomaly-free data, the share of points with likelihood above 1 - a is about a."""
    shares = []
    for seed in range(3):
        x = noisy(20_000, seed=seed)
        result = run(stamps(20_000), x)
        p = 1.0 - result.likelihood[result.judged]
        shares.append([float(np.mean(p < a)) / a for a in (1e-2, 1e-3)])
    ratio = np.mean(shares, axis=0)
    assert np.all((ratio > 0.3) & (ratio < 2.0)), ratio


def test_ties_at_the_threshold_are_not_anomalies() -> None:
    alpha = 1e-5
    assert not calibration.below(np.array([alpha]), alpha)[0]
    assert calibration.below(np.array([alpha * 0.999]), alpha)[0]


@pytest.mark.parametrize("threshold", [0.0, 1.0, 1.5, -0.1])
def test_the_likelihood_threshold_lies_between_0_and_1(threshold: float) -> None:
    with pytest.raises(ValueError, match="likelihood"):
        detect(stamps(10), noisy(10), block_ms=BLOCK, threshold=threshold)


def test_block_width_follows_the_interval() -> None:
    assert detector.block_width(10_000) == 300_000
    assert detector.block_width(60_000) == 300_000
    assert detector.block_width(1_800_000) == 3_600_000
    assert detector.block_width(3_600_000) == 3_600_000
    assert detector.block_width(DAY_MS) == DAY_MS
    assert detector.block_width(2 * DAY_MS) == 7 * DAY_MS


def test_hourly_data_is_judged() -> None:
    ts = stamps(24 * 30, step=3_600_000)
    x = noisy(ts.size, seed=11)
    x[-5] += 30.0
    result = detect(ts, x, block_ms=detector.block_width(3_600_000))
    assert result.judged[-100:].all()
    assert np.flatnonzero(result.anomalous).tolist() == [ts.size - 5]
