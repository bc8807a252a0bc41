"""Every supported PromQL function, operator and aggregation through GET /api/v1/query on both
backends, against values computed by hand from prometheus_seed.py (s = seconds since T0,
evaluated at s = 900 unless a case says otherwise)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_seed import AT, T0, seed

RATE_A = 2.0
RATE_B = 1.0  # after its reset at s = 600
RATE_C = 0.5
TEMP_X = 20 + 900 / 60  # 35
MEAN_X_5M = 20 + (615 + 900) / 2 / 60  # samples at s = 615 .. 900
STDVAR_X_5M = (15 / 60) ** 2 * (20**2 - 1) / 12  # 20 evenly spaced samples, 0.25 apart


@pytest.fixture(scope="module")
def api(shared_client: TestClient) -> TestClient:
    seed(shared_client)
    return shared_client


def query(client: TestClient, expr: str, at: float = AT) -> dict[str, Any]:
    answer = client.get("/api/v1/query", params={"query": expr, "time": at})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "success"
    return body["data"]  # type: ignore[no-any-return]


def values(data: dict[str, Any]) -> dict[tuple[tuple[str, str], ...], float]:
    if data["resultType"] == "scalar":
        return {(): float(data["result"][1])}
    assert data["resultType"] == "vector", data
    return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in data["result"]}


def single(data: dict[str, Any]) -> float:
    found = values(data)
    assert len(found) == 1, data
    return next(iter(found.values()))


A = 'http_requests_total{instance="a"}'
B = 'http_requests_total{instance="b"}'
X = 'temperature{room="x"}'
Y = 'temperature{room="y"}'

SINGLE_VALUES = [
    # literals, selectors, modifiers
    ("1 + 1", 2),
    ("2 ^ 10 % 1000", 24),
    (A, 1800),
    (f"{A} offset 5m", 1200),
    (f"{A} @ {T0 + 300}", 600),
    (f"{A} @ end()", 1800),
    ('{__name__="temperature", room="y"}', 30),
    # range functions
    (f"rate({A}[1m])", RATE_A),
    (f"rate({A}[1m0s])", RATE_A),
    (f"rate({A}[1m15s])", RATE_A),
    (f"irate({A}[1m])", RATE_A),
    (f"increase({A}[5m])", 600),
    (f"increase({B}[20m])", 885),  # 300 - 0 + 585 added back; starts at 0: no extrapolation
    (f"delta({X}[5m])", 5),
    (f"idelta({X}[5m])", 0.25),
    (f"avg_over_time({X}[5m])", MEAN_X_5M),
    (f"min_over_time({X}[5m])", 20 + 615 / 60),
    (f"max_over_time({X}[5m])", TEMP_X),
    (f"sum_over_time({Y}[5m])", 30 * 20),
    (f"count_over_time({Y}[5m])", 20),
    (f"last_over_time({X}[5m])", TEMP_X),
    (f"present_over_time({X}[5m])", 1),
    (f"stdvar_over_time({X}[5m])", STDVAR_X_5M),
    (f"stddev_over_time({X}[5m])", math.sqrt(STDVAR_X_5M)),
    (f"quantile_over_time(0.5, {X}[5m])", MEAN_X_5M),
    (f"changes({Y}[5m])", 0),
    (f"changes({X}[5m])", 19),
    (f"resets({B}[20m])", 1),
    (f"deriv({X}[5m])", 1 / 60),
    (f"predict_linear({X}[5m], 60)", 36),
    ("absent_over_time(nothing[5m])", 1),
    # aggregations
    ("sum(rate(http_requests_total[1m]))", RATE_A + RATE_B + RATE_C),
    ("avg(temperature)", (TEMP_X + 30) / 2),
    ("min(temperature)", 30),
    ("max(temperature)", TEMP_X),
    ("count(http_requests_total)", 3),
    ("group(http_requests_total)", 1),
    ("stddev(temperature)", 2.5),
    ("stdvar(temperature)", 6.25),
    ("quantile(0.5, temperature)", 32.5),
    ("topk(1, rate(http_requests_total[1m]))", RATE_A),
    ("bottomk(1, rate(http_requests_total[1m]))", RATE_C),
    ('count_values("v", build_info)', 2),
    # binary operators and matching
    ("sum(rate(http_requests_total[1m])) / 2", (RATE_A + RATE_B + RATE_C) / 2),
    ('rate(http_requests_total{job="web"}[1m]) * on(job) group_left(version) build_info', 0.5),
    (f"{X} - ignoring(room) {Y}", TEMP_X - 30),
    (f"{Y} > 29", 30),
    (f"{Y} < bool 29", 0),
    (f"{Y} and on() {X}", 30),
    (f"{Y} unless on() nothing", 30),
    (f"nothing or {Y}", 30),
    (f"{X} atan2 {X}", math.atan2(TEMP_X, TEMP_X)),
    # instant functions
    (f"abs(-{Y})", 30),
    (f"ceil({X} / 4)", 9),
    (f"floor({X} / 4)", 8),
    (f"round({X} / 4)", 9),
    (f"round({X}, 10)", 40),
    (f"clamp({X}, 0, 30)", 30),
    (f"clamp_min({Y}, 31)", 31),
    (f"clamp_max({Y}, 29)", 29),
    (f"sqrt({Y} - 5)", 5),
    (f"exp({Y} - 30)", 1),
    (f"ln({Y} - 29)", 0),
    (f"log2({Y} + 2)", 5),
    (f"log10({Y} * 10 - 200)", 2),
    (f"scalar({Y})", 30),
    ("scalar(temperature)", math.nan),
    ("vector(7)", 7),
    ("time()", AT),
    (f"timestamp({Y})", AT),
    (f"timestamp({Y} offset 10s)", AT - 15),
    ('label_replace(build_info{job="web"}, "v", "$1", "version", "(\\\\d).*")', 1),
    ('label_join(build_info{job="web"}, "jv", "-", "job", "version")', 1),
    ('absent(nothing{job="x"})', 1),
    ("histogram_quantile(0.5, sum by (le) (rate(latency_bucket[1m])))", 0.4),
    ("histogram_quantile(0.99, sum by (le) (rate(latency_bucket[1m])))", 1),
    ("year(vector(time()))", 2025),
    ("month()", 12),
    ("day_of_month()", 3),
    ("day_of_week()", 3),
    ("day_of_year()", 337),
    ("days_in_month()", 31),
    ("hour()", 12),
    ("minute()", 15),
    # subqueries
    (f"max_over_time(rate({A}[1m])[5m:1m])", RATE_A),
    (f"count_over_time({X}[5m:1m])", 5),
    (f"last_over_time({X}[5m:1m] offset 5m)", 20 + 600 / 60),
]


@pytest.mark.parametrize(("expr", "expected"), SINGLE_VALUES, ids=[c[0] for c in SINGLE_VALUES])
def test_single_valued_expressions(api: TestClient, expr: str, expected: float) -> None:
    data = query(api, expr)
    value = single(data)
    if math.isnan(expected):
        assert math.isnan(value)
    else:
        assert value == pytest.approx(expected, rel=1e-9), data


def test_rates_of_a_counter_with_a_reset(api: TestClient) -> None:
    # Window (300, 900] holds s = 315 .. 900: the reset at 600 adds back 585 (the value before).
    got = single(query(api, f"increase({B}[10m])"))
    raw_increase = (300 - 315) + 585
    assert got == pytest.approx(raw_increase * 600 / 585)
    assert single(query(api, f"rate({B}[10m])")) == pytest.approx(raw_increase / 585)


def test_grouped_and_multi_series_answers(api: TestClient) -> None:
    by_job = values(query(api, "sum by (job) (rate(http_requests_total[1m]))"))
    assert by_job == {
        (("job", "api"),): pytest.approx(RATE_A + RATE_B),
        (("job", "web"),): pytest.approx(RATE_C),
    }
    without = values(query(api, "sum without (instance, method) (http_requests_total)"))
    assert set(without) == {(("job", "api"),), (("job", "web"),)}
    assert values(query(api, "temperature > bool 31")) == {
        (("room", "x"),): 1.0,
        (("room", "y"),): 0.0,
    }
    order = [r["metric"]["room"] for r in query(api, "sort(temperature)")["result"]]
    assert order == ["y", "x"]
    order = [r["metric"]["room"] for r in query(api, "sort_desc(temperature)")["result"]]
    assert order == ["x", "y"]
    counted = values(query(api, 'count_values("version", build_info)'))
    assert counted == {(("version", "1"),): 2.0}
    joined = query(api, 'label_join(build_info{job="web"}, "jv", "-", "job", "version")')
    assert joined["result"][0]["metric"]["jv"] == "web-2.0"
    replaced = query(api, 'label_replace(build_info{job="web"}, "v", "$1", "version", "(\\\\d).*")')
    assert replaced["result"][0]["metric"]["v"] == "2"
    assert query(api, 'absent(nothing{job="x"})')["result"][0]["metric"] == {"job": "x"}


def test_a_range_query_per_step(api: TestClient) -> None:
    answer = api.post(
        "/api/v1/query_range",
        data={"query": f"rate({A}[1m])", "start": AT - 120, "end": AT, "step": "1m0s"},
    )
    assert answer.status_code == 200, answer.text
    (series,) = answer.json()["data"]["result"]
    assert series["metric"] == {"instance": "a", "job": "api", "method": "get"}
    assert [t for t, _ in series["values"]] == [AT - 120, AT - 60, AT]
    assert [float(v) for _, v in series["values"]] == pytest.approx([RATE_A] * 3)


def test_special_values_as_prometheus_writes_them(api: TestClient) -> None:
    assert query(api, f"{Y} / 0")["result"][0]["value"][1] == "+Inf"
    assert query(api, f"-{Y} / 0")["result"][0]["value"][1] == "-Inf"
    assert query(api, f"({Y} - 30) / 0")["result"][0]["value"][1] == "NaN"
    assert query(api, f"{Y} * 1e30")["result"][0]["value"][1] == "3e+31"
    assert query(api, f"{Y} / 1e10")["result"][0]["value"][1] == "3e-09"
    assert query(api, f"{Y} / 1e5")["result"][0]["value"][1] == "0.0003"


def test_errors_of_evaluation(api: TestClient) -> None:
    answer = api.get(
        "/api/v1/query", params={"query": "http_requests_total / on(job) build_info", "time": AT}
    )
    assert answer.status_code == 422
    body = answer.json()
    assert body["status"] == "error" and body["errorType"] == "execution"
    assert "many-to-one matching must be explicit" in body["error"]
    answer = api.get(
        "/api/v1/query", params={"query": "mad_over_time(temperature[5m])", "time": AT}
    )
    assert answer.status_code == 422 and "mad_over_time" in answer.json()["error"]
