"""Aggregation operators, checked against hand-computed values."""

from __future__ import annotations

import math

import pytest
from promql_support import Universe, instant, one, range_query, vector

from app.promql.errors import ExecutionError, Unsupported

S = 1000


@pytest.fixture
def u() -> Universe:
    universe = Universe()
    rows = [
        ("a", "x", "1", 1.0),
        ("a", "y", "2", 4.0),
        ("b", "x", "3", 10.0),
        ("b", "y", "4", 2.0),
        ("b", "z", "5", math.nan),
    ]
    for job, zone, instance, value in rows:
        labels = {"__name__": "m", "job": job, "zone": zone, "instance": instance}
        universe.add(labels, [0, 60 * S], [value, value])
    return universe


def by(data: object, label: str) -> dict[str, float]:
    return {dict(k).get(label, ""): v for k, v in vector(data).items()}


def test_sum_avg_count_by_and_without(u: Universe) -> None:
    assert by(instant(u, 'sum by (job) (m{zone!="z"})', 60 * S), "job") == {"a": 5, "b": 12}
    assert by(instant(u, 'avg by (job) (m{zone!="z"})', 60 * S), "job") == {"a": 2.5, "b": 6}
    assert by(instant(u, "count by (job) (m)", 60 * S), "job") == {"a": 2, "b": 3}
    without = vector(instant(u, 'sum without (instance, zone) (m{zone!="z"})', 60 * S))
    assert without == {(("job", "a"),): 5.0, (("job", "b"),): 12.0}  # the name goes too
    assert math.isnan(by(instant(u, "sum by (job) (m)", 60 * S), "job")["b"])


def test_by_name_keeps_the_name(u: Universe) -> None:
    assert vector(instant(u, "count by (__name__) (m)", 60 * S)) == {(("__name__", "m"),): 5.0}


def test_min_max_ignore_nan_unless_all_are(u: Universe) -> None:
    assert by(instant(u, "max by (job) (m)", 60 * S), "job") == {"a": 4, "b": 10}
    assert by(instant(u, "min by (job) (m)", 60 * S), "job") == {"a": 1, "b": 2}
    assert math.isnan(one(instant(u, 'max(m{zone="z"})', 60 * S)))


def test_group_stddev_stdvar(u: Universe) -> None:
    assert one(instant(u, "group(m)", 60 * S)) == 1
    assert one(instant(u, 'stdvar(m{job="a"})', 60 * S)) == pytest.approx(2.25)
    assert one(instant(u, 'stddev(m{job="a"})', 60 * S)) == pytest.approx(1.5)
    assert math.isnan(one(instant(u, 'stddev(m{job="b"})', 60 * S)))


def test_sum_is_compensated() -> None:
    u = Universe()
    for i, v in enumerate([1e16, 1.0, -1e16]):
        u.add({"__name__": "k", "i": str(i)}, [0], [v])
    assert one(instant(u, "sum(k)", 0)) == 1.0


def test_quantile_sorts_nan_first(u: Universe) -> None:
    assert one(instant(u, 'quantile(0.5, m{job="a"})', 60 * S)) == 2.5
    assert one(instant(u, 'quantile(1, m{job="b"})', 60 * S)) == 10
    assert math.isnan(one(instant(u, 'quantile(0, m{job="b"})', 60 * S)))  # NaN is the lowest
    assert one(instant(u, "quantile(-1, m)", 60 * S)) == -math.inf
    assert one(instant(u, "quantile(2, m)", 60 * S)) == math.inf


def test_topk_and_bottomk(u: Universe) -> None:
    data = instant(u, "topk(2, m)", 60 * S)
    assert [item["value"][1] for item in data["result"]] == ["10", "4"]
    assert all(item["metric"]["__name__"] == "m" for item in data["result"])
    data = instant(u, "bottomk by (job) (1, m)", 60 * S)
    assert by(data, "instance") == {"1": 1.0, "4": 2.0}
    # NaN counts as the smallest for topk and the largest for bottomk: chosen last.
    assert len(vector(instant(u, "topk(5, m)", 60 * S))) == 5
    assert by(instant(u, 'bottomk(2, m{job="b"})', 60 * S), "instance") == {"4": 2, "3": 10}
    assert vector(instant(u, "topk(0, m)", 60 * S)) == {}


def test_topk_k_from_a_scalar_expression(u: Universe) -> None:
    assert len(vector(instant(u, "topk(scalar(count(m)) - 3, m)", 60 * S))) == 2
    with pytest.raises(ExecutionError, match="NaN"):
        instant(u, "topk(scalar(m), m)", 60 * S)


def test_topk_in_a_range_query_changes_series_between_steps() -> None:
    u = Universe()
    u.add({"__name__": "r", "i": "1"}, [0, 60 * S], [1.0, 5.0])
    u.add({"__name__": "r", "i": "2"}, [0, 60 * S], [3.0, 2.0])
    got = range_query(u, "topk(1, r)", 0, 60 * S, 60 * S)
    series = {item["metric"]["i"]: item["values"] for item in got["result"]}
    assert series == {"1": [[60, "5"]], "2": [[0, "3"]]}


def test_count_values_formats_like_go(u: Universe) -> None:
    v = Universe()
    for i, value in enumerate([1.0, 1.0, 0.5, 1e30, -0.0, math.inf, 1e-7]):
        v.add({"__name__": "c", "i": str(i)}, [0], [value])
    counts = by(instant(v, 'count_values("value", c)', 0), "value")
    assert counts == {
        "1": 2,
        "0.5": 1,
        "1000000000000000000000000000000": 1,  # shortest digits, zero-padded, as Go
        "-0": 1,
        "+Inf": 1,
        "0.0000001": 1,
    }
    grouped = vector(instant(u, 'count_values by (job) ("v", m{zone!="z"})', 60 * S))
    assert grouped[(("job", "a"), ("v", "1"))] == 1


def test_experimental_aggregations_are_refused(u: Universe) -> None:
    with pytest.raises(Unsupported, match="limitk"):
        instant(u, "limitk(1, m)", 60 * S)


def test_a_group_without_samples_at_a_step_has_no_value() -> None:
    u = Universe()
    u.add({"__name__": "g", "job": "a"}, [0], [1.0])
    u.add({"__name__": "g", "job": "b"}, [0, 400 * S], [1.0, 2.0])
    got = range_query(u, "sum by (job) (g)", 0, 400 * S, 200 * S)
    series = {item["metric"]["job"]: item["values"] for item in got["result"]}
    assert series == {"a": [[0, "1"], [200, "1"]], "b": [[0, "1"], [200, "1"], [400, "2"]]}
