"""Pure tests of the classic methods (app.services.anomaly.classic) against straightforward,
exact per-point oracles, and the regressions the causal detector issue found in them."""

from __future__ import annotations

import math
import statistics
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from app.services import anomaly
from app.services.anomaly import SeriesAnomalies, classic

# Scores within this relative distance of the threshold may fall either way after rounding.
BORDER = 1e-6

finite = st.floats(allow_nan=False, allow_infinity=False)
moderate = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
thresholds = st.floats(0.25, 5.0)


def exact_scores(values: list[float]) -> tuple[Fraction, Fraction, list[Fraction]]:
    """Exact mean, population variance and squared z-scores (empty when the variance is 0)."""
    exact = [Fraction(v) for v in values]
    mean = sum(exact, Fraction(0)) / len(exact)
    var = sum(((x - mean) ** 2 for x in exact), Fraction(0)) / len(exact)
    return mean, var, [(x - mean) ** 2 / var for x in exact] if var else []


def expected_flags(squared: list[Fraction], threshold: float) -> tuple[set[int], set[int]]:
    """Indices surely above the threshold, and those too close to it to call."""
    limit = Fraction(threshold) ** 2
    above = {i for i, z2 in enumerate(squared) if z2 > limit * (1 + Fraction(BORDER))}
    border = {i for i, z2 in enumerate(squared) if abs(z2 / limit - 1) <= BORDER}
    return above, border


def assert_flags(result: SeriesAnomalies, above: set[int], border: set[int]) -> None:
    assert set(result.indices.tolist()) - border == above
    assert result.indices.dtype.kind == "i"
    assert np.all(np.diff(result.indices) > 0)
    assert result.zscores.shape == result.indices.shape
    assert np.all(np.isfinite(result.zscores))


def assert_clean(result: SeriesAnomalies, count: int) -> None:
    assert result.count == count
    assert result.indices.size == 0
    assert result.zscores.size == 0


def rng_values(n: int, seed: int = 7) -> np.ndarray:
    return np.clip(np.random.default_rng(seed).normal(50.0, 3.0, n), 40.0, 60.0)


# --- edge cases -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["zscore", "mad", "rolling", "buckets"])
def test_empty_series_has_no_statistics(method: str) -> None:
    empty = np.empty(0)
    result = {
        "zscore": lambda: anomaly.zscore(empty, 3.0),
        "mad": lambda: anomaly.mad(empty, 3.0),
        "rolling": lambda: anomaly.rolling_zscore(np.empty(0, np.int64), empty, 60_000, 3.0),
        "buckets": lambda: anomaly.zscore_from_buckets(empty, empty, empty, empty, 3.0),
    }[method]()
    assert_clean(result, 0)
    assert result.mean is None
    assert result.stddev is None


@pytest.mark.parametrize("values", [[42.5], [0.1] * 50, [1e9 + 0.1] * 7, [-3.0] * 2, [0.0] * 9])
def test_one_point_or_constant_series_flags_nothing(values: list[float]) -> None:
    ts = np.arange(len(values), dtype=np.int64) * 1000
    for result in (
        anomaly.zscore(values, 0.5),
        anomaly.mad(values, 0.5),
        anomaly.rolling_zscore(ts, values, 10_000, 0.5),
    ):
        assert_clean(result, len(values))
        assert result.mean == values[0]
        assert result.stddev == 0.0


def test_lists_and_integers_are_accepted() -> None:
    result = anomaly.zscore([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 50], 3.0)
    assert result.indices.tolist() == [12]
    assert result.zscores[0] == pytest.approx(math.sqrt(12))


