"""Instant and range selectors: the left-open lookback and windows of Prometheus 3, stale
markers, offset, @, and the metric name in both of its forms."""

from __future__ import annotations

import math

import pytest
from promql_support import STALE, Universe, instant, matrix, one, range_query, vector

from app.promql.errors import BadData, Unsupported

S = 1000
M = 60 * S


@pytest.fixture
def u() -> Universe:
    universe = Universe()
    # x: a sample every 10 s from 0 to 600 s, value = seconds
    ts = list(range(0, 600 * S + 1, 10 * S))
    universe.add({"__name__": "x", "job": "a"}, ts, [t / S for t in ts])
    # y: samples at 0, 60, 120 s, then a stale marker at 130 s, and again from 400 s
    universe.add(
        {"__name__": "y", "job": "a"},
        [0, 60 * S, 120 * S, 130 * S, 400 * S],
        [1.0, 2.0, 3.0, STALE, 5.0],
    )
    universe.add({"__name__": "z", "job": "b", "env": "prod"}, [0], [7.0])
    return universe


def test_the_newest_sample_within_five_minutes(u: Universe) -> None:
    assert one(instant(u, "x", 305 * S)) == 300.0
    assert one(instant(u, "z", 299_999)) == 7.0


def test_lookback_is_left_open(u: Universe) -> None:
    """(t - 5m, t]: a sample exactly five minutes old is gone (Prometheus 3)."""
    assert vector(instant(u, "z", 300 * S)) == {}
    assert vector(instant(u, "z", 300 * S - 1)) != {}


def test_a_stale_marker_ends_the_series_until_the_next_sample(u: Universe) -> None:
    assert one(instant(u, "y", 125 * S)) == 3.0
    assert vector(instant(u, "y", 130 * S)) == {}
    assert vector(instant(u, "y", 399 * S)) == {}
    assert one(instant(u, "y", 400 * S)) == 5.0


def test_range_windows_are_left_open_and_skip_stale_markers(u: Universe) -> None:
    assert one(instant(u, "count_over_time(x[60s])", 300 * S)) == 6  # 250..300
    assert one(instant(u, "count_over_time(x[60s])", 305 * S)) == 6  # 250..300
    assert one(instant(u, "count_over_time(y[200s])", 200 * S)) == 2  # 60, 120; not the marker
    samples = matrix(instant(u, "y[200s]", 200 * S))
    assert list(samples.values()) == [[(60.0, 2.0), (120.0, 3.0)]]


def test_offset_and_negative_offset(u: Universe) -> None:
    assert one(instant(u, "x offset 1m", 300 * S)) == 240.0
    assert one(instant(u, "x offset -1m", 300 * S)) == 360.0
    assert one(instant(u, "sum_over_time(x[20s] offset 1m)", 300 * S)) == 230.0 + 240.0


def test_at_fixes_the_evaluation_time_at_every_step(u: Universe) -> None:
    got = matrix(range_query(u, "x @ 100", 200 * S, 260 * S, 30 * S))
    assert list(got.values()) == [[(200.0, 100.0), (230.0, 100.0), (260.0, 100.0)]]
    got = matrix(range_query(u, "x @ start()", 200 * S, 260 * S, 30 * S))
    assert [v for _, v in next(iter(got.values()))] == [200.0] * 3
    got = matrix(range_query(u, "x @ end() offset 10s", 200 * S, 260 * S, 30 * S))
    assert [v for _, v in next(iter(got.values()))] == [250.0] * 3
    assert one(instant(u, "rate(x[1m] @ 120)", 500 * S)) == pytest.approx(1.0)


def test_the_metric_name_in_both_forms(u: Universe) -> None:
    assert instant(u, 'x{job="a"}', 100 * S) == instant(u, '{__name__="x", job="a"}', 100 * S)
    both = vector(instant(u, '{__name__=~"x|y"}', 100 * S))
    assert {dict(k)["__name__"] for k in both} == {"x", "y"}
    assert vector(instant(u, '{__name__!~"x|y", job=~".+"}', 100 * S)) != {}


def test_label_matchers(u: Universe) -> None:
    assert len(vector(instant(u, '{job=~"a|b"}', 100 * S))) == 3
    assert len(vector(instant(u, '{job="b", env=""}', 100 * S))) == 0
    assert len(vector(instant(u, '{job="a", env=""}', 100 * S))) == 2  # env absent matches ""
    assert len(vector(instant(u, '{job=~"a.*", __name__!="y"}', 100 * S))) == 1
    with pytest.raises(BadData, match="at least one non-empty matcher"):
        instant(u, '{job=~"b|"}', 100 * S)


def test_range_selector_durations_as_grafana_renders_them(u: Universe) -> None:
    assert instant(u, "rate(x[1m0s])", 300 * S) == instant(u, "rate(x[60s])", 300 * S)
    assert one(instant(u, "count_over_time(x[1m15s])", 300 * S)) == 8  # (225, 300]: 230..300


@pytest.mark.parametrize(
    ("expr", "error"),
    [
        ("rate(x[1m]", BadData),
        ("x{a=}", BadData),
        ('x{a="b" or c="d"}', BadData),
        ("{}", BadData),
        ("rate(x)", BadData),
        ("x @ -5", Unsupported),
    ],
)
def test_invalid_or_unsupported_expressions(u: Universe, expr: str, error: type) -> None:
    with pytest.raises(error):
        instant(u, expr, 100 * S)


def test_matrix_answers_of_an_instant_query_are_sorted_by_labels(u: Universe) -> None:
    data = instant(u, '{job=~"a|b"}[30s]', 60 * S)
    names = [item["metric"]["__name__"] for item in data["result"]]
    assert names == sorted(names)


def test_nan_values_are_values(u: Universe) -> None:
    u.add({"__name__": "n"}, [0, 10 * S], [math.nan, 1.0])
    assert math.isnan(one(instant(u, "n", 5 * S)))
    assert one(instant(u, "count_over_time(n[1m])", 20 * S)) == 2
