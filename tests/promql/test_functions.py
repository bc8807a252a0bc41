"""Functions over instant vectors and scalars."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from promql_support import Universe, instant, matrix, one, range_query, vector

from app.promql.errors import ExecutionError, Unsupported

S = 1000


@pytest.fixture
def u() -> Universe:
    universe = Universe()
    universe.add({"__name__": "v", "i": "neg"}, [0, 100 * S], [-2.5, -2.5])
    universe.add({"__name__": "v", "i": "pos"}, [0, 100 * S], [3.7, 3.7])
    universe.add({"__name__": "v", "i": "nan"}, [0, 100 * S], [math.nan, math.nan])
    universe.add({"__name__": "w", "src": "a-b-c", "x": "1"}, [50 * S], [1.0])
    return universe


def by_i(data: object) -> dict[str, float]:
    return {dict(k).get("i", ""): value for k, value in vector(data).items()}


@pytest.mark.parametrize(
    ("fn", "neg", "pos"),
    [
        ("abs", 2.5, 3.7),
        ("ceil", -2.0, 4.0),
        ("floor", -3.0, 3.0),
        ("round", -2.0, 4.0),  # ties round up
        ("sgn", -1.0, 1.0),
        ("exp", math.exp(-2.5), math.exp(3.7)),
        ("sqrt", math.nan, math.sqrt(3.7)),
        ("ln", math.nan, math.log(3.7)),
        ("log2", math.nan, math.log2(3.7)),
        ("log10", math.nan, math.log10(3.7)),
        ("deg", -2.5 * 180 / math.pi, 3.7 * 180 / math.pi),
        ("rad", -2.5 * math.pi / 180, 3.7 * math.pi / 180),
        ("sin", math.sin(-2.5), math.sin(3.7)),
        ("atan", math.atan(-2.5), math.atan(3.7)),
    ],
)
def test_math_functions(u: Universe, fn: str, neg: float, pos: float) -> None:
    got = by_i(instant(u, f"{fn}(v)", 100 * S))
    assert got["neg"] == pytest.approx(neg, nan_ok=True)
    assert got["pos"] == pytest.approx(pos)
    assert math.isnan(got["nan"])
    assert all("__name__" not in dict(k) for k in vector(instant(u, f"{fn}(v)", 100 * S)))


def test_round_to_nearest_clamp(u: Universe) -> None:
    assert by_i(instant(u, "round(v, 0.5)", 0))["pos"] == 3.5
    got = by_i(instant(u, "clamp(v, -1, 1)", 0))
    assert got["neg"] == -1 and got["pos"] == 1 and math.isnan(got["nan"])
    assert by_i(instant(u, "clamp_min(v, 0)", 0))["neg"] == 0
    assert by_i(instant(u, "clamp_max(v, 0)", 0))["pos"] == 0
    assert vector(instant(u, "clamp(v, 2, 1)", 0)) == {}  # max below min: nothing


def test_scalar_vector_time(u: Universe) -> None:
    assert math.isnan(one(instant(u, "scalar(v)", 0)))  # more than one series
    assert one(instant(u, 'scalar(v{i="pos"})', 0)) == 3.7
    assert vector(instant(u, "vector(2)", 0)) == {(): 2.0}
    assert one(instant(u, "time()", 12_345)) == 12.345
    got = matrix(range_query(u, "vector(time())", 0, 20 * S, 10 * S))
    assert got == {(): [(0.0, 0.0), (10.0, 10.0), (20.0, 20.0)]}
    assert one(instant(u, "pi()", 0)) == math.pi


def test_timestamp_of_samples_and_of_steps(u: Universe) -> None:
    assert by_i(instant(u, "timestamp(v)", 130 * S))["pos"] == 100.0  # the sample's own time
    assert by_i(instant(u, "timestamp(v + 1)", 130 * S))["pos"] == 130.0  # the step's time
    assert by_i(instant(u, "timestamp(v @ 50)", 130 * S))["pos"] == 0.0


def test_sort_orders_an_instant_answer(u: Universe) -> None:
    up = [r["metric"]["i"] for r in instant(u, "sort(v)", 0)["result"]]
    down = [r["metric"]["i"] for r in instant(u, "sort_desc(v)", 0)["result"]]
    assert up == ["neg", "pos", "nan"] and down == ["pos", "neg", "nan"]  # NaN last both ways
    assert all(r["metric"]["__name__"] == "v" for r in instant(u, "sort(v)", 0)["result"])


def test_label_replace(u: Universe) -> None:
    def labels(expr: str) -> dict[str, str]:
        (key,) = vector(instant(u, expr, 50 * S))
        return dict(key)

    assert labels('label_replace(w, "d", "$1+$2", "src", "(\\\\w)-(\\\\w)-.*")')["d"] == "a+b"
    assert labels('label_replace(w, "d", "${first}x", "src", "(?P<first>a).*")')["d"] == "ax"
    assert labels('label_replace(w, "d", "$1x", "src", "(a).*")').get("d") is None  # $1x
    assert labels('label_replace(w, "d", "$$1", "src", ".*")')["d"] == "$1"
    assert "d" not in labels('label_replace(w, "d", "z", "src", "nomatch")')
    assert "x" not in labels('label_replace(w, "x", "", "src", ".*")')  # empty removes
    assert labels('label_replace(w, "__name__", "renamed", "x", "1")')["__name__"] == "renamed"
    with pytest.raises(ExecutionError, match="invalid regular expression"):
        instant(u, 'label_replace(w, "d", "", "src", "(")', 50 * S)
    with pytest.raises(ExecutionError, match="same labelset"):
        instant(u, 'label_replace(v, "i", "same", "i", ".*")', 0)


def test_label_join(u: Universe) -> None:
    (key,) = vector(instant(u, 'label_join(w, "j", "/", "src", "x", "none")', 50 * S))
    assert dict(key)["j"] == "a-b-c/1/"


def test_absent(u: Universe) -> None:
    assert vector(instant(u, 'absent(nope{job="x", env=~"p.*"})', 0)) == {(("job", "x"),): 1.0}
    assert vector(instant(u, 'absent(nope{job="x", job="y"})', 0)) == {(): 1.0}
    assert vector(instant(u, "absent(v)", 0)) == {}
    assert vector(instant(u, "absent(sum(nope))", 0)) == {(): 1.0}
    got = vector(instant(u, 'absent_over_time(w{x="1"}[10s])', 70 * S))
    assert got == {(("x", "1"),): 1.0}
    assert vector(instant(u, "absent_over_time(w[30s])", 70 * S)) == {}


@pytest.mark.parametrize(
    "when", ["2024-02-29T23:59:59Z", "2023-12-31T00:00:00Z", "2000-03-01T12:34:56Z"]
)
def test_date_functions(when: str) -> None:
    moment = datetime.fromisoformat(when)
    seconds = int(moment.timestamp())
    u = Universe()
    u.add({"__name__": "t"}, [0], [float(seconds)])
    expected = {
        "year": moment.year,
        "month": moment.month,
        "day_of_month": moment.day,
        "day_of_week": moment.isoweekday() % 7,
        "day_of_year": moment.timetuple().tm_yday,
        "hour": moment.hour,
        "minute": moment.minute,
        "days_in_month": 29 if (moment.year, moment.month) == (2024, 2) else 31,
    }
    for fn, value in expected.items():
        assert one(instant(u, f"{fn}(t)", 0)) == value, fn
        assert one(instant(u, f"{fn}()", seconds * S)) == value, fn
    assert datetime.fromtimestamp(seconds, UTC) == moment


def test_native_histogram_functions_see_no_histograms(u: Universe) -> None:
    assert vector(instant(u, "histogram_count(v)", 0)) == {}


def test_experimental_functions_are_refused(u: Universe) -> None:
    with pytest.raises(Unsupported, match="sort_by_label"):
        instant(u, 'sort_by_label(v, "i")', 0)
