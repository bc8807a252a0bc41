"""histogram_quantile over classic buckets."""

from __future__ import annotations

import math

import pytest
from promql_support import Universe, instant, one, vector

BUCKETS = {"0.1": 10.0, "0.5": 30.0, "1": 40.0, "+Inf": 50.0}


def histogram(buckets: dict[str, float], **labels: str) -> Universe:
    u = Universe()
    for le, count in buckets.items():
        u.add({"__name__": "h_bucket", "le": le, **labels}, [0], [count])
    return u


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.1, 0.05),  # 5 of 10 in the first bucket, from 0
        (0.5, 0.1 + 0.4 * (15 / 20)),  # rank 25: 15 into the (0.1, 0.5] bucket of 20
        (0.8, 1.0),  # rank 40: the top of (0.5, 1]
        (0.9, 1.0),  # rank 45: in +Inf, so the second-highest bound
        (0.0, 0.0),
        (1.0, 1.0),
        (-0.5, -math.inf),
        (1.5, math.inf),
    ],
)
def test_interpolation(q: float, expected: float) -> None:
    assert one(instant(histogram(BUCKETS), f"histogram_quantile({q}, h_bucket)", 0)) == (
        pytest.approx(expected)
    )


def test_needs_an_inf_bucket_and_two_buckets() -> None:
    assert math.isnan(
        one(instant(histogram({"1": 3, "2": 5}), "histogram_quantile(0.5, h_bucket)", 0))
    )
    assert math.isnan(one(instant(histogram({"+Inf": 5}), "histogram_quantile(0.5, h_bucket)", 0)))
    assert one(instant(histogram({"1": 3}), "histogram_quantile(2, h_bucket)", 0)) == math.inf


def test_no_observations_is_nan() -> None:
    empty = {"1": 0.0, "+Inf": 0.0}
    assert math.isnan(one(instant(histogram(empty), "histogram_quantile(0.5, h_bucket)", 0)))


def test_non_monotonic_counts_are_made_monotonic() -> None:
    u = histogram({"1": 10.0, "2": 8.0, "4": 20.0, "+Inf": 20.0})
    assert one(instant(u, "histogram_quantile(0.5, h_bucket)", 0)) == pytest.approx(1.0)


def test_negative_first_bound() -> None:
    u = histogram({"-1": 10.0, "0": 10.0, "1": 20.0, "+Inf": 20.0})
    assert one(instant(u, "histogram_quantile(0.25, h_bucket)", 0)) == -1.0


def test_groups_keep_their_labels_and_lose_the_name() -> None:
    u = histogram(BUCKETS, job="a")
    for le, count in {"1": 1.0, "+Inf": 2.0}.items():
        u.add({"__name__": "h_bucket", "le": le, "job": "b"}, [0], [count])
    u.add({"__name__": "h_bucket", "le": "oops", "job": "b"}, [0], [5.0])  # skipped
    got = vector(instant(u, "histogram_quantile(0.5, h_bucket)", 0))
    assert set(got) == {(("job", "a"),), (("job", "b"),)}
    assert got[(("job", "b"),)] == pytest.approx(1.0)


def test_over_rates_of_buckets() -> None:
    u = Universe()
    for le, step in {"0.5": 1.0, "1": 3.0, "+Inf": 4.0}.items():
        u.add({"__name__": "d_bucket", "le": le}, [0, 30_000, 60_000], [0, step * 30, step * 60])
    got = one(instant(u, "histogram_quantile(0.5, sum by (le) (rate(d_bucket[1m])))", 60_000))
    assert got == pytest.approx(0.5 + 0.5 * (1 / 2))