@pytest.mark.parametrize("threshold", [0.0, -1.0, math.nan, math.inf, -math.inf])
def test_threshold_must_be_a_positive_number(threshold: float) -> None:
    with pytest.raises(ValueError, match="threshold"):
        anomaly.zscore([1.0, 2.0], threshold)
    with pytest.raises(ValueError, match="threshold"):
        anomaly.mad([1.0, 2.0], threshold)
    with pytest.raises(ValueError, match="threshold"):
        anomaly.rolling_zscore([1, 2], [1.0, 2.0], 10, threshold)
    with pytest.raises(ValueError, match="threshold"):
        anomaly.zscore_from_buckets([1], [1.0], [1.0], [1.0], threshold)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_rejected(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        anomaly.zscore([1.0, bad], 3.0)
    with pytest.raises(ValueError, match="finite"):
        anomaly.mad([1.0, bad], 3.0)


@pytest.mark.parametrize("n", range(1, 11))
def test_few_points_never_exceed_the_sqrt_bound(n: int) -> None:
    """With n points no population z-score exceeds sqrt(n - 1): at most 3 for n <= 10."""
    values = [0.0] * (n - 1) + [1e12]
    result = anomaly.zscore(values, 3.0)
    assert_clean(result, n)


def test_extreme_magnitudes_stay_finite_and_quiet() -> None:
    values = [1.7e308, -1.7e308] + [5.0] * 40 + [1e-300, 5e-324]
    ts = np.arange(len(values), dtype=np.int64)
    for result in (
        anomaly.zscore(values, 3.0),
        anomaly.mad(values, 3.0),
        anomaly.rolling_zscore(ts, values, 10, 3.0),
    ):
        assert result.count == len(values)
        assert result.mean is not None
        assert result.stddev is not None
        assert math.isfinite(result.mean)
        assert math.isfinite(result.stddev)
        assert np.all(np.isfinite(result.zscores))


# --- zscore -----------------------------------------------------------------------------------


def test_zscore_finds_planted_spikes_and_matches_statistics_module() -> None:
    values = rng_values(1000)
    values[[100, 555, 901]] += [40.0, -35.0, 50.0]
    result = anomaly.zscore(values, 3.5)
    mean, std = statistics.fmean(values), statistics.pstdev(values.tolist())
    assert result.mean == pytest.approx(mean, rel=1e-12)
    assert result.stddev == pytest.approx(std, rel=1e-12)
    loop = [i for i, v in enumerate(values) if abs(v - mean) / std > 3.5]
    assert result.indices.tolist() == loop == [100, 555, 901]
    assert result.zscores.tolist() == pytest.approx([(values[i] - mean) / std for i in loop])
    assert result.zscores[1] < 0 < result.zscores[0]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(moderate, finite), min_size=1, max_size=60), thresholds)
def test_zscore_matches_exact_oracle(values: list[float], threshold: float) -> None:
    mean, var, squared = exact_scores(values)
    result = anomaly.zscore(values, threshold)
    peak = max(abs(v) for v in values)
    assert result.count == len(values)
    assert result.mean is not None
    assert result.stddev is not None
    assert abs(Fraction(result.mean) - mean) <= Fraction(peak) * Fraction(1e-12)
    # Compared squared, exactly: var may be far outside the float range.
    if var == 0:
        assert result.stddev == 0.0
    else:
        assert abs(Fraction(result.stddev) ** 2 / var - 1) <= 1e-9
    assert_flags(result, *expected_flags(squared, threshold))


@settings(deadline=None)
@given(st.lists(moderate, min_size=2, max_size=40), st.integers(1, 4), thresholds)
def test_zscore_with_outliers_matches_exact_oracle(
    values: list[float], outliers: int, threshold: float
) -> None:
    values = values * 3 + [1e7] * outliers
    _, _, squared = exact_scores(values)
    result = anomaly.zscore(values, threshold)
    assert_flags(result, *expected_flags(squared, threshold))
    for i, z in zip(result.indices.tolist(), result.zscores.tolist(), strict=True):
        assert z * z == pytest.approx(float(squared[i]), rel=1e-9)


# --- mad --------------------------------------------------------------------------------------


def mad_oracle(values: list[float], threshold: float) -> list[int]:
    median = statistics.median(values)
    spread = statistics.median([abs(v - median) for v in values])
    if spread == 0:
        mean_ad = statistics.fmean([abs(v - median) for v in values])
        if mean_ad == 0:
            return []
        return [
            i for i, v in enumerate(values) if abs((v - median) / (1.2533 * mean_ad)) > threshold
        ]
    return [i for i, v in enumerate(values) if abs(0.6745 * (v - median) / spread) > threshold]


def test_mad_is_robust_where_zscore_is_masked() -> None:
    """A fifth of the points far out inflate the stddev so zscore misses them; MAD does not."""
    values = rng_values(500)
    planted = list(range(0, 500, 5))
    values[planted] = 500.0
    assert anomaly.zscore(values, 3.0).indices.size == 0
    result = anomaly.mad(values, 3.5)
    assert set(planted) <= set(result.indices.tolist())
    assert result.indices.tolist() == mad_oracle(values.tolist(), 3.5)
    assert result.mean == pytest.approx(float(np.mean(values)))
    assert result.stddev == pytest.approx(float(np.std(values)))


