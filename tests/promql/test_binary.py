"""Binary operators: arithmetic, comparisons with and without bool, vector matching and its
errors, set operators."""

from __future__ import annotations

import math

import pytest
from promql_support import Universe, instant, one, vector

from app.promql.errors import ExecutionError

S = 1000


@pytest.fixture
def u() -> Universe:
    universe = Universe()

    def add(name: str, value: float, **labels: str) -> None:
        universe.add({"__name__": name, **labels}, [0], [value])

    add("req", 10, job="api", method="get")
    add("req", 20, job="api", method="post")
    add("req", 30, job="web", method="get")
    add("err", 1, job="api", method="get")
    add("err", 4, job="web", method="get")
    add("limit", 100, job="api", version="1.2")
    add("limit", 200, job="web", version="2.0")
    add("twin", 1, job="api")
    add("twin", 2, job="api", extra="x")
    return universe


def test_scalar_arithmetic_and_comparisons(u: Universe) -> None:
    assert one(instant(u, "1 + 2 * 3 ^ 2 ^ 0.5", 0)) == pytest.approx(1 + 2 * 3 ** (2**0.5))
    assert one(instant(u, "-7 % 3", 0)) == -1  # Go's math.Mod keeps the dividend's sign
    assert one(instant(u, "1 / 0", 0)) == math.inf
    assert math.isnan(one(instant(u, "0 / 0", 0)))
    assert one(instant(u, "2 > bool 1", 0)) == 1
    assert one(instant(u, "1 atan2 1", 0)) == pytest.approx(math.pi / 4)


def test_vector_scalar_arithmetic_drops_the_name(u: Universe) -> None:
    got = vector(instant(u, 'req{job="web"} * 2', 0))
    assert got == {(("job", "web"), ("method", "get")): 60.0}


def test_comparisons_filter_and_keep_the_name(u: Universe) -> None:
    got = vector(instant(u, "req > 15", 0))
    assert {dict(k)["method"] for k in got} == {"post", "get"} and len(got) == 2
    assert all(dict(k)["__name__"] == "req" for k in got)
    assert sorted(vector(instant(u, "15 < req", 0)).values()) == [20, 30]  # the vector's values
    bools = vector(instant(u, "req > bool 15", 0))
    assert sorted(bools.values()) == [0, 1, 1] and all("__name__" not in dict(k) for k in bools)


def test_one_to_one_matching_ignores_the_name(u: Universe) -> None:
    got = vector(instant(u, "err / req", 0))
    assert got == {
        (("job", "api"), ("method", "get")): 0.1,
        (("job", "web"), ("method", "get")): pytest.approx(4 / 30),
    }


def test_on_and_ignoring(u: Universe) -> None:
    got = vector(instant(u, 'err / on(job, method) req{method="get"}', 0))
    assert set(got) == {(("job", "api"), ("method", "get")), (("job", "web"), ("method", "get"))}
    assert vector(instant(u, "sum by (job) (err) / limit", 0)) == {}  # version differs
    expected = {(("job", "api"),): 0.01, (("job", "web"),): 0.02}
    assert vector(instant(u, "sum by (job) (err) / ignoring(version) limit", 0)) == expected
    assert vector(instant(u, "sum by (job) (err) / on(job) limit", 0)) == expected


def test_group_left_copies_labels_from_the_one_side(u: Universe) -> None:
    got = vector(instant(u, "req / on(job) group_left(version) limit", 0))
    assert got[(("job", "api"), ("method", "post"), ("version", "1.2"))] == 0.2
    assert len(got) == 3
    right = vector(instant(u, "limit / on(job) group_right(version) req", 0))
    assert right[(("job", "web"), ("method", "get"), ("version", "2.0"))] == pytest.approx(200 / 30)


def test_many_to_many_is_an_error(u: Universe) -> None:
    with pytest.raises(ExecutionError, match="found duplicate series for the match group"):
        instant(u, "err / on(job) req", 0)
    with pytest.raises(ExecutionError, match="many-to-one matching must be explicit"):
        instant(u, "req / on(job) limit", 0)
    with pytest.raises(ExecutionError, match="grouping labels must ensure unique matches"):
        instant(u, '{__name__=~"req|err", job="web"} * on(job) group_left() limit', 0)


def test_same_labelset_after_the_name_is_dropped(u: Universe) -> None:
    with pytest.raises(ExecutionError, match="same labelset"):
        instant(u, '{__name__=~"req|err", job="web"} * 1', 0)
    # Comparisons keep the name: no clash.
    assert len(vector(instant(u, '{__name__=~"req|err", job="web"} > 0', 0))) == 2


def test_set_operators(u: Universe) -> None:
    assert len(vector(instant(u, "req and err", 0))) == 2
    assert len(vector(instant(u, "req and on(job) err", 0))) == 3
    assert len(vector(instant(u, "req unless err", 0))) == 1
    assert len(vector(instant(u, "req unless on(job) err", 0))) == 0
    both = vector(instant(u, "req or limit", 0))
    assert len(both) == 5
    assert len(vector(instant(u, "err or on(job) req", 0))) == 2  # req adds no new job
    assert len(vector(instant(u, "req or req", 0))) == 3


def test_bool_between_vectors(u: Universe) -> None:
    got = vector(instant(u, "err > bool on(job, method) req", 0))
    assert sorted(got.values()) == [0, 0]
