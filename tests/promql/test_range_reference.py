"""Range functions against the brute-force reference (reference.py), on generated series:
irregular timestamps, counters with resets, NaN and stale markers, windows of every size."""

from __future__ import annotations

import math
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from promql_support import STALE, Universe, close, instant, range_query, vector
from reference import extrapolated_rate, instant_value, over_time, window

FUNCTIONS = [
    "sum_over_time",
    "count_over_time",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "last_over_time",
    "present_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "changes",
    "resets",
    "deriv",
]
RATES = {"rate": (True, True), "increase": (True, False), "delta": (False, False)}


@st.composite
def samples(draw: st.DrawFn, special: bool = True) -> list[tuple[int, float]]:
    """A series: increasing timestamps (ms), values that are counter-like or arbitrary."""
    count = draw(st.integers(0, 40))
    gaps = draw(st.lists(st.integers(1, 40_000), min_size=count, max_size=count))
    start = draw(st.integers(0, 60_000))
    ts, t = [], start
    for gap in gaps:
        t += gap
        ts.append(t)
    if draw(st.booleans()):  # a counter with resets
        values, v = [], draw(st.floats(0, 1e6))
        for _ in ts:
            v = 0.0 if draw(st.integers(0, 9)) == 0 else v + draw(st.floats(0, 1000))
            values.append(v)
    else:
        finite = st.floats(-1e6, 1e6, allow_nan=False)
        values = draw(st.lists(finite, min_size=count, max_size=count))
    if special:
        for i in range(len(values)):
            roll = draw(st.integers(0, 29))
            if roll == 0:
                values[i] = math.nan
            elif roll == 1:
                values[i] = STALE
    return list(zip(ts, values, strict=True))


def universe_of(*many: list[tuple[int, float]]) -> Universe:
    """Series x{job="j0"}, x{job="j1"}, ... (evaluated together: one search over all rows)."""
    u = Universe()
    for i, series in enumerate(many):
        if series:
            u.add({"__name__": "x", "job": f"j{i}"}, [t for t, _ in series], [v for _, v in series])
    return u


def by_job(got: dict[tuple[tuple[str, str], ...], float]) -> dict[str, float]:
    return {dict(labels)["job"]: value for labels, value in got.items()}


EXAMPLES = int(os.environ.get("PROMQL_EXAMPLES", "25"))  # e.g. 500 for a deep run
CHECK = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", FUNCTIONS)
@CHECK
@given(
    many=st.lists(samples(), min_size=1, max_size=3),
    end=st.integers(0, 1_300_000),
    range_s=st.integers(1, 600),
)
def test_over_time_functions_match_the_reference(
    name: str, many: list[list[tuple[int, float]]], end: int, range_s: int
) -> None:
    got = by_job(vector(instant(universe_of(*many), f"{name}(x[{range_s}s])", end)))
    rel = 1e-6 if name in ("deriv", "stddev_over_time", "stdvar_over_time") else 1e-9
    for i, series in enumerate(many):
        expected = over_time(name, window(series, end, range_s * 1000))
        if expected is None:
            assert f"j{i}" not in got
        else:
            assert close(got[f"j{i}"], expected, rel), (got[f"j{i}"], expected)


@pytest.mark.parametrize("name", list(RATES))
@CHECK
@given(
    many=st.lists(samples(), min_size=1, max_size=3),
    end=st.integers(0, 1_300_000),
    range_s=st.integers(1, 600),
)
def test_rates_match_the_reference(
    name: str, many: list[list[tuple[int, float]]], end: int, range_s: int
) -> None:
    got = by_job(vector(instant(universe_of(*many), f"{name}(x[{range_s}s])", end)))
    for i, series in enumerate(many):
        w = window(series, end, range_s * 1000)
        expected = extrapolated_rate(w, end, range_s * 1000, *RATES[name])
        if expected is None:
            assert f"j{i}" not in got
            continue
        # A counter's resets are added in another order than Prometheus adds them: equal up
        # to rounding relative to the values, not to a result that cancelled out.
        scale = max((abs(v) for _, v in w if math.isfinite(v)), default=0.0)
        slack = 1e-9 * scale * (2 if name == "increase" else 2 / range_s)
        value = got[f"j{i}"]
        assert close(value, expected, 1e-9) or abs(value - expected) <= slack, (value, expected)


@pytest.mark.parametrize("name", ["irate", "idelta"])
@CHECK
@given(series=samples(), end=st.integers(0, 1_300_000), range_s=st.integers(1, 600))
def test_instant_rates_match_the_reference(
    name: str, series: list[tuple[int, float]], end: int, range_s: int
) -> None:
    got = vector(instant(universe_of(series), f"{name}(x[{range_s}s])", end))
    expected = instant_value(window(series, end, range_s * 1000), name == "irate")
    if expected is None:
        assert got == {}
        return
    (value,) = got.values()
    assert close(value, expected, 1e-9), (value, expected)


@CHECK
@given(
    series=samples(),
    end=st.integers(0, 1_300_000),
    range_s=st.integers(1, 600),
    q=st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0, -1.0, 2.0]),
)
def test_quantile_over_time_matches_the_reference(
    series: list[tuple[int, float]], end: int, range_s: int, q: float
) -> None:
    got = vector(instant(universe_of(series), f"quantile_over_time({q}, x[{range_s}s])", end))
    expected = over_time("quantile_over_time", window(series, end, range_s * 1000), q)
    if expected is None:
        assert got == {}
        return
    (value,) = got.values()
    assert close(value, expected), (value, expected)


@CHECK
@given(
    series=samples(special=False),
    end=st.integers(0, 1_300_000),
    range_s=st.integers(1, 600),
    ahead=st.integers(-3600, 3600),
)
def test_predict_linear_matches_the_reference(
    series: list[tuple[int, float]], end: int, range_s: int, ahead: int
) -> None:
    got = vector(instant(universe_of(series), f"predict_linear(x[{range_s}s], {ahead})", end))
    expected = over_time("predict_linear", window(series, end, range_s * 1000), ahead, end)
    if expected is None:
        assert got == {}
        return
    (value,) = got.values()
    assert close(value, expected, 1e-6) or abs(value - expected) < 1e-3, (value, expected)


@settings(max_examples=60, deadline=None)
@given(
    series=samples(),
    start=st.integers(0, 600_000),
    steps=st.integers(1, 30),
    step_s=st.integers(1, 120),
    range_s=st.integers(1, 300),
)
def test_range_queries_equal_instant_queries_at_each_step(
    series: list[tuple[int, float]], start: int, steps: int, step_s: int, range_s: int
) -> None:
    """A range query is the instant query at every step (one evaluation of all steps at once
    must not mix windows up)."""
    u = universe_of(series)
    step = step_s * 1000
    end = start + (steps - 1) * step
    expr = f"rate(x[{range_s}s]) + sum_over_time(x[{range_s}s])"
    got = range_query(u, expr, start, end, step)
    per_step = {}
    for item in got["result"]:
        for t, v in item["values"]:
            per_step[round(float(t) * 1000)] = float(v)
    for i in range(steps):
        t = start + i * step
        expected = vector(instant(u, expr, t))
        if not expected:
            assert t not in per_step
        else:
            assert close(per_step[t], next(iter(expected.values())))