def test_mad_falls_back_to_the_mean_absolute_deviation_when_most_points_are_equal() -> None:
    """More than half the points equal makes the MAD 0; a counter that is mostly zero still has
    its outliers found (the regression: nothing was flagged at all)."""
    values = [10.0] * 51 + [11.0] * 48 + [1e6]
    result = anomaly.mad(values, 3.0)
    assert result.indices.tolist() == [99] == mad_oracle(values, 3.0)
    mostly_zero = [0.0] * 90 + [1.0] * 9 + [40.0]
    assert anomaly.mad(mostly_zero, 3.5).indices.tolist() == [99]
    assert_clean(anomaly.mad([3.0] * 40, 0.5), 40)


@settings(deadline=None)
@given(st.lists(moderate, min_size=1, max_size=80), thresholds)
@example([1.0, 1e-135, 0.0], 2.39)  # a MAD of 1e-135 of the peak is a MAD, not a zero one
@example([1.0, 1e-141, 0.0, 0.0], 2.39)  # ... and 1e-141 of it counts as zero
def test_mad_matches_oracle(values: list[float], threshold: float) -> None:
    result = anomaly.mad(values, threshold)
    median = statistics.median(values)
    spread = statistics.median([abs(v - median) for v in values])
    # The method works on the values divided by a power of two near the largest magnitude (an
    # exact division); a spread at or below _MIN_SPREAD of that counts as zero (the scores would
    # overflow), and the mean absolute deviation takes its place.
    floor = classic._MIN_SPREAD * classic._pow2_scale(max(abs(v) for v in values))
    if spread <= floor:
        mean_ad = statistics.fmean([abs(v - median) for v in values])
        if mean_ad <= floor:
            if mean_ad == 0:
                assert_clean(result, len(values))
            return
        scores = [(v - median) / (1.2533 * mean_ad) for v in values]
    else:
        scores = [0.6745 * (v - median) / spread for v in values]
    above = {i for i, z in enumerate(scores) if abs(z) > threshold * (1 + BORDER)}
    border = {i for i, z in enumerate(scores) if abs(abs(z) / threshold - 1) <= BORDER}
    assert_flags(result, above, border)
    assert result.zscores.tolist() == pytest.approx([scores[i] for i in result.indices])


# --- rolling_zscore ---------------------------------------------------------------------------


def rolling_oracle(
    ts: list[int], values: list[float], lookback: int
) -> list[tuple[Fraction, Fraction] | None]:
    """Per point, the exact (squared score, window variance) over (t - lookback, t), or None."""
    out: list[tuple[Fraction, Fraction] | None] = []
    for t, v in zip(ts, values, strict=True):
        window = [w for s, w in zip(ts, values, strict=True) if t - lookback < s < t]
        if len(window) < 2:
            out.append(None)
            continue
        mean, var, _ = exact_scores(window)
        out.append(((Fraction(v) - mean) ** 2 / var if var else Fraction(0), var))
    return out


@st.composite
def timed_series(draw: st.DrawFn) -> tuple[list[int], list[float]]:
    gaps = draw(st.lists(st.integers(1, 3000), max_size=60))
    ts = np.cumsum([1_700_000_000_000, *gaps]).tolist()
    level = st.integers(-5, 5).map(float)
    other = st.one_of(st.sampled_from([1e3, -1e3]), st.floats(-100, 100))
    values = [draw(st.one_of(level, level, other)) for _ in ts]
    return ts, values


@settings(max_examples=200, deadline=None)
@given(timed_series(), st.integers(1, 20_000), thresholds)
def test_rolling_matches_per_point_oracle(
    series: tuple[list[int], list[float]], lookback: int, threshold: float
) -> None:
    ts, values = series
    result = anomaly.rolling_zscore(np.array(ts), values, lookback, threshold)
    limit = Fraction(threshold) ** 2
    peak = Fraction(max(abs(v) for v in values))
    above, border = set(), set()
    for i, scored in enumerate(rolling_oracle(ts, values, lookback)):
        if scored is None:
            continue
        z2, var = scored
        if var == 0:
            # A flat window: a point off its value by more than the resolution is a jump out of
            # a flat stretch, flagged; within a millionth of it, either verdict is fine.
            level = next(w for s, w in zip(ts, values, strict=True) if ts[i] - lookback < s < ts[i])
            gap = abs(Fraction(values[i]) - Fraction(level))
            if gap > Fraction(1e-6) * max(abs(Fraction(level)), Fraction(1)):
                above.add(i)
            elif gap:
                border.add(i)
            continue
        if var < peak * peak * Fraction(1e-10) or abs(z2 / limit - 1) <= 1e-4:
            border.add(i)  # at the rounding floor of the prefix sums, or too close to call
        elif z2 > limit:
            above.add(i)
    assert_flags(result, above, border)
    assert result.count == len(values)
    assert result.mean == pytest.approx(statistics.fmean(values), rel=1e-9, abs=1e-6)


