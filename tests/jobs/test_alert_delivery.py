"""The alert job as users run it (`python -m app.jobs.alert_job`), against a real Alertmanager
(Debian's prometheus-alertmanager, started here on 127.0.0.1) and a webhook receiver of the
test's own that fails at first; on both backends."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import free_port, run_inline, run_job, sql_rows
from fastapi.testclient import TestClient

ALERTMANAGER = shutil.which("prometheus-alertmanager")
STEP_S = 10


# ------------------------------------------------------------------ outside parts


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    if ALERTMANAGER is None:
        message = "prometheus-alertmanager is missing: install Debian's package (make clients)"
        if os.environ.get("REQUIRE_CLIENTS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    config = tmp_path / "alertmanager.yml"
    config.write_text("route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n")
    port = free_port()
    log = (tmp_path / "alertmanager.log").open("wb")
    process = subprocess.Popen(
        [
            ALERTMANAGER,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError((tmp_path / "alertmanager.log").read_text())
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


@dataclass
class Receiver:
    """A webhook receiver: answers 503 to the first `failures` requests, records every one."""

    url: str = ""
    failures: int = 0
    hang: threading.Event | None = None  # when set up: hold requests until the event is set
    requests: list[tuple[dict[str, str], Any]] = field(default_factory=list)
    in_flight: threading.Event = field(default_factory=threading.Event)

    def accepted(self) -> list[Any]:
        return [body for headers, body in self.requests if headers.get("x-accepted") == "1"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            state.in_flight.set()
            if state.hang is not None:
                state.hang.wait(30)
            with lock:
                fail = state.failures > 0
                state.failures -= 1
                headers = {k.lower(): v for k, v in self.headers.items()}
                headers["x-accepted"] = "0" if fail else "1"
                state.requests.append((headers, body))
            self.send_response(503 if fail else 200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    if state.hang is not None:
        state.hang.set()
    server.shutdown()
    server.server_close()


# ------------------------------------------------------------------ data


def now_s() -> int:
    return int(time.time()) // STEP_S * STEP_S


def write(
    client: TestClient, metric: str, ts: np.ndarray, values: np.ndarray, **labels: str
) -> None:
    body = {
        "series": [
            {
                "metric_name": metric,
                "labels": labels,
                "timestamps": ts.tolist(),
                "values": values.tolist(),
            }
        ]
    }
    answer = client.post("/backfill/import", json=body)
    assert answer.status_code == 201, answer.text


def history(database_url: str) -> list[tuple[str, str]]:
    return [
        (str(r[0]), str(r[1]))
        for r in sql_rows(database_url, "SELECT rule_name, state FROM alert_history ORDER BY id")
    ]


# ------------------------------------------------------------------ tests


def test_an_incident_fires_in_alertmanager_and_resolves_when_data_is_normal_again(
    client: TestClient, database_url: str, alertmanager: str
) -> None:
    end = now_s()
    ts = end - STEP_S * np.arange(8640)[::-1]  # a day of 10 s samples up to now
    values = 50.0 + np.random.default_rng(1).normal(0, 2.0, ts.size)
    values[-6:] += 40.0  # the last minute: twenty sigmas high
    write(client, "cpu_usage", ts, values, host="web1")
    rule = {
        "metric": "cpu_usage",
        "anomaly": {"likelihood": 0.99999},
        "labels": {"severity": "page"},
        "annotations": {"summary": "cpu_usage on {{ $labels.host }} is unusual: {{ $value }}"},
    }
    assert client.put("/alerts/rules/cpu_unusual", json=rule).status_code == 201
    env = {"ALERTMANAGER_URL": alertmanager, "ALERT_EXTERNAL_URL": "http://metrics.example"}
    done = run_job(database_url, "alert", **env)
    assert "notifications sent: 1" in done.stdout, done.stdout
    [listed] = httpx.get(f"{alertmanager}/api/v2/alerts", timeout=10).json()
    assert listed["labels"] == {"alertname": "cpu_unusual", "host": "web1", "severity": "page"}
    assert listed["status"]["state"] == "active"
    assert listed["annotations"]["summary"].startswith("cpu_usage on web1 is unusual: 9")
    assert listed["generatorURL"].startswith("http://metrics.example/dashboard?metric=cpu_usage")
    assert client.get("/alerts").json()["alerts"][0]["state"] == "firing"
    # The data returns to normal: the next run resolves the alert, and Alertmanager drops it.
    while now_s() <= end:
        time.sleep(0.5)
    later = np.arange(end + STEP_S, now_s() + 1, STEP_S)
    write(client, "cpu_usage", later, np.full(later.size, 50.0), host="web1")
    run_job(database_url, "alert", **env)
    assert client.get("/alerts").json()["alerts"] == []
    assert httpx.get(f"{alertmanager}/api/v2/alerts", timeout=10).json() == []
    assert [s for _, s in history(database_url)] == ["pending", "firing", "resolved"]


def threshold_incident(client: TestClient) -> None:
    end = now_s()
    ts = end - STEP_S * np.arange(20)[::-1]
    values = np.where(np.arange(20) % 10 >= 7, 99.0, 20.0)  # hot twice, for 30 s each
    values[-1] = 20.0
    write(client, "temp", ts, values, room="a")
    rule = {"metric": "temp", "threshold": {"op": ">", "value": 80}}
    assert client.put("/alerts/rules/hot", json=rule).status_code == 201


def test_a_webhook_that_fails_at_first_gets_each_notification_once(
    client: TestClient, database_url: str, receiver: Receiver
) -> None:
    threshold_incident(client)
    receiver.failures = 1
    env = {"ALERT_WEBHOOK_URL": receiver.url, "ALERT_INTERVAL": "1s"}
    first = run_job(database_url, "alert", **env)
    assert len(receiver.requests) == 1 and receiver.accepted() == [], (
        first.stdout + first.stderr
    )  # failed; the rest wait
    settings = {"alert_webhook_url": receiver.url, "alert_interval": "1s"}
    for _ in range(20):  # back-off 1 s; these runs in this process
        if len(receiver.accepted()) == 4:
            break
        time.sleep(0.5)
        run_inline(database_url, "alert", **settings)
    bodies = receiver.accepted()
    assert [b["status"] for b in bodies] == ["firing", "resolved", "firing", "resolved"]
    assert all(b["alerts"][0]["labels"] == {"alertname": "hot", "room": "a"} for b in bodies)
    keys = [h["idempotency-key"] for h, _ in receiver.requests if h["x-accepted"] == "1"]
    assert len(set(keys)) == 4
    statuses = sql_rows(
        database_url, "SELECT status, attempts FROM alert_notifications ORDER BY id"
    )
    assert [s for s, _ in statuses] == ["sent"] * 4
    assert statuses[0][1] == 2  # a failure, then sent
    before = len(receiver.requests)
    run_inline(database_url, "alert", **settings)
    assert len(receiver.requests) == before  # nothing sent twice
