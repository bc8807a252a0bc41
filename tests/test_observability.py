"""Self-monitoring: GET /metrics (Prometheus text), the access log, and the exposure warning.

Apps are built with `observability.install` applied explicitly; install is idempotent, so these
tests keep working once create_app calls it itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import run_inline, test_settings
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app import observability
from app.main import create_app

# Recent times (today's PostgreSQL partition): old days would leave partitions behind that the
# retention tests, sharing the session's database, would then count.
BASE_S = (int(time.time()) // 60 - 30) * 60


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


T0 = iso(BASE_S)
WINDOW = {"start_time": iso(BASE_S - 3600), "end_time": iso(BASE_S + 3600)}


@pytest.fixture
def observed(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


@contextmanager
def captured(logger_name: str) -> Iterator[list[logging.LogRecord]]:
    """Records reaching `logger_name` (the `app` logger does not propagate, so caplog cannot)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger(logger_name)
    handler = Keep(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def scrape(
    client: TestClient, **headers: str
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    answer = client.get("/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def sample(metric: str = "cpu_usage", **extra: Any) -> dict[str, Any]:
    return {"metric_name": metric, "value": 1.5, "timestamp": T0, **extra}


# -- /metrics ----------------------------------------------------------------------------------


def test_requests_are_counted_by_route_template_and_status(observed: TestClient) -> None:
    for host in ("a", "b"):
        assert (
            observed.post("/metrics/ingest", json=sample(labels={"host": host})).status_code == 201
        )
    assert (
        observed.post("/metrics/ingest", json={"metric_name": "1bad", "value": 1}).status_code
        == 422
    )
    assert (
        observed.get("/query/raw", params={"metric_name": "cpu_usage", **WINDOW}).status_code == 200
    )
    assert observed.get("/query/raw", params={"metric_name": "nope_metric"}).status_code == 404
    assert observed.put("/retention/cpu_usage", json={"raw": "2d"}).status_code == 200
    assert observed.delete("/retention/cpu_usage").status_code == 200
    assert observed.get("/no/such/path/xyz").status_code == 404

    samples = scrape(observed)
    count = "metrics_http_requests_total"
    assert value(samples, count, method="POST", route="/metrics/ingest", status="201") == 2
    assert value(samples, count, method="POST", route="/metrics/ingest", status="422") == 1
    assert value(samples, count, method="GET", route="/query/raw", status="200") == 1
    assert value(samples, count, method="GET", route="/query/raw", status="404") == 1
    assert value(samples, count, method="PUT", route="/retention/{metric_name}", status="200") == 1
    assert (
        value(samples, count, method="DELETE", route="/retention/{metric_name}", status="200") == 1
    )
    assert value(samples, count, method="GET", route="<unmatched>", status="404") == 1
    routes = {dict(labels).get("route") for _, labels in samples}
    assert "/retention/cpu_usage" not in routes and "/no/such/path/xyz" not in routes

    duration = "metrics_http_request_duration_seconds_count"
    assert value(samples, duration, method="POST", route="/metrics/ingest") == 3
    total = value(
        samples, "metrics_http_request_duration_seconds_sum", method="POST", route="/metrics/ingest"
    )
    assert total is not None and 0 < total < 60
    # the scrape itself is in flight while the text is generated
    assert value(samples, "metrics_http_requests_in_progress") == 1


def test_rejected_writes_are_counted_by_reason(make_client: Callable[..., TestClient]) -> None:
    client = make_client(api_keys=["w"], max_batch=2, max_series_per_metric=1)
    key = {"X-API-Key": "w"}
    assert client.post("/metrics/ingest", json=sample()).status_code == 401
    assert client.post("/metrics/ingest", json=sample(value="x"), headers=key).status_code == 422
    assert client.post("/metrics/ingest", content=b"{not json", headers=key).status_code == 400
    assert client.post("/metrics/ingest", json=sample(), headers=key).status_code == 201
    other_series = sample(labels={"host": "b"})
    assert client.post("/metrics/ingest", json=other_series, headers=key).status_code == 429
    three = {"metrics": [sample(), sample(), sample()]}
    assert client.post("/backfill/import", json=three, headers=key).status_code == 413

    samples = scrape(client)
    rejected = "metrics_rejected_writes_total"
    ingest, backfill = "/metrics/ingest", "/backfill/import"
    assert value(samples, rejected, route=ingest, reason="auth") == 1
    assert value(samples, rejected, route=ingest, reason="validation") == 1
    assert value(samples, rejected, route=ingest, reason="bad_request") == 1
    assert value(samples, rejected, route=ingest, reason="cardinality") == 1
    assert value(samples, rejected, route=backfill, reason="payload_too_large") == 1


def test_ingested_samples_are_counted(observed: TestClient) -> None:
    for host in ("a", "b"):
        assert (
            observed.post("/metrics/ingest", json=sample(labels={"host": host})).status_code == 201
        )
    batch = {"metrics": [sample("mem", timestamp=iso(BASE_S + i)) for i in range(3)]}
    assert observed.post("/backfill/import", json=batch).status_code == 201
    assert (
        observed.post("/metrics/ingest", json={"metric_name": "x", "value": "no"}).status_code
        == 422
    )
    assert value(scrape(observed), "metrics_ingested_samples_total") == 5


def test_series_count_database_and_pool_gauges(observed: TestClient, backend: str) -> None:
    samples = scrape(observed)
    assert value(samples, "metrics_series") == 0
    assert value(samples, "metrics_database_up") == 1
    for host in ("a", "b", "c"):
        assert (
            observed.post("/metrics/ingest", json=sample(labels={"host": host})).status_code == 201
        )
    assert observed.post("/metrics/ingest", json=sample("mem")).status_code == 201

    samples = scrape(observed)
    assert value(samples, "metrics_series") == 4
    pools = ["writer", "reader"] if backend == "sqlite" else ["main"]
    for pool in pools:
        size = value(samples, "metrics_db_pool_size", pool=pool)
        in_use = value(samples, "metrics_db_pool_checked_out", pool=pool)
        assert size is not None and size >= 1
        assert in_use is not None and 0 <= in_use <= size
    resident = value(samples, "process_resident_memory_bytes")
    assert resident is not None and resident > 10_000_000


def test_job_gauges_after_a_job_run(observed: TestClient, database_url: str) -> None:
    assert observed.post("/metrics/ingest", json=sample()).status_code == 201
    assert value(scrape(observed), "metrics_job_runs", job="rollup") is None

    before = time.time()
    run_inline(database_url, "rollup")
    run_inline(database_url, "rollup")
    samples = scrape(observed)
    assert value(samples, "metrics_job_runs", job="rollup") == 2
    assert value(samples, "metrics_job_last_success", job="rollup") == 1
    duration = value(samples, "metrics_job_last_duration_seconds", job="rollup")
    assert duration is not None and 0 <= duration < 60
    started = value(samples, "metrics_job_last_run_timestamp_seconds", job="rollup")
    assert started is not None and before - 1 <= started <= time.time() + 1
    assert value(samples, "metrics_job_last_buckets_written", job="rollup") is not None
    assert value(samples, "metrics_job_last_error_timestamp_seconds", job="rollup") is None


def test_database_down_scrape_still_answers() -> None:
    settings = test_settings("postgresql://postgres@127.0.0.1:1/nowhere", db_connect_timeout="2s")
    app = create_app(settings)
    observability.install(app)
    with TestClient(app) as client:
        samples = scrape(client)
    assert value(samples, "metrics_database_up") == 0


def test_install_is_idempotent(database_url: str) -> None:
    app = create_app(test_settings(database_url))
    observability.install(app)
    registry = app.state.metrics_registry
    observability.install(app)
    assert app.state.metrics_registry is registry
    installed: list[object] = [m.cls for m in app.user_middleware]
    middleware = [cls for cls in installed if cls is observability.ObservabilityMiddleware]
    assert len(middleware) == 1
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 200
        assert list(client.get("/openapi.json").json()["paths"]).count("/metrics") == 1


def test_separate_apps_have_separate_registries(make_client: Callable[..., TestClient]) -> None:
    first, second = make_client(), make_client()
    assert first.post("/metrics/ingest", json=sample()).status_code == 201
    count = "metrics_http_requests_total"
    labels = {"method": "POST", "route": "/metrics/ingest", "status": "201"}
    assert value(scrape(first), count, **labels) == 1
    assert value(scrape(second), count, **labels) is None


# -- access log --------------------------------------------------------------------------------


@pytest.mark.usefixtures("restore_app_logging")
def test_access_log_lines_are_json_with_fields(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(test_settings(database_url, log_format="json"))  # its handler: capsys' stderr
    observability.install(app)
    with TestClient(app) as client:
        capsys.readouterr()
        assert client.post("/metrics/ingest", json=sample()).status_code == 201
        query = {"metric_name": "cpu_usage", "label": "host:secret-host", **WINDOW}
        assert client.get("/query/raw", params=query).status_code == 200
        assert client.get("/query/raw", params={"metric_name": "nope"}).status_code == 404
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]
    access = [entry for entry in lines if entry["logger"] == "app.access"]
    assert [(e["method"], e["path"], e["status"]) for e in access] == [
        ("POST", "/metrics/ingest", 201),
        ("GET", "/query/raw", 200),
        ("GET", "/query/raw", 404),
    ]
    for entry in access:
        assert entry["level"] == "INFO"
        assert entry["time"].endswith("+00:00")
        assert isinstance(entry["duration_ms"], float) and entry["duration_ms"] >= 0
        assert entry["route"] == entry["path"]
    assert "secret-host" not in json.dumps(lines)  # the query string is not logged


@pytest.mark.usefixtures("restore_app_logging")
def test_access_log_lines_in_text_format(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(test_settings(database_url))
    observability.install(app)
    with TestClient(app) as client:
        capsys.readouterr()
        assert client.get("/query/raw", params={"metric_name": "nope"}).status_code == 404
    lines = [line for line in capsys.readouterr().err.splitlines() if " app.access " in line]
    assert len(lines) == 1
    assert " INFO app.access GET /query/raw 404 " in lines[0] and lines[0].endswith("ms")


@pytest.mark.usefixtures("restore_app_logging")
def test_access_log_off_still_counts_every_request(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(test_settings(database_url, access_log=False))
    with TestClient(app) as client:
        capsys.readouterr()
        assert client.post("/metrics/ingest", json=sample()).status_code == 201
        assert client.post("/metrics/ingest", json={"metric_name": "1bad"}).status_code == 422
        assert client.get("/query/raw", params={"metric_name": "nope"}).status_code == 404
        counted = scrape(client)
    assert " app.access " not in capsys.readouterr().err
    count = "metrics_http_requests_total"
    for route, status in (("/metrics/ingest", "201"), ("/metrics/ingest", "422")):
        assert value(counted, count, method="POST", route=route, status=status) == 1
    assert value(counted, count, method="GET", route="/query/raw", status="404") == 1


# -- exposure warning --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("unix:/run/metrics.sock", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("10.0.0.1", False),
        ("metrics.example.com", False),
        ("", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert observability.is_loopback(host) is loopback


UVICORN = "/venv/lib/python3.11/site-packages/uvicorn/__main__.py"


@pytest.mark.parametrize(
    ("argv", "environ", "host"),
    [
        ([UVICORN, "app.main:app"], {}, "127.0.0.1"),
        ([UVICORN, "app.main:app", "--host", "0.0.0.0"], {}, "0.0.0.0"),
        ([UVICORN, "app.main:app", "--host=::"], {}, "::"),
        ([UVICORN, "app.main:app"], {"UVICORN_HOST": "0.0.0.0"}, "0.0.0.0"),
        (["/usr/bin/uvicorn", "--uds", "/tmp/m.sock", "app.main:app"], {}, "unix:/tmp/m.sock"),
        (["/usr/bin/gunicorn", "-b", "0.0.0.0:8000", "app.main:app"], {}, "0.0.0.0"),
        (["/usr/bin/gunicorn", "--bind=[::1]:8000", "app.main:app"], {}, "[::1]"),
        (["/usr/bin/gunicorn", "app.main:app"], {}, "127.0.0.1"),
        (["/venv/bin/metrics-service", "serve", "--host", "0.0.0.0"], {}, "0.0.0.0"),
        (["/venv/bin/metrics-service", "serve"], {}, "127.0.0.1"),
        (["/src/app/cli/__main__.py", "serve", "--host=::"], {}, "::"),
        (["/venv/bin/metrics-service", "import", "x.csv", "--host", "0.0.0.0"], {}, None),
        (["/usr/bin/pytest", "--host", "0.0.0.0"], {}, None),
        ([], {}, None),
    ],
)
def test_bind_host(argv: list[str], environ: dict[str, str], host: str | None) -> None:
    assert observability.bind_host(argv, environ) == host


def test_warns_when_exposed_without_keys(tmp_path: Path) -> None:
    open_settings = test_settings(f"sqlite:///{tmp_path / 'm.db'}")
    keyed = test_settings(f"sqlite:///{tmp_path / 'm.db'}", api_keys=["k"])
    with captured("app.observability") as records:
        assert observability.warn_if_exposed("0.0.0.0", open_settings) is True
        assert observability.warn_if_exposed("127.0.0.1", open_settings) is False
        assert observability.warn_if_exposed(None, open_settings) is False
        assert observability.warn_if_exposed("0.0.0.0", keyed) is False
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING
    message = records[0].getMessage()
    assert "0.0.0.0" in message and "API_KEYS" in message


def test_warns_when_only_read_keys_are_set(tmp_path: Path) -> None:
    settings = test_settings(f"sqlite:///{tmp_path / 'm.db'}", read_api_keys=["r"])
    with captured("app.observability") as records:
        observability.warn_if_exposed("127.0.0.1", settings)
    assert [r.levelno for r in records] == [logging.WARNING]
    assert "READ_API_KEYS" in records[0].getMessage()


def test_middleware_warns_once_for_a_request_on_a_public_address(tmp_path: Path) -> None:
    async def answer(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    settings = test_settings(f"sqlite:///{tmp_path / 'm.db'}")
    recorder = observability.RequestRecorder(observability.Metrics(), settings)
    middleware = observability.ObservabilityMiddleware(answer, recorder)

    async def call(server: tuple[str, int]) -> None:
        scope = {"type": "http", "method": "GET", "path": "/x", "server": server, "headers": []}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        async def send(message: Any) -> None:
            pass

        await middleware(scope, receive, send)

    with captured("app.observability") as records:
        asyncio.run(call(("10.1.2.3", 8000)))
        asyncio.run(call(("10.1.2.3", 8000)))
    assert len(records) == 1 and "10.1.2.3" in records[0].getMessage()


def test_answers_carry_their_server_time(client: TestClient) -> None:
    answer = client.get("/metrics/names")
    name, _, value = answer.headers["server-timing"].partition(";")
    assert name == "app"
    assert value.startswith("dur=") and float(value[4:]) >= 0