def test_rolling_window_is_open_and_excludes_the_point() -> None:
    ts = np.array([0, 1000, 2000, 3000, 4000])
    values = [0.0, 1.0, 0.0, 1.0, 100.0]
    # (2000, 4000) holds only t=3000: one point, so t=4000 is not scored.
    assert_clean(anomaly.rolling_zscore(ts, values, 2000, 1.0), 5)
    # (1999, 4000) holds 2000 and 3000: mean 0.5, stddev 0.5, z = 199.
    result = anomaly.rolling_zscore(ts, values, 2001, 1.0)
    assert result.indices.tolist() == [4]
    assert result.zscores.tolist() == pytest.approx([199.0])


def test_rolling_level_shift_is_not_flagged_forever() -> None:
    minute = 60_000
    values = rng_values(600)
    values[500:] += 80.0  # the level moves up for good at point 500
    ts = np.arange(600, dtype=np.int64) * minute
    assert anomaly.zscore(values, 1.5).indices.tolist() == list(range(500, 600))
    result = anomaly.rolling_zscore(ts, values, 60 * minute, 4.0)
    flagged = result.indices.tolist()
    assert flagged[:2] == [500, 501]
    assert all(500 <= i < 560 for i in flagged)  # once the hour has caught up: quiet


def test_rolling_slow_drift_is_not_flagged() -> None:
    values = rng_values(3000) + np.linspace(0.0, 200.0, 3000)
    ts = np.arange(3000, dtype=np.int64) * 60_000
    assert anomaly.zscore(values, 1.5).indices.size > 0
    assert anomaly.rolling_zscore(ts, values, 3_600_000, 4.5).indices.size == 0


def test_rolling_constant_stretch_inside_a_varying_series_scores_no_rounding_noise() -> None:
    values = np.concatenate([rng_values(5000) * 1e3, np.full(200, 0.1), [0.1 + 1e-12]])
    ts = np.arange(values.size, dtype=np.int64) * 1000
    result = anomaly.rolling_zscore(ts, values, 100_000, 3.0)
    assert not set(result.indices.tolist()) & set(range(5100, values.size))


def test_rolling_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="ascending"):
        anomaly.rolling_zscore([2, 1], [1.0, 2.0], 10, 3.0)
    with pytest.raises(ValueError, match="length"):
        anomaly.rolling_zscore([1, 2, 3], [1.0, 2.0], 10, 3.0)
    with pytest.raises(ValueError, match="lookback"):
        anomaly.rolling_zscore([1, 2], [1.0, 2.0], 0, 3.0)


# --- zscore_from_buckets -------------------------------------------------------------------


def bucketize(
    values: np.ndarray, sizes: list[int]
) -> tuple[list[int], list[float], list[float], list[float]]:
    """count, sum, sumsq and avg per bucket, summed point by point as a database would."""
    counts, sums, sumsqs, avgs, start = [], [], [], [], 0
    for size in sizes:
        chunk = values[start : start + size].tolist()
        start += size
        total = sumsq = 0.0
        for v in chunk:
            total += v
            sumsq += v * v
        counts.append(size)
        sums.append(total)
        sumsqs.append(sumsq)
        avgs.append(total / size if size else 0.0)
    return counts, sums, sumsqs, avgs


@settings(deadline=None)
@given(st.lists(st.integers(0, 30), min_size=1, max_size=30), st.integers(0, 2**32), thresholds)
def test_buckets_match_raw_moments(sizes: list[int], seed: int, threshold: float) -> None:
    raw = np.random.default_rng(seed).normal(100.0, 5.0, sum(sizes))
    counts, sums, sumsqs, avgs = bucketize(raw, sizes)
    result = anomaly.zscore_from_buckets(counts, sums, sumsqs, avgs, threshold)
    assert result.count == raw.size
    if raw.size == 0:
        assert result.mean is None
        return
    assert result.mean is not None
    assert result.mean == pytest.approx(statistics.fmean(raw.tolist()), rel=1e-12)
    assert result.stddev == pytest.approx(statistics.pstdev(raw.tolist()), rel=1e-6, abs=1e-9)
    if not result.stddev:
        assert_clean(result, raw.size)
        return
    expected = [
        i
        for i, a in enumerate(avgs)
        if counts[i] and abs(a - result.mean) / result.stddev > threshold
    ]
    assert result.indices.tolist() == expected


