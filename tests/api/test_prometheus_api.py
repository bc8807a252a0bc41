"""The Prometheus HTTP API's endpoints, on both backends: GET and form POST, the /prometheus
prefix, the envelope, errorType and status of each kind of error, time and duration formats,
the 11,000-point limit, match[], start/end, limit, U__ escaping."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import pytest
from conftest import test_settings
from fastapi.testclient import TestClient
from prometheus_seed import AT, T0, seed

from app.model import MetricMetadata
from app.storage.store import Store

PREFIXES = ["/api/v1", "/prometheus/api/v1"]


@pytest.fixture(scope="module")
def api(shared_client: TestClient) -> TestClient:
    seed(shared_client)
    return shared_client


def ok(answer: Any) -> Any:
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "success", body
    return body


def error(answer: Any, status: int, error_type: str) -> str:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["status"] == "error" and body["errorType"] == error_type, body
    assert answer.headers["content-type"].startswith("application/json")
    return str(body["error"])


@pytest.mark.parametrize("prefix", PREFIXES)
def test_instant_query_by_get_and_by_form_post(api: TestClient, prefix: str) -> None:
    params = {"query": 'temperature{room="y"}', "time": str(AT)}
    by_get = ok(api.get(f"{prefix}/query", params=params))
    by_post = ok(api.post(f"{prefix}/query", data=params))
    assert by_get == by_post
    assert by_get["data"] == {
        "resultType": "vector",
        "result": [{"metric": {"__name__": "temperature", "room": "y"}, "value": [AT, "30"]}],
    }


def test_form_values_come_before_the_query_string(api: TestClient) -> None:
    body = ok(api.post("/api/v1/query?query=nothing", data={"query": "1", "time": AT}))
    assert body["data"] == {"resultType": "scalar", "result": [AT, "1"]}


def test_grafana_health_check(api: TestClient) -> None:
    body = ok(api.get("/api/v1/query", params={"query": "1+1", "time": "4"}))
    assert body["data"] == {"resultType": "scalar", "result": [4, "2"]}


@pytest.mark.parametrize(
    "when", [str(AT), f"{AT}.000", "2025-12-03T12:15:00Z", "2025-12-03T13:15:00+01:00"]
)
def test_time_as_rfc3339_or_unix_seconds(api: TestClient, when: str) -> None:
    body = ok(api.get("/api/v1/query", params={"query": 'temperature{room="y"}', "time": when}))
    assert body["data"]["result"][0]["value"][0] == AT


def test_millisecond_times_are_kept(api: TestClient) -> None:
    body = ok(api.get("/api/v1/query", params={"query": "time()", "time": f"{AT}.1234"}))
    assert body["data"]["result"] == [AT + 0.123, str(AT + 0.123)]


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("step", ["60", "60.0", "1m", "1m0s"])
def test_range_query(api: TestClient, prefix: str, step: str) -> None:
    form = {"query": 'temperature{room="x"}', "start": AT - 120, "end": AT, "step": step}
    body = ok(api.post(f"{prefix}/query_range", data=form))
    (series,) = body["data"]["result"]
    assert body["data"]["resultType"] == "matrix"
    assert series["values"] == [[AT - 120, "33"], [AT - 60, "34"], [AT, "35"]]


def test_range_query_steps_are_not_aligned(api: TestClient) -> None:
    form = {"query": "time()", "start": AT + 7, "end": AT + 70, "step": 30}
    (series,) = ok(api.get("/api/v1/query_range", params=form))["data"]["result"]
    assert [t for t, _ in series["values"]] == [AT + 7, AT + 37, AT + 67]


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        (
            {"query": "up", "start": AT, "end": AT - 1, "step": 1},
            "end timestamp must not be before",
        ),
        ({"query": "up", "start": AT, "end": AT, "step": 0}, "zero or negative"),
        ({"query": "up", "start": AT, "end": AT, "step": -5}, "zero or negative"),
        ({"query": "up", "start": AT, "end": AT + 11_001, "step": 1}, "11,000 points"),
        ({"query": "up", "start": "soon", "end": AT, "step": 1}, 'invalid parameter "start"'),
        ({"query": "up", "start": AT, "end": AT, "step": "1x"}, 'invalid parameter "step"'),
        ({"query": "up", "start": AT, "end": AT}, 'invalid parameter "step"'),
        ({"query": "up[5m]", "start": AT, "end": AT, "step": 1}, "range vector"),
        ({"query": "rate(up[5m]", "start": AT, "end": AT, "step": 1}, 'invalid parameter "query"'),
    ],
)
def test_range_query_bad_data(api: TestClient, params: dict[str, Any], needle: str) -> None:
    assert needle in error(api.get("/api/v1/query_range", params=params), 400, "bad_data")


def test_eleven_thousand_steps_are_allowed(api: TestClient) -> None:
    params = {"query": "1", "start": AT, "end": AT + 11_000, "step": 1}
    (series,) = ok(api.get("/api/v1/query_range", params=params))["data"]["result"]
    assert len(series["values"]) == 11_001


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"query": "sum(", "time": AT}, "unclosed left parenthesis"),
        ({"query": "", "time": AT}, 'invalid parameter "query"'),
        ({"query": "1", "time": "yesterday"}, "invalid time value for 'time'"),
        ({"query": "1", "timeout": "soon"}, 'invalid parameter "timeout"'),
        ({"query": "1", "limit": "-1"}, 'invalid parameter "limit"'),
    ],
)
def test_instant_query_bad_data(api: TestClient, params: dict[str, Any], needle: str) -> None:
    assert needle in error(api.get("/api/v1/query", params=params), 400, "bad_data")


def test_execution_errors_are_422(api: TestClient) -> None:
    params = {"query": 'label_replace(temperature, "room", "same", "room", ".*")', "time": AT}
    assert "same labelset" in error(api.get("/api/v1/query", params=params), 422, "execution")
    params = {"query": "double_exponential_smoothing(temperature[5m], 0.5, 0.5)", "time": AT}
    message = error(api.get("/api/v1/query", params=params), 422, "execution")
    assert "double_exponential_smoothing" in message


def test_a_query_over_its_timeout_is_503(api: TestClient) -> None:
    params = {"query": "sum_over_time(temperature[20m:1s])", "time": AT, "timeout": "0.001"}
    assert "timed out" in error(api.get("/api/v1/query", params=params), 503, "timeout")


def test_too_many_samples_is_422(make_client: Callable[..., TestClient]) -> None:
    client = make_client(promql_max_samples=10)
    seed(client)
    params = {"query": "temperature[20m]", "time": AT}
    message = error(client.get("/api/v1/query", params=params), 422, "execution")
    assert "too many samples" in message and "PROMQL_MAX_SAMPLES" in message


def test_limit_truncates_with_a_warning(api: TestClient) -> None:
    body = ok(
        api.get("/api/v1/query", params={"query": "http_requests_total", "time": AT, "limit": 2})
    )
    assert len(body["data"]["result"]) == 2
    assert body["warnings"] == ["results truncated due to limit"]


def test_instant_query_of_a_range_selector_is_a_matrix(api: TestClient) -> None:
    body = ok(api.get("/api/v1/query", params={"query": 'temperature{room="x"}[30s]', "time": AT}))
    (series,) = body["data"]["result"]
    assert body["data"]["resultType"] == "matrix"
    assert series["values"] == [[AT - 15, "34.75"], [AT, "35"]]


def test_string_literal(api: TestClient) -> None:
    body = ok(api.get("/api/v1/query", params={"query": '"hello"', "time": AT}))
    assert body["data"] == {"resultType": "string", "result": [AT, "hello"]}


# -- labels, label values, series ------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_label_names(api: TestClient, method: str) -> None:
    everything = ok(api.request(method, "/api/v1/labels"))["data"]
    assert everything == ["__name__", "instance", "job", "le", "method", "room", "version"]
    form = {"match[]": ["temperature", 'build_info{job="api"}']}
    if method == "GET":
        matched = ok(api.get("/api/v1/labels", params=form))["data"]
    else:
        matched = ok(api.post("/api/v1/labels", data=form))["data"]
    assert matched == ["__name__", "job", "room", "version"]


def test_label_names_in_a_time_range(api: TestClient) -> None:
    after = {"start": T0 + 3600, "end": T0 + 7200}
    assert ok(api.get("/api/v1/labels", params=after))["data"] == []
    within = {"start": T0, "end": T0 + 60, "match[]": "temperature"}
    assert ok(api.get("/api/v1/labels", params=within))["data"] == ["__name__", "room"]


def test_label_values(api: TestClient) -> None:
    names = ok(api.get("/api/v1/label/__name__/values"))["data"]
    assert names == ["build_info", "http_requests_total", "latency_bucket", "temperature"]
    jobs = ok(api.get("/api/v1/label/job/values"))["data"]
    assert jobs == ["api", "web"]
    params = {"match[]": 'http_requests_total{method="get"}', "start": T0, "end": AT}
    assert ok(api.get("/api/v1/label/instance/values", params=params))["data"] == ["a", "b"]
    assert ok(api.get("/api/v1/label/U__job/values"))["data"] == ["api", "web"]
    assert ok(api.get("/api/v1/label/U__jo_62_/values"))["data"] == ["api", "web"]  # b = 0x62
    assert ok(api.get("/api/v1/label/nothing/values"))["data"] == []
    limited = ok(api.get("/api/v1/label/__name__/values", params={"limit": 1}))
    assert limited["data"] == ["build_info"]
    assert limited["warnings"] == ["results truncated due to limit"]
    params = {"start": T0 + 3600, "end": T0 + 7200}
    assert ok(api.get("/api/v1/label/__name__/values", params=params))["data"] == []


def test_series(api: TestClient) -> None:
    params = {"match[]": ['temperature{room="x"}', "build_info"]}
    found = ok(api.get("/api/v1/series", params=params))["data"]
    assert found == [
        {"__name__": "build_info", "job": "api", "version": "1.0"},
        {"__name__": "build_info", "job": "web", "version": "2.0"},
        {"__name__": "temperature", "room": "x"},
    ]
    by_post = ok(api.post("/api/v1/series", data={"match[]": '{__name__=~"temp.*"}'}))["data"]
    assert len(by_post) == 2
    outside = {"match[]": "temperature", "start": T0 + 3600, "end": T0 + 7200}
    assert ok(api.get("/api/v1/series", params=outside))["data"] == []


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({}, "no match[] parameter provided"),
        ({"match[]": '{job=""}'}, "non-empty matcher"),
        ({"match[]": "rate(x[5m])"}, "not a series selector"),
        ({"match[]": "up{"}, 'invalid parameter "query"'),
        ({"match[]": "up", "start": "never"}, "invalid time value for 'start'"),
    ],
)
def test_series_bad_data(api: TestClient, params: dict[str, Any], needle: str) -> None:
    assert needle in error(api.get("/api/v1/series", params=params), 400, "bad_data")


# -- what Grafana asks at start-up -----------------------------------------------------------


def test_buildinfo_rules_alerts_exemplars_metadata(api: TestClient) -> None:
    info = ok(api.get("/api/v1/status/buildinfo"))["data"]
    own = api.app.version  # type: ignore[attr-defined]
    assert info["version"].startswith("3.0.0+metrics-service.") and "features" not in info
    assert info["revision"] == own
    assert re.fullmatch(r"\d+\.\d+\.\d+\+[0-9A-Za-z.-]+", info["version"]), info["version"]
    assert ok(api.get("/api/v1/rules"))["data"] == {"groups": []}
    assert ok(api.get("/api/v1/alerts"))["data"] == {"alerts": []}
    params = {"query": "temperature", "start": T0 * 1000, "end": AT * 1000}
    assert ok(api.get("/api/v1/query_exemplars", params=params))["data"] == []
    assert ok(api.post("/api/v1/query_exemplars", data=params))["data"] == []


def test_format_query(api: TestClient) -> None:
    body = ok(api.get("/api/v1/format_query", params={"query": "sum(rate(x[5m]))by(job)"}))
    assert body["data"] == "sum by (job) (rate(x[5m]))"
    assert "unclosed" in error(
        api.get("/api/v1/format_query", params={"query": "sum("}), 400, "bad_data"
    )


def test_read_keys_guard_the_api(make_client: Callable[..., TestClient]) -> None:
    client = make_client(read_api_keys=["secret"])
    assert client.get("/api/v1/query", params={"query": "1"}).status_code == 401
    answer = client.get(
        "/api/v1/query", params={"query": "1"}, headers={"Authorization": "Bearer secret"}
    )
    assert answer.status_code == 200


def test_metadata(client: TestClient, database_url: str) -> None:
    async def record() -> None:
        store = Store.open(test_settings(database_url))
        try:
            await store.record_metadata(
                [
                    MetricMetadata("http_requests_total", "counter", "Requests.", ""),
                    MetricMetadata("temperature", "gauge", "Room temperature.", "celsius"),
                ]
            )
        finally:
            await store.close()

    asyncio.run(record())
    data = ok(client.get("/api/v1/metadata"))["data"]
    assert data == {
        "http_requests_total": [{"type": "counter", "help": "Requests.", "unit": ""}],
        "temperature": [{"type": "gauge", "help": "Room temperature.", "unit": "celsius"}],
    }
    assert list(ok(client.get("/api/v1/metadata", params={"metric": "temperature"}))["data"]) == [
        "temperature"
    ]
    assert len(ok(client.get("/api/v1/metadata", params={"limit": 1}))["data"]) == 1
    assert "limit must be a number" in error(
        client.get("/api/v1/metadata", params={"limit": "x"}), 400, "bad_data"
    )
