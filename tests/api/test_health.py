"""Liveness and database status."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_health_is_ok(client: TestClient, backend: str) -> None:
    answer = client.get("/health")
    assert answer.status_code == 200
    assert answer.json()["status"] == "ok"


def test_db_status_names_the_backend(client: TestClient, backend: str) -> None:
    answer = client.get("/db/status")
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "ok"
    assert body["backend"] == backend
    assert body["latency_ms"] >= 0
