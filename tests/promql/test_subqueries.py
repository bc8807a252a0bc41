"""Subqueries: evaluation at multiples of their step, offset and @, nesting, step
invariance."""

from __future__ import annotations

import numpy as np
import pytest
from promql_support import Universe, instant, matrix, one, range_query, vector

from app.promql.engine import subquery_times
from app.promql.errors import TooManySamples

S = 1000


@pytest.fixture
def u() -> Universe:
    universe = Universe()
    ts = list(range(0, 900 * S + 1, 15 * S))
    universe.add({"__name__": "c", "job": "a"}, ts, [float(t // 1000) for t in ts])  # 1/s
    return universe


def test_inner_timestamps_are_multiples_of_the_step() -> None:
    times = subquery_times(np.array([125_000]), 60_000, 20_000, 100)
    assert times.tolist() == [80_000, 100_000, 120_000]  # (65 s, 125 s], aligned to 20 s
    assert subquery_times(np.array([120_000]), 60_000, 20_000, 100).tolist() == [
        80_000,
        100_000,
        120_000,
    ]  # 60 s itself is out: left-open
    assert subquery_times(np.array([120_000]), 60_000, None, 100).tolist() == [120_000]
    with pytest.raises(TooManySamples):
        subquery_times(np.array([10**9]), 10**9, 1, 1000)


def test_values_of_a_subquery(u: Universe) -> None:
    samples = matrix(instant(u, "c[1m:20s]", 300 * S))
    assert list(samples.values()) == [[(260.0, 255.0), (280.0, 270.0), (300.0, 300.0)]]


def test_functions_over_subqueries(u: Universe) -> None:
    assert one(instant(u, "max_over_time(rate(c[1m])[5m:1m])", 600 * S)) == pytest.approx(1.0)
    assert one(instant(u, "count_over_time(c[5m:1m])", 600 * S)) == 5
    assert one(instant(u, "sum_over_time(c[2m:1m] offset 5m)", 600 * S)) == 240.0 + 300.0
    assert one(instant(u, "last_over_time(c[2m:1m] @ 120)", 900 * S)) == 120.0


def test_nested_subqueries(u: Universe) -> None:
    got = one(instant(u, "max_over_time(min_over_time(c[2m:30s])[4m:1m])", 600 * S))
    # Outer steps 420, 480, 540, 600; at each, the minimum of c at t-90, t-60, t-30, t.
    assert got == 600.0 - 90.0


def test_range_query_over_a_subquery(u: Universe) -> None:
    got = range_query(u, "avg_over_time(c[1m:30s])", 300 * S, 420 * S, 60 * S)
    values = [v for _, v in next(iter(matrix(got).values()))]
    assert values == [285.0, 345.0, 405.0]  # mean of (t-30, t] snapshots


def test_step_invariant_parts_under_at(u: Universe) -> None:
    got = matrix(range_query(u, "c @ 300 + time() * 0", 0, 120 * S, 60 * S))
    assert [v for _, v in next(iter(got.values()))] == [300.0, 300.0, 300.0]
    # predict_linear inside a step-invariant part predicts from the query's start time.
    first = vector(instant(u, "predict_linear(c[1m] @ 300, 0)", 400 * S))
    assert next(iter(first.values())) == pytest.approx(400.0)
