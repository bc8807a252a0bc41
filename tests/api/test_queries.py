"""Catalogue and queries: GET /metrics/names, /query/raw, /query/rollup, and the OpenAPI page.

Most cases run against `shared_client` (one app per backend on one database for the whole module):
the label-filter cases read one planted metric, the others write under their own metric names.
Cases that need an empty catalogue use `client`.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import run_inline
from fastapi.testclient import TestClient

T0 = "2025-12-03T12:00:00Z"
T0_S = 1_764_763_200  # T0 in epoch seconds; a multiple of 3600
WINDOW = {"start_time": "2025-12-03T11:00:00Z", "end_time": "2025-12-03T13:00:00Z"}


@pytest.fixture
def metric() -> str:
    """A metric name no other test uses."""
    return f"m_{uuid.uuid4().hex[:12]}"


def iso_ms(ms: int) -> str:
    """Epoch milliseconds -> RFC 3339 in UTC, formatted as answers are (`.250Z` only if needed)."""
    seconds, millis = divmod(ms, 1000)
    base = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{millis:03d}Z" if millis else f"{base}Z"


def parse_ms(text: str) -> int:
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def backfill(client: TestClient, items: list[dict[str, Any]]) -> None:
    answer = client.post("/backfill/import", json={"metrics": items})
    assert answer.status_code == 201, answer.text
    assert answer.json()["imported"] == len(items)


def get_ok(client: TestClient, path: str, **params: Any) -> dict[str, Any]:
    answer = client.get(path, params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def stamps(body: dict[str, Any]) -> list[str]:
    return [p["timestamp"] for s in body["series"] for p in s["points"]]


# -- GET /metrics/names ---------------------------------------------------------------------


def test_names_of_an_empty_store(client: TestClient) -> None:
    assert get_ok(client, "/metrics/names") == {"names": []}


NAMES = ["zeta", "alpha", "Beta", "mid:sub", "_under", "alpha_2", "alpha:x", "alphaX2", "alpha"]
SORTED_NAMES = ["Beta", "_under", "alpha", "alpha:x", "alphaX2", "alpha_2", "mid:sub", "zeta"]


def test_names_are_distinct_and_sorted(client: TestClient) -> None:
    items = [
        {"metric_name": name, "value": 1, "timestamp": T0, "labels": {"i": str(i)}}
        for i, name in enumerate(NAMES)
    ]
    backfill(client, items)
    assert get_ok(client, "/metrics/names") == {"names": SORTED_NAMES}
    assert get_ok(client, "/metrics/names", prefix="") == {"names": SORTED_NAMES}


@pytest.fixture(scope="module")
def named(shared_client: TestClient) -> None:
    """NAMES in the shared database (whose other metrics are named m_... and planted_...)."""
    backfill(shared_client, [{"metric_name": n, "value": 1, "timestamp": T0} for n in set(NAMES)])


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        pytest.param("alpha", ["alpha", "alpha:x", "alphaX2", "alpha_2"], id="alpha"),
        pytest.param("alpha_", ["alpha_2"], id="underscore-is-literal"),
        pytest.param("alpha:", ["alpha:x"], id="colon"),
        pytest.param("a", ["alpha", "alpha:x", "alphaX2", "alpha_2"], id="one-char"),
        pytest.param("B", ["Beta"], id="case-sensitive-upper"),
        pytest.param("b", [], id="case-sensitive-lower"),
        pytest.param("ALPHA", [], id="case-sensitive-word"),
        pytest.param("_", ["_under"], id="underscore-alone"),
        pytest.param("zeta", ["zeta"], id="whole-name"),
        pytest.param("zetas", [], id="longer-than-name"),
        pytest.param("%", [], id="percent-is-literal"),
        pytest.param("%a", [], id="percent-wildcard"),
    ],
)
def test_names_prefix(
    shared_client: TestClient, named: None, prefix: str, expected: list[str]
) -> None:
    assert get_ok(shared_client, "/metrics/names", prefix=prefix) == {"names": expected}


# -- GET /query/raw: ranges -----------------------------------------------------------------


@pytest.fixture
def five_points(shared_client: TestClient, metric: str) -> str:
    """Points at T0 + 0..4 s with values 0..4."""
    backfill(
        shared_client,
        [{"metric_name": metric, "value": float(i), "timestamp": T0_S + i} for i in range(5)],
    )
    return metric


@pytest.mark.parametrize(
    ("start", "end", "values"),
    [
        pytest.param(T0_S + 1, T0_S + 3, [1.0, 2.0, 3.0], id="both-ends-inclusive"),
        pytest.param(T0_S + 1.001, T0_S + 2.999, [2.0], id="ms-inside"),
        pytest.param(T0_S + 2, T0_S + 2, [2.0], id="start-equals-end"),
        pytest.param(T0_S + 2.001, T0_S + 2.999, [], id="between-points"),
        pytest.param("2025-12-03T14:00:01+02:00", "2025-12-03T12:00:03", [1.0, 2.0, 3.0], id="iso"),
        pytest.param(str(T0_S + 4), "2025-12-03T12:00:05Z", [4.0], id="epoch-string"),
        pytest.param(T0_S - 3600, T0_S, [0.0], id="ends-at-first"),
    ],
)
def test_raw_range_is_inclusive_at_both_ends(
    shared_client: TestClient, five_points: str, start: object, end: object, values: list[float]
) -> None:
    body = get_ok(
        shared_client, "/query/raw", metric_name=five_points, start_time=start, end_time=end
    )
    got = [p["value"] for s in body["series"] for p in s["points"]]
    assert got == values


def test_raw_echoes_the_range_in_utc(shared_client: TestClient, five_points: str) -> None:
    body = get_ok(
        shared_client,
        "/query/raw",
        metric_name=five_points,
        start_time="2025-12-03T14:00:01.5+02:00",
        end_time=T0_S + 3,
    )
    assert body["metric_name"] == five_points
    assert body["start_time"] == "2025-12-03T12:00:01.500Z"
    assert body["end_time"] == "2025-12-03T12:00:03Z"
    assert body["truncated"] is False
    assert body["series"] == [
        {
            "labels": {},
            "points": [
                {"timestamp": "2025-12-03T12:00:02Z", "value": 2.0},
                {"timestamp": "2025-12-03T12:00:03Z", "value": 3.0},
            ],
        }
    ]


def test_raw_default_range_is_the_last_hour(shared_client: TestClient, metric: str) -> None:
    now = time.time_ns() // 1_000_000
    ages_min = [120, 61, 50, 10]
    backfill(
        shared_client,
        [
            {"metric_name": metric, "value": float(age), "timestamp": iso_ms(now - age * 60_000)}
            for age in ages_min
        ],
    )
    body = get_ok(shared_client, "/query/raw", metric_name=metric)
    assert [p["value"] for s in body["series"] for p in s["points"]] == [50.0, 10.0]
    end, start = parse_ms(body["end_time"]), parse_ms(body["start_time"])
    assert end - start == 3_600_000
    assert now <= end <= time.time_ns() // 1_000_000 + 1


def test_raw_start_defaults_to_one_hour_before_end(shared_client: TestClient, metric: str) -> None:
    end = (T0_S + 1800) * 1000
    offsets_ms = [-3_600_001, -3_600_000, -1, 0, 1]
    backfill(
        shared_client,
        [
            {"metric_name": metric, "value": float(i), "timestamp": iso_ms(end + off)}
            for i, off in enumerate(offsets_ms)
        ],
    )
    body = get_ok(shared_client, "/query/raw", metric_name=metric, end_time=iso_ms(end))
    assert body["start_time"] == "2025-12-03T11:30:00Z"
    assert [p["value"] for s in body["series"] for p in s["points"]] == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    ("params", "status", "fragment"),
    [
        pytest.param(
            {"start_time": T0_S + 2, "end_time": T0_S + 1}, 422, "start_time", id="start-after-end"
        ),
        pytest.param({"start_time": "yesterday"}, 422, "start_time", id="start-words"),
        pytest.param({"start_time": "2025-02-30T00:00:00Z"}, 422, "start_time", id="start-feb-30"),
        pytest.param({"start_time": ""}, 422, "start_time", id="start-empty"),
        pytest.param({"end_time": "tomorrow"}, 422, "end_time", id="end-words"),
        pytest.param({"end_time": "nan"}, 422, "end_time", id="end-nan"),
        pytest.param({"limit": 0}, 422, "limit", id="limit-0"),
        pytest.param({"limit": -5}, 422, "limit", id="limit-negative"),
        pytest.param({"limit": "many"}, 422, "limit", id="limit-words"),
        pytest.param({"label": "host"}, 422, "label", id="label-no-colon"),
        pytest.param({"label": "1h:x"}, 422, "label", id="label-bad-name"),
        pytest.param({"label": ":x"}, 422, "label", id="label-empty-name"),
    ],
)
def test_raw_bad_parameters(
    shared_client: TestClient, five_points: str, params: dict[str, Any], status: int, fragment: str
) -> None:
    answer = shared_client.get("/query/raw", params={"metric_name": five_points, **params})
    assert answer.status_code == status, answer.text
    assert fragment in answer.json()["detail"]


@pytest.mark.parametrize("path", ["/query/raw", "/query/rollup"])
def test_unknown_metric_is_404(shared_client: TestClient, path: str) -> None:
    answer = shared_client.get(path, params={"metric_name": "never_written", "window": "1m"})
    assert answer.status_code == 404, answer.text
    detail = answer.json()["detail"]
    assert "metric_name" in detail
    assert "never_written" in detail


@pytest.mark.parametrize("path", ["/query/raw", "/query/rollup"])
def test_metric_name_is_required(shared_client: TestClient, path: str) -> None:
    answer = shared_client.get(path, params={"window": "1m"})
    assert answer.status_code == 422, answer.text
    assert "metric_name" in answer.json()["detail"]


def test_known_metric_with_no_matching_series_is_empty(
    shared_client: TestClient, five_points: str
) -> None:
    body = get_ok(
        shared_client, "/query/raw", metric_name=five_points, label="host:nowhere", **WINDOW
    )
    assert body["series"] == []
    body = get_ok(
        shared_client,
        "/query/raw",
        metric_name=five_points,
        start_time="2020-01-01T00:00:00Z",
        end_time="2020-01-01T01:00:00Z",
    )
    assert stamps(body) == []


# -- GET /query/raw: limit, order -----------------------------------------------------------


@pytest.fixture
def two_series(shared_client: TestClient, metric: str) -> str:
    """Series h=a and h=b, 5 points each at T0 + 0..4 s, written newest first."""
    backfill(
        shared_client,
        [
            {"metric_name": metric, "value": 10 * k + i, "timestamp": T0_S + i, "labels": {"h": h}}
            for i in reversed(range(5))
            for k, h in enumerate("ba")
        ],
    )
    return metric


@pytest.mark.parametrize(
    ("limit", "count", "truncated"),
    [
        pytest.param(1, 1, True, id="1"),
        pytest.param(3, 3, True, id="3"),
        pytest.param(5, 5, True, id="5"),
        pytest.param(7, 7, True, id="7"),
        pytest.param(9, 9, True, id="9"),
        pytest.param(10, 10, False, id="10-exactly-all"),
        pytest.param(11, 10, False, id="11"),
    ],
)
def test_raw_limit_and_truncated(
    shared_client: TestClient, two_series: str, limit: int, count: int, truncated: bool
) -> None:
    body = get_ok(shared_client, "/query/raw", metric_name=two_series, limit=limit, **WINDOW)
    assert body["truncated"] is truncated
    assert len(stamps(body)) == count
    everything = {("a", i, float(10 + i)) for i in range(5)} | {
        ("b", i, float(i)) for i in range(5)
    }
    for series in body["series"]:
        got = [
            (series["labels"]["h"], parse_ms(p["timestamp"]) // 1000 - T0_S, p["value"])
            for p in series["points"]
        ]
        assert set(got) <= everything
        assert [t for _, t, _ in got] == sorted(t for _, t, _ in got)


def test_raw_points_ascending_and_series_ordered(
    shared_client: TestClient, two_series: str
) -> None:
    body = get_ok(shared_client, "/query/raw", metric_name=two_series, **WINDOW)
    assert body["series"] == [
        {
            "labels": {"h": "a"},
            "points": [
                {"timestamp": f"2025-12-03T12:00:0{i}Z", "value": float(10 + i)} for i in range(5)
            ],
        },
        {
            "labels": {"h": "b"},
            "points": [
                {"timestamp": f"2025-12-03T12:00:0{i}Z", "value": float(i)} for i in range(5)
            ],
        },
    ]


def test_raw_limit_is_capped_by_max_query_points(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(max_query_points=4)
    backfill(
        client, [{"metric_name": "capped", "value": i, "timestamp": T0_S + i} for i in range(6)]
    )
    body = get_ok(client, "/query/raw", metric_name="capped", limit=100, **WINDOW)
    assert stamps(body) == [f"2025-12-03T12:00:0{i}Z" for i in range(4)]
    assert body["truncated"] is True


# -- label filters --------------------------------------------------------------------------

# value -> labels; the value identifies the series in answers.
PLANTED: dict[int, dict[str, str]] = {
    1: {"host": "server1", "region": "us-west"},
    2: {"host": "server1", "region": "ap-south", "env": "prod"},
    3: {"host": "server2", "region": "eu-west"},
    4: {"host": "server2", "region": "us-east"},
    5: {"host": "server10", "region": "us-west"},
    6: {"host": "server3"},
    7: {"region": "eu-west"},
    8: {"host": "db:5432", "region": "us-west", "path": 'say "hi"'},
}
IN_LABEL_ORDER = [2, 8, 1, 5, 3, 4, 6, 7]


@pytest.fixture(scope="module")
def planted(shared_client: TestClient) -> str:
    metric = "planted_cpu"
    backfill(
        shared_client,
        [
            {"metric_name": metric, "value": float(v), "timestamp": T0, "labels": labels}
            for v, labels in PLANTED.items()
        ],
    )
    return metric


def selected(client: TestClient, metric: str, **params: Any) -> list[int]:
    """The planted series an answer holds, by value, in answer order; checks their labels."""
    body = get_ok(client, "/query/raw", metric_name=metric, **WINDOW, **params)
    out = []
    for series in body["series"]:
        [point] = series["points"]
        value = int(point["value"])
        assert series["labels"] == PLANTED[value]
        out.append(value)
    return out


def test_series_are_ordered_by_labels(shared_client: TestClient, planted: str) -> None:
    assert selected(shared_client, planted) == IN_LABEL_ORDER


def in_order(*values: int) -> list[int]:
    return [v for v in IN_LABEL_ORDER if v in values]


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        pytest.param(["host:server1"], in_order(1, 2), id="one"),
        pytest.param(["host:server1", "region:us-west"], in_order(1), id="and"),
        pytest.param(["region:us-west", "host:server1"], in_order(1), id="and-other-order"),
        pytest.param(["host:server1", "region:eu-west"], [], id="and-disjoint"),
        pytest.param(["region:eu-west"], in_order(3, 7), id="region"),
        pytest.param(["host:server"], [], id="exact-not-prefix"),
        pytest.param(["host:SERVER1"], [], id="case-sensitive"),
        pytest.param(["host:db:5432"], in_order(8), id="value-with-colon"),
        pytest.param(['path:say "hi"'], in_order(8), id="value-with-quotes"),
        pytest.param(["env:prod"], in_order(2), id="rare-label"),
        pytest.param(["nolabel:x"], [], id="unknown-label"),
        pytest.param(["host:server1", "host:server1"], in_order(1, 2), id="repeated"),
    ],
)
def test_label_filters(
    shared_client: TestClient, planted: str, labels: list[str], expected: list[int]
) -> None:
    assert selected(shared_client, planted, label=labels) == expected


def all_but(*values: int) -> list[int]:
    return [v for v in IN_LABEL_ORDER if v not in values]


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        pytest.param('{host=~"server[12]",region!="eu-west"}', in_order(1, 2, 4), id="api-example"),
        pytest.param('{host="server1"}', in_order(1, 2), id="eq"),
        pytest.param('{host!="server1"}', all_but(1, 2), id="neq"),
        pytest.param('{host=~"server1"}', in_order(1, 2), id="re-anchored-end"),
        pytest.param('{host=~"erver1"}', [], id="re-anchored-start"),
        pytest.param('{host=~".*erver1"}', in_order(1, 2), id="re-leading-wildcard"),
        pytest.param('{host=~"server1.*"}', in_order(1, 2, 5), id="re-trailing-wildcard"),
        pytest.param('{host=~"server1|server2"}', in_order(1, 2, 3, 4), id="re-alternation"),
        pytest.param('{host=~"SERVER1"}', [], id="re-case-sensitive"),
        pytest.param('{host!~"server.*"}', in_order(7, 8), id="nre"),
        pytest.param('{host!~"server1"}', all_but(1, 2), id="nre-anchored"),
        pytest.param('{region=""}', in_order(6), id="absent-eq-empty"),
        pytest.param('{host=""}', in_order(7), id="absent-host-eq-empty"),
        pytest.param('{region!=""}', all_but(6), id="present-neq-empty"),
        pytest.param('{region=~""}', in_order(6), id="absent-re-empty"),
        pytest.param('{region=~"|eu-west"}', in_order(3, 6, 7), id="absent-or-value"),
        pytest.param('{region!~"eu-.*"}', all_but(3, 7), id="nre-keeps-absent"),
        pytest.param('{env=~".+"}', in_order(2), id="re-present"),
        pytest.param('{path="say \\"hi\\""}', in_order(8), id="escaped-quotes"),
        pytest.param('{host=~"server[12]",host!="server2"}', in_order(1, 2), id="same-label-twice"),
        pytest.param('{host="server1",}', in_order(1, 2), id="trailing-comma"),
        pytest.param('{ host = "server1" , region = "us-west" }', in_order(1), id="spaces"),
        pytest.param('{host=~"db:\\\\d+"}', in_order(8), id="re-escape"),
        pytest.param('{host=~"(?i)SERVER1"}', in_order(1, 2), id="re-case-insensitive-flag"),
    ],
)
def test_match_filters(
    shared_client: TestClient, planted: str, match: str, expected: list[int]
) -> None:
    assert selected(shared_client, planted, match=match) == expected


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param(
            {"label": "region:us-west", "match": '{host=~"server1.*"}'}, in_order(1, 5), id="1"
        ),
        pytest.param(
            {"label": "host:server2", "match": '{region!="eu-west"}'}, in_order(4), id="2"
        ),
        pytest.param({"label": "host:server3", "match": '{region=""}'}, in_order(6), id="3"),
        pytest.param(
            {"label": ["host:server1", "env:prod"], "match": '{region=~"ap-.*"}'},
            in_order(2),
            id="4",
        ),
        pytest.param(
            {"label": "host:server1", "match": '{host="server2"}'}, [], id="contradiction"
        ),
    ],
)
def test_label_and_match_combined(
    shared_client: TestClient, planted: str, params: dict[str, Any], expected: list[int]
) -> None:
    assert selected(shared_client, planted, **params) == expected


@pytest.mark.parametrize(
    "match",
    [
        pytest.param('host="server1"', id="no-braces"),
        pytest.param('{host="server1"', id="unclosed"),
        pytest.param("{host=server1}", id="unquoted"),
        pytest.param('{host="server1}', id="unterminated-string"),
        pytest.param('{1host="a"}', id="bad-label-name"),
        pytest.param('{host=="a"}', id="double-equals"),
        pytest.param('{host~"a"}', id="unknown-operator"),
        pytest.param('{host="a" region="b"}', id="missing-comma"),
        pytest.param('{host=~"["}', id="bad-regex"),
        pytest.param('{host=~"a(b"}', id="bad-regex-paren"),
    ],
)
def test_malformed_match_is_422_naming_match(
    shared_client: TestClient, planted: str, match: str
) -> None:
    answer = shared_client.get("/query/raw", params={"metric_name": planted, "match": match})
    assert answer.status_code == 422, answer.text
    assert "match" in answer.json()["detail"]


def test_filters_apply_to_rollups(shared_client: TestClient, planted: str) -> None:
    body = get_ok(
        shared_client,
        "/query/rollup",
        metric_name=planted,
        window="1h",
        label="region:us-west",
        match='{host=~"server.*"}',
        **WINDOW,
    )
    assert [(s["labels"], [p["sum"] for p in s["points"]]) for s in body["series"]] == [
        (PLANTED[1], [1.0]),
        (PLANTED[5], [5.0]),
    ]


# -- GET /query/rollup ----------------------------------------------------------------------

# (seconds after T0, value): dyadic values, so every sum is exact.
ROLLUP_POINTS = {
    "a": [
        (0, 1.0),
        (10, 3.0),
        (59.999, -2.0),
        (60, 10.0),
        (61, 0.5),
        (125, 7.25),
        (299.5, 4.0),
        (300, 8.0),
        (1800, -1.5),
        (3599.999, 6.0),
        (3600, 100.0),
        (3660, 2.0),
        (7199, 5.0),
    ],
    "b": [(30, 0.25), (90, -0.75), (4000, 16.0)],
}
WIDTH_MS = {"1m": 60_000, "5m": 300_000, "1h": 3_600_000}


def expected_rollup(points: list[tuple[float, float]], window: str) -> list[dict[str, Any]]:
    width = WIDTH_MS[window]
    buckets: dict[int, list[float]] = defaultdict(list)
    for offset, value in points:
        ts = T0_S * 1000 + round(offset * 1000)
        buckets[ts - ts % width].append(value)
    return [
        {
            "timestamp": iso_ms(start),
            "avg": pytest.approx(sum(vs) / len(vs), rel=1e-12),
            "min": min(vs),
            "max": max(vs),
            "sum": sum(vs),
            "count": len(vs),
        }
        for start, vs in sorted(buckets.items())
    ]


def rollup(client: TestClient, metric: str, window: str, **params: Any) -> list[dict[str, Any]]:
    params = {"start_time": T0, "end_time": T0_S + 7199.999, **params}
    body = get_ok(client, "/query/rollup", metric_name=metric, window=window, **params)
    assert body["window"] == window
    assert body["metric_name"] == metric
    keys = ("timestamp", "avg", "min", "max", "sum", "count")
    return [
        {"labels": s["labels"], "points": [{k: p[k] for k in keys} for p in s["points"]]}
        for s in body["series"]
    ]


@pytest.fixture
def rollup_metric(shared_client: TestClient, metric: str) -> str:
    backfill(
        shared_client,
        [
            {"metric_name": metric, "value": v, "timestamp": T0_S + off, "labels": {"s": name}}
            for name, points in ROLLUP_POINTS.items()
            for off, v in points
        ],
    )
    return metric


@pytest.mark.parametrize("window", ["1m", "5m", "1h"])
def test_rollup_aggregates_epoch_aligned_buckets(
    shared_client: TestClient, rollup_metric: str, window: str
) -> None:
    assert rollup(shared_client, rollup_metric, window) == [
        {"labels": {"s": name}, "points": expected_rollup(points, window)}
        for name, points in ROLLUP_POINTS.items()
    ]


def test_rollup_bucket_count_for_a_known_case(
    shared_client: TestClient, rollup_metric: str
) -> None:
    """Hand-checked: the 1m bucket at T0 holds 1, 3, -2; the 5m one also 10, .5, 7.25, 4."""
    one_minute = rollup(shared_client, rollup_metric, "1m", label="s:a")[0]["points"][0]
    assert one_minute == {
        "timestamp": T0,
        "avg": pytest.approx(2 / 3),
        "min": -2.0,
        "max": 3.0,
        "sum": 2.0,
        "count": 3,
    }
    five = rollup(shared_client, rollup_metric, "5m", label="s:a")[0]["points"][0]
    assert five == {
        "timestamp": T0,
        "avg": pytest.approx(23.75 / 7),
        "min": -2.0,
        "max": 10.0,
        "sum": 23.75,
        "count": 7,
    }


def test_rollup_range_selects_buckets(shared_client: TestClient, rollup_metric: str) -> None:
    # Buckets starting in [12:01, 12:05]: 12:01 (10, .5), 12:02 (7.25), 12:04 (4), 12:05 (8).
    got = rollup(
        shared_client,
        rollup_metric,
        "1m",
        label="s:a",
        start_time="2025-12-03T12:01:00Z",
        end_time="2025-12-03T12:05:59.999Z",
    )
    assert [(p["timestamp"], p["sum"], p["count"]) for p in got[0]["points"]] == [
        ("2025-12-03T12:01:00Z", 10.5, 2),
        ("2025-12-03T12:02:00Z", 7.25, 1),
        ("2025-12-03T12:04:00Z", 4.0, 1),
        ("2025-12-03T12:05:00Z", 8.0, 1),
    ]


def test_rollup_is_the_same_after_the_job_and_follows_late_data(
    shared_client: TestClient, shared_url: str, rollup_metric: str
) -> None:
    before = {w: rollup(shared_client, rollup_metric, w) for w in WIDTH_MS}
    run_inline(shared_url, "rollup")
    for window, answer in before.items():
        assert rollup(shared_client, rollup_metric, window) == answer
        body = get_ok(
            shared_client,
            "/query/rollup",
            metric_name=rollup_metric,
            window=window,
            start_time=T0,
            end_time=T0_S + 7199,
        )
        assert body["materialized_until"] is not None  # the job did materialize these buckets
    # A late sample into a materialized bucket, and an overwrite of another: answers follow.
    late = [(5, 50.0), (3600, -100.0)]
    backfill(
        shared_client,
        [
            {
                "metric_name": rollup_metric,
                "value": v,
                "timestamp": T0_S + off,
                "labels": {"s": "a"},
            }
            for off, v in late
        ],
    )
    points_a = [p for p in ROLLUP_POINTS["a"] if p[0] != 3600] + late
    for window in WIDTH_MS:
        assert rollup(shared_client, rollup_metric, window, label="s:a") == [
            {"labels": {"s": "a"}, "points": expected_rollup(points_a, window)}
        ]


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        pytest.param({"window": "2m"}, "window", id="2m"),
        pytest.param({"window": "1d"}, "window", id="1d"),
        pytest.param({"window": "5M"}, "window", id="upper-case"),
        pytest.param({"window": ""}, "window", id="empty"),
        pytest.param({"window": "60s"}, "window", id="60s"),
        pytest.param({}, "window", id="missing"),
        pytest.param(
            {"window": "1m", "start_time": T0_S + 10, "end_time": T0_S},
            "start_time",
            id="start-after-end",
        ),
        pytest.param({"window": "1m", "end_time": "later"}, "end_time", id="bad-end"),
        pytest.param({"window": "1m", "match": "{x}"}, "match", id="bad-match"),
    ],
)
def test_rollup_bad_parameters(
    shared_client: TestClient, planted: str, params: dict[str, Any], fragment: str
) -> None:
    answer = shared_client.get("/query/rollup", params={"metric_name": planted, **params})
    assert answer.status_code == 422, answer.text
    assert fragment in answer.json()["detail"]


# -- OpenAPI --------------------------------------------------------------------------------

CONTRACT = {
    "/metrics/ingest": "post",
    "/backfill/import": "post",
    "/metrics/names": "get",
    "/query/raw": "get",
    "/query/rollup": "get",
    "/anomaly/detect": "get",
    "/health": "get",
    "/db/status": "get",
    "/": "get",
    "/dashboard": "get",
}


def test_docs_page_answers(shared_client: TestClient) -> None:
    answer = shared_client.get("/docs")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in answer.text


def test_openapi_describes_every_endpoint_of_the_contract(shared_client: TestClient) -> None:
    answer = shared_client.get("/openapi.json")
    assert answer.status_code == 200
    schema = answer.json()
    paths = schema["paths"]
    for path, method in CONTRACT.items():
        assert method in paths.get(path, {}), f"{method.upper()} {path} missing from OpenAPI"

    def params(path: str, method: str = "get") -> set[str]:
        return {p["name"] for p in paths[path][method].get("parameters", [])}

    filters = {"metric_name", "start_time", "end_time", "label", "match"}
    assert filters | {"limit"} <= params("/query/raw")
    assert filters | {"window"} <= params("/query/rollup")
    assert filters | {"threshold"} <= params("/anomaly/detect")
    assert "prefix" in params("/metrics/names")
    components = schema["components"]["schemas"]
    for path in ("/metrics/ingest", "/backfill/import"):
        body = paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        ref = body["$ref"].rsplit("/", 1)[-1]
        assert ref in components, f"{path} request body {ref} not in components"
    assert {"metric_name", "value", "timestamp", "labels"} <= set(
        components["IngestSample"]["properties"]
    )
