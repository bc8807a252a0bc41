"""Property-based checks of the whole HTTP API against its own OpenAPI schema (schemathesis).

Every operation gets SCHEMATHESIS_MAX_EXAMPLES (default 10) generated requests that fit the schema
and as many that break it, on both backends, through the in-process ASGI app. Each answer must be
no 5xx, carry a documented status code and content type, match the documented response schema,
and reject schema-breaking input with a 4xx. Generation is derandomized so the run is stable; raise
SCHEMATHESIS_MAX_EXAMPLES (e.g. 300) for a deeper exploratory run.

What earlier runs found (overflowing numbers, NUL characters, values whose squares overflow) is
kept below as plain regression tests.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from conftest import fresh_database, run_inline, test_settings
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from app import observability
from app.main import create_app

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "10"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture
def own_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """A database of its own: generated timestamps create PostgreSQL day partitions all over the
    calendar, which must not outlive this test in the session's shared database."""
    with fresh_database(backend, tmp_path, "schemathesis") as url:
        yield url


@pytest.fixture
def asgi_app(own_database: str) -> Iterator[FastAPI]:
    app = create_app(test_settings(own_database))
    observability.install(app)
    yield app
    asgi.shutdown_lifespans()  # schemathesis started the app's lifespan on first use; stop it


def _run_operation(
    op: Any, mode: GenerationMode, check: Callable[[Any], None], seen: list[int]
) -> None:
    @given(case=op.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        seen[0] += 1
        check(case)

    try:
        run()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise  # an operation without parameters still has one valid request


def test_api_conforms_to_its_schema(asgi_app: FastAPI, backend: str) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", asgi_app)
    failures: dict[tuple[str, str], str] = {}
    seen = [0]

    def check(case: Any) -> None:
        label = case.operation.label
        response = case.call()
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:
            for failure in group.exceptions:
                failures.setdefault((label, failure.title), str(group)[:3000])

    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        op = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _run_operation(op, mode, check, seen)

    assert seen[0] >= 10 * MAX_EXAMPLES, f"only {seen[0]} requests were generated"
    report = "\n\n".join(f"{label}: {title}\n{text}" for (label, title), text in failures.items())
    assert not failures, f"{len(failures)} distinct problems:\n\n{report}"


# -- regressions: what the generated run found, as plain requests ---------------------------


@pytest.fixture
def app_client(database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(test_settings(database_url)), raise_server_exceptions=False) as c:
        yield c


OVERFLOW_CASES = [
    pytest.param(
        "POST",
        "/metrics/ingest",
        {"json": {"metric_name": "a", "value": 1, "timestamp": 1e308}},
        id="ingest-ts",
    ),
    pytest.param(
        "POST",
        "/backfill/import",
        {"json": {"metrics": [{"metric_name": "a", "value": 1, "timestamp": 1e308}]}},
        id="backfill-ts",
    ),
    pytest.param(
        "POST",
        "/backfill/import",
        {"json": {"series": [{"metric_name": "a", "timestamps": ["1e308"], "values": [1]}]}},
        id="backfill-columnar-ts",
    ),
    pytest.param(
        "GET",
        "/query/raw",
        {"params": {"metric_name": "a", "start_time": "1e308"}},
        id="query-start",
    ),
    pytest.param(
        "GET",
        "/anomaly/detect",
        {
            "params": {
                "metric_name": "a",
                "method": "rolling",
                "lookback": "99999999999999999999999w",
            }
        },
        id="anomaly-lookback",
    ),
    pytest.param(
        "PUT", "/retention/a", {"json": {"raw": "99999999999999999999999999w"}}, id="retention"
    ),
]


@pytest.mark.parametrize(("method", "path", "request_args"), OVERFLOW_CASES)
def test_huge_numbers_are_a_422(
    app_client: TestClient, method: str, path: str, request_args: dict[str, Any]
) -> None:
    assert (
        app_client.post("/metrics/ingest", json={"metric_name": "a", "value": 1}).status_code == 201
    )
    answer = app_client.request(method, path, **request_args)
    assert answer.status_code == 422, answer.text


NUL_CASES = [
    pytest.param(
        "POST",
        "/metrics/ingest",
        {"json": {"metric_name": "a", "value": 1, "labels": {"h": "x\x00"}}},
        id="ingest-label",
    ),
    pytest.param(
        "POST",
        "/backfill/import",
        {"json": {"metrics": [{"metric_name": "a", "value": 1, "labels": {"h": "x\x00"}}]}},
        id="backfill-label",
    ),
    pytest.param("GET", "/metrics/names", {"params": {"prefix": "a\x00"}}, id="names-prefix"),
    pytest.param("GET", "/query/raw", {"params": {"metric_name": "a\x00"}}, id="raw-metric"),
    pytest.param(
        "GET", "/query/raw", {"params": {"metric_name": "a", "label": "h:x\x00"}}, id="raw-label"
    ),
    pytest.param(
        "GET",
        "/query/raw",
        {"params": {"metric_name": "a", "match": '{h="x\x00"}'}},
        id="raw-match",
    ),
    pytest.param(
        "GET",
        "/query/rollup",
        {"params": {"metric_name": "a\x00", "window": "1m"}},
        id="rollup-metric",
    ),
    pytest.param(
        "GET", "/anomaly/detect", {"params": {"metric_name": "a\x00"}}, id="anomaly-metric"
    ),
]


@pytest.mark.parametrize(("method", "path", "request_args"), NUL_CASES)
def test_nul_characters_are_never_a_500(
    app_client: TestClient,
    backend: str,
    request: pytest.FixtureRequest,
    method: str,
    path: str,
    request_args: dict[str, Any],
) -> None:
    assert (
        app_client.post("/metrics/ingest", json={"metric_name": "a", "value": 1}).status_code == 201
    )
    answer = app_client.request(method, path, **request_args)
    assert answer.status_code < 500, answer.text


def test_values_beyond_1e100_are_refused_and_the_rest_rolls_up(
    app_client: TestClient, database_url: str
) -> None:
    """Squares of values up to 1e100 fit a double, so rollups (sum of squares) stay finite."""
    an_hour_ago = time.time() - 3600
    refused = app_client.post(
        "/metrics/ingest", json={"metric_name": "huge", "value": 1e101, "timestamp": an_hour_ago}
    )
    assert refused.status_code == 422
    assert refused.json()["detail"].startswith("value: magnitude above 1e100")
    for value in (1e100, -1e100, 1.0):
        body = {"metric_name": "big", "value": value, "timestamp": an_hour_ago + value % 7}
        assert app_client.post("/metrics/ingest", json=body).status_code == 201
    params = {"metric_name": "big", "window": "1m", "start_time": str(an_hour_ago - 60)}
    assert app_client.get("/query/rollup", params=params).status_code == 200
    run_inline(database_url, "rollup")
    answer = app_client.get("/query/rollup", params=params).json()
    assert answer["materialized_until"] is not None
    assert sum(p["count"] for s in answer["series"] for p in s["points"]) == 3
    anomalies = app_client.get("/anomaly/detect", params={**params, "window": "1m"})
    assert anomalies.status_code == 200, anomalies.text
