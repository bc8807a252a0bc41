"""Connection pool settings (PostgreSQL): applied as configured, and an exhausted pool answers 503
within DB_POOL_TIMEOUT instead of failing with a 500."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from conftest import LiveServer


def test_pool_settings_apply_and_exhaustion_is_a_503(database_url: str, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite has one writer connection and no pool settings")
    env = {"DB_POOL_SIZE": "1", "DB_POOL_TIMEOUT": "0.01s", "QUERY_TIMEOUT": "30s"}
    server = LiveServer(database_url, env=env)
    server.start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            body = {
                "metrics": [
                    {"metric_name": "cpu", "value": float(i), "labels": {"h": str(i % 50)}}
                    for i in range(2000)
                ]
            }
            assert client.post("/backfill/import", json=body).status_code == 201
            exposition = client.get("/metrics").text
            assert 'metrics_db_pool_size{pool="main"} 1.0' in exposition

            def query(_: int) -> httpx.Response:
                return client.get("/anomaly/detect", params={"metric_name": "cpu"})

            with ThreadPoolExecutor(max_workers=24) as pool:
                answers = list(pool.map(query, range(48)))
    finally:
        server.stop()
    statuses = {a.status_code for a in answers}
    assert statuses <= {200, 503}, statuses
    assert 503 in statuses  # 24 concurrent queries, 2 connections, 10 ms to get one
    for answer in answers:
        if answer.status_code == 503:
            assert answer.json()["detail"].startswith("database unavailable")
