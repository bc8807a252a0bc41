"""API keys: API_KEYS guards writes (and retention changes), READ_API_KEYS guards reads, /health and
/db/status stay open, and no key ever reaches a log line."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest
from conftest import LiveServer, test_settings
from fastapi.testclient import TestClient

from app import observability
from app.main import create_app

# Recent times (today's PostgreSQL partition): old days would leave partitions behind that the
# retention tests, sharing the session's database, would then count.
BASE_S = (int(time.time()) // 60 - 30) * 60


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


T0 = iso(BASE_S)
WINDOW = {"start_time": iso(BASE_S - 3600), "end_time": iso(BASE_S + 3600)}
SAMPLE = {"metric_name": "cpu_usage", "value": 1.5, "timestamp": T0, "labels": {"host": "a"}}
BACKFILL = {"metrics": [SAMPLE]}
READS = [
    ("/metrics/names", {}),
    ("/query/raw", {"metric_name": "cpu_usage", **WINDOW}),
    ("/query/rollup", {"metric_name": "cpu_usage", "window": "5m", **WINDOW}),
    ("/anomaly/detect", {"metric_name": "cpu_usage", **WINDOW}),
    ("/jobs/status", {}),
    ("/retention", {}),
]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def api_key(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def assert_unauthorized(answer: httpx.Response, kind: str) -> None:
    assert answer.status_code == 401, answer.text
    detail = answer.json()["detail"]
    assert f"a {kind} API key is required" in detail
    assert "Authorization: Bearer KEY" in detail and "X-API-Key: KEY" in detail
    assert answer.headers["www-authenticate"] == "Bearer"


# -- writes ------------------------------------------------------------------------------------


def test_writes_need_a_write_key(make_client: Callable[..., TestClient]) -> None:
    client = make_client(api_keys=["w1"])
    assert_unauthorized(client.post("/metrics/ingest", json=SAMPLE), "write")
    assert_unauthorized(client.post("/backfill/import", json=BACKFILL), "write")
    for wrong in (bearer("w2"), api_key("w2"), bearer(""), api_key(""), bearer("w1 w1")):
        assert_unauthorized(client.post("/metrics/ingest", json=SAMPLE, headers=wrong), "write")
    # Basic auth carries the key as its password (or as the user name when there is none):
    # "dzI6" is "w2:", a wrong key; "dzE6" ("w1:") is accepted (tests/protocols/test_auth.py).
    assert_unauthorized(
        client.post("/metrics/ingest", json=SAMPLE, headers={"Authorization": "Basic dzI6"}),
        "write",
    )

    assert client.post("/metrics/ingest", json=SAMPLE, headers=bearer("w1")).status_code == 201
    assert client.post("/metrics/ingest", json=SAMPLE, headers=api_key("w1")).status_code == 201
    lower = {"authorization": "bearer w1"}
    assert client.post("/metrics/ingest", json=SAMPLE, headers=lower).status_code == 201
    answer = client.post("/backfill/import", json=BACKFILL, headers=bearer("w1"))
    assert answer.status_code == 201 and answer.json()["imported"] == 1


def test_a_rejected_write_stores_nothing(make_client: Callable[..., TestClient]) -> None:
    client = make_client(api_keys=["w1"])
    assert client.post("/metrics/ingest", json=SAMPLE, headers=bearer("nope")).status_code == 401
    assert client.post("/backfill/import", json=BACKFILL).status_code == 401
    assert client.get("/metrics/names").json() == {"names": []}


def test_several_write_keys(make_client: Callable[..., TestClient]) -> None:
    client = make_client(api_keys="w1, w2 ,")  # the environment's comma-separated form
    for key in ("w1", "w2"):
        assert client.post("/metrics/ingest", json=SAMPLE, headers=api_key(key)).status_code == 201
    assert client.post("/metrics/ingest", json=SAMPLE, headers=api_key("w1, w2")).status_code == 401


def test_no_keys_configured_means_open(client: TestClient) -> None:
    assert client.post("/metrics/ingest", json=SAMPLE).status_code == 201
    assert client.put("/retention/cpu_usage", json={"raw": "2d"}).status_code == 200
    for path, params in READS:
        assert client.get(path, params=params).status_code == 200, path


def test_retention_changes_need_the_write_key(make_client: Callable[..., TestClient]) -> None:
    client = make_client(api_keys=["w1"], read_api_keys=["r1"])
    policy = {"raw": "2d"}
    assert_unauthorized(client.put("/retention/cpu_usage", json=policy), "write")
    assert_unauthorized(
        client.put("/retention/cpu_usage", json=policy, headers=bearer("r1")), "write"
    )
    assert_unauthorized(client.delete("/retention/cpu_usage"), "write")
    assert_unauthorized(client.delete("/retention/cpu_usage", headers=api_key("r1")), "write")
    overrides = client.get("/retention", headers=bearer("r1")).json()["overrides"]
    assert overrides == {}

    answer = client.put("/retention/cpu_usage", json=policy, headers=bearer("w1"))
    assert answer.status_code == 200 and answer.json()["policy"]["raw"] == "2d"
    assert client.delete("/retention/cpu_usage", headers=api_key("w1")).status_code == 200


# -- reads -------------------------------------------------------------------------------------


def test_reads_stay_open_with_only_write_keys(make_client: Callable[..., TestClient]) -> None:
    client = make_client(api_keys=["w1"])
    assert client.post("/metrics/ingest", json=SAMPLE, headers=bearer("w1")).status_code == 201
    for path, params in READS:
        assert client.get(path, params=params).status_code == 200, path
    points = client.get("/query/raw", params=READS[1][1]).json()["series"][0]["points"]
    assert points == [{"timestamp": T0, "value": 1.5}]


def test_reads_need_a_read_or_write_key(make_client: Callable[..., TestClient]) -> None:
    client = make_client(api_keys=["w1"], read_api_keys=["r1"])
    assert client.post("/metrics/ingest", json=SAMPLE, headers=bearer("w1")).status_code == 201
    for path, params in READS:
        assert_unauthorized(client.get(path, params=params), "read")
        assert_unauthorized(client.get(path, params=params, headers=bearer("r2")), "read")
        for good in (bearer("r1"), api_key("r1"), bearer("w1"), api_key("w1")):
            assert client.get(path, params=params, headers=good).status_code == 200, (path, good)
    # a read key does not write
    assert_unauthorized(client.post("/metrics/ingest", json=SAMPLE, headers=bearer("r1")), "write")


def test_health_and_db_status_stay_open(make_client: Callable[..., TestClient]) -> None:
    client = make_client(api_keys=["w1"], read_api_keys=["r1"])
    assert client.get("/health").status_code == 200
    answer = client.get("/db/status")
    assert answer.status_code == 200 and answer.json()["status"] == "ok"


def test_prometheus_metrics_need_the_read_key(make_client: Callable[..., TestClient]) -> None:
    client = make_client(api_keys=["w1"], read_api_keys=["r1"])
    assert_unauthorized(client.get("/metrics"), "read")
    assert client.get("/metrics", headers=bearer("r1")).status_code == 200
    assert client.get("/metrics", headers=api_key("w1")).status_code == 200
    open_reads = make_client(api_keys=["w1"])
    assert open_reads.get("/metrics").status_code == 200


# -- keys stay out of the logs -----------------------------------------------------------------

GOOD = "w1-s3cret-write-key-7d1f"
READ = "r1-s3cret-read-key-9a2c"
WRONG = "wrong-s3cret-key-5e8b"
KEYS = (GOOD, READ, WRONG)


def exercise(client: httpx.Client | TestClient) -> None:
    """Requests of every kind with good, read-only and wrong keys, good answers and errors."""
    for headers in (bearer(GOOD), api_key(GOOD), bearer(WRONG), api_key(WRONG), bearer(READ), {}):
        client.post("/metrics/ingest", json=SAMPLE, headers=headers)
        client.post("/metrics/ingest", json={"metric_name": "1bad", "value": 1}, headers=headers)
        client.post("/backfill/import", content=b"not json", headers=headers)
        client.put("/retention/cpu_usage", json={"raw": "2d"}, headers=headers)
        for path, params in READS:
            client.get(path, params=params, headers=headers)
        client.get("/query/raw", params={"metric_name": "missing"}, headers=headers)
        client.get("/metrics", headers=headers)


@pytest.mark.usefixtures("restore_app_logging")
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_keys_never_appear_in_logs(
    database_url: str, capsys: pytest.CaptureFixture[str], log_format: str
) -> None:
    settings = test_settings(
        database_url,
        api_keys=[GOOD],
        read_api_keys=[READ],
        log_format=log_format,
        log_level="DEBUG",
    )
    app = create_app(settings)  # its log handler writes to capsys' stderr
    observability.install(app)
    with TestClient(app) as client:
        exercise(client)
    output = capsys.readouterr()
    logged = output.err + output.out
    assert logged.count("app.access") >= 60  # the requests were logged...
    for key in KEYS:
        assert key not in logged  # ...but never a key
    if log_format == "json":
        for line in output.err.splitlines():
            json.loads(line)


def test_keys_never_appear_in_a_live_servers_output(database_url: str) -> None:
    server = LiveServer(
        database_url, env={"API_KEYS": GOOD, "READ_API_KEYS": READ, "LOG_LEVEL": "DEBUG"}
    )
    server.start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            exercise(client)
            assert client.get("/health").status_code == 200
    finally:
        server.stop()
    text = server.log_path.read_text(errors="replace")
    assert "serving on" in text  # the app's log did reach stderr
    for key in KEYS:
        assert key not in text
