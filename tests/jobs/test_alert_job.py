"""The alert job with others around: two job processes at once notify once, and a webhook
receiver that hangs never holds up ingestion. These exercise the job lock and the event loop
rather than a backend's SQL, so their PostgreSQL runs are in the slow set (`-m slow`)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import httpx
import pytest
from conftest import ROOT, LiveServer
from fastapi.testclient import TestClient
from test_alert_delivery import Receiver, history, receiver, threshold_incident

__all__ = ["receiver"]  # the fixture, used by name


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_two_job_processes_at_once_notify_once(
    client: TestClient, database_url: str, receiver: Receiver
) -> None:
    threshold_incident(client)
    env = {**os.environ, "DATABASE_URL": database_url, "ALERT_WEBHOOK_URL": receiver.url}
    command = [sys.executable, "-m", "app.jobs.alert_job"]
    runs = [
        subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for process in runs:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err.decode()
    assert [b["status"] for b in receiver.accepted()] == [
        "firing",
        "resolved",
        "firing",
        "resolved",
    ]
    assert len(history(database_url)) == 6  # pending, firing, resolved twice: recorded once


def test_a_hanging_receiver_never_blocks_ingestion(
    client: TestClient, database_url: str, receiver: Receiver
) -> None:
    threshold_incident(client)
    receiver.hang = threading.Event()
    server = LiveServer(
        database_url,
        env={
            "SCHEDULER_ENABLED": "true",
            "ALERT_WEBHOOK_URL": receiver.url,
            "ALERT_INTERVAL": "1s",
            "ALERT_NOTIFY_TIMEOUT": "30s",
        },
    )
    server.start()
    try:
        assert receiver.in_flight.wait(30), server.log_tail()  # a delivery is under way, held
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            for i in range(20):
                sample = {"metric_name": "temp", "value": 21.0 + i, "labels": {"room": "b"}}
                assert http.post("/metrics/ingest", json=sample).status_code == 201
            assert http.get("/health").status_code == 200
        assert receiver.accepted() == []  # still held while all of that was answered
    finally:
        receiver.hang.set()
        server.stop()