def test_buckets_flag_the_shifted_bucket_and_skip_empty_ones() -> None:
    raw = rng_values(600)
    raw[300:360] += 60.0
    counts, sums, sumsqs, avgs = bucketize(raw, [60] * 5 + [0] + [60] * 5)
    result = anomaly.zscore_from_buckets(counts, sums, sumsqs, avgs, 2.0)
    assert result.count == 600
    assert result.mean == pytest.approx(float(np.mean(raw)), rel=1e-12)
    assert result.stddev == pytest.approx(float(np.std(raw)), rel=1e-9)
    assert result.indices.tolist() == [6]  # bucket 5 is empty: raw[300:360] is bucket 6
    assert result.zscores[0] == pytest.approx((avgs[6] - np.mean(raw)) / np.std(raw))


@pytest.mark.parametrize("value", [0.1, 1e9 + 0.1, -7.3, 123456.789])
def test_buckets_of_a_constant_have_zero_stddev(value: float) -> None:
    counts, sums, sumsqs, avgs = bucketize(np.full(700, value), [60, 1, 59, 300, 280])
    result = anomaly.zscore_from_buckets(counts, sums, sumsqs, avgs, 0.5)
    assert result.stddev == 0.0
    assert_clean(result, 700)


def test_buckets_reject_mismatched_arrays() -> None:
    with pytest.raises(ValueError, match="length"):
        anomaly.zscore_from_buckets([1, 2], [1.0], [1.0], [1.0], 3.0)


# --- regressions: the four bugs of the classic methods ------------------------------------------


def test_rolling_flags_a_spike_after_a_quiet_window_inside_a_long_series() -> None:
    """A near-constant window in a series of large values used to be taken for constant by the
    rounding safeguard and its next point skipped: a trailing z of about 144,000 went unflagged."""
    rng = np.random.default_rng(5)
    values = np.concatenate(
        [rng.normal(5e4, 5e3, 5000), 0.1 + rng.normal(0, 1e-6, 300), [0.25], [0.1] * 3]
    )
    ts = np.arange(values.size, dtype=np.int64) * 1000
    result = anomaly.rolling_zscore(ts, values, 200_000, 4.0)
    spike = 5300
    assert spike in result.indices.tolist()
    window = values[spike - 199 : spike]
    expected = (values[spike] - window.mean()) / window.std()
    assert result.zscores[result.indices.tolist().index(spike)] == pytest.approx(expected, rel=1e-6)
    assert expected > 1e5


def test_rolling_flags_a_jump_out_of_an_exactly_flat_stretch() -> None:
    values = np.concatenate([np.full(100, 7.0), [7.5], np.full(20, 7.0)])
    ts = np.arange(values.size, dtype=np.int64) * 10_000
    result = anomaly.rolling_zscore(ts, values, 600_000, 3.0)
    assert result.indices.tolist()[0] == 100
    assert np.all(np.isfinite(result.zscores))


def test_a_score_exactly_at_the_threshold_is_not_flagged() -> None:
    """Scores exactly 3 in exact arithmetic that rounding puts one ulp above 3 used to be
    flagged, though the rule is strictly above the threshold."""
    values = np.array([0.0] * 9 + [1.0]) * 0.3  # population z of the last point: sqrt(9)
    _, std, dev = classic._moments(values / classic._pow2_scale(0.3))
    assert dev[-1] / std > 3.0  # the rounding the tolerance is for
    assert anomaly.zscore(values, 3.0).indices.size == 0
    assert anomaly.zscore(values, 2.9999).indices.tolist() == [9]
    series = np.array([0.0, 2.0] * 5 + [4.0])  # window mean 1, stddev 1: z of the last point 3
    stamps = np.arange(series.size, dtype=np.int64) * 1000
    assert anomaly.rolling_zscore(stamps, series, 60_000, 3.0).indices.size == 0
    assert anomaly.rolling_zscore(stamps, series, 60_000, 2.9999).indices.tolist() == [10]


def test_rolling_default_lookback_follows_coarse_data() -> None:
    """A 1-hour window holds no earlier point of hourly data: the default is then 60 intervals."""
    hourly = np.arange(200, dtype=np.int64) * 3_600_000
    assert anomaly.default_lookback_ms(hourly) == 60 * 3_600_000
    assert anomaly.default_lookback_ms(np.arange(500, dtype=np.int64) * 10_000) == 3_600_000
    assert anomaly.default_lookback_ms(np.array([0], dtype=np.int64)) == 3_600_000
