"""Durability across restarts of a real server: graceful (SIGTERM) and hard (SIGKILL) stops."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson
from conftest import LiveServer, run_job, sql_rows

T0_S = 1_764_763_200  # 2025-12-03T12:00:00Z
WINDOW = {"start_time": "2025-12-03T11:00:00Z", "end_time": "2025-12-03T13:00:00Z"}


def stored(server: LiveServer, metric: str) -> dict[tuple[str, str], float]:
    """(worker label, timestamp) -> value, for every point of a metric."""
    answer = httpx.get(
        f"{server.base_url}/query/raw", params={"metric_name": metric, **WINDOW}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return {
        (s["labels"].get("w", ""), p["timestamp"]): p["value"]
        for s in answer.json()["series"]
        for p in s["points"]
    }


def stamp(second: int) -> str:
    return f"2025-12-03T12:{second // 60:02d}:{second % 60:02d}Z"


def test_data_survives_a_graceful_restart(live_server: LiveServer) -> None:
    base = live_server.base_url
    with httpx.Client(base_url=base, timeout=30) as http:
        for i in range(3):
            body = {
                "metric_name": "kept",
                "value": i + 0.5,
                "timestamp": T0_S + i,
                "labels": {"w": "s"},
            }
            assert http.post("/metrics/ingest", json=body).status_code == 201
        items = [
            {
                "metric_name": "kept",
                "value": 100 + i,
                "timestamp": T0_S + 10 + i,
                "labels": {"w": "b"},
            }
            for i in range(10)
        ]
        answer = http.post("/backfill/import", json={"metrics": items})
        assert answer.status_code == 201
        assert answer.json()["imported"] == 10
    expected = {("s", stamp(i)): i + 0.5 for i in range(3)}
    expected |= {("b", stamp(10 + i)): 100.0 + i for i in range(10)}
    assert stored(live_server, "kept") == expected

    live_server.stop("term")
    live_server.start()
    assert stored(live_server, "kept") == expected
    assert httpx.get(f"{base}/metrics/names").json() == {"names": ["kept"]}


WORKERS = 4
PER_WORKER = 50


def test_acknowledged_writes_survive_a_kill(live_server: LiveServer) -> None:
    acknowledged: set[tuple[str, str, float]] = set()
    sent: set[tuple[str, str, float]] = set()
    lock = threading.Lock()
    enough = threading.Event()

    def worker(w: int) -> None:
        with httpx.Client(base_url=live_server.base_url, timeout=10) as http:
            for i in range(PER_WORKER):
                point = (str(w), stamp(i), float(w * 1000 + i))
                body = {
                    "metric_name": "durable",
                    "value": point[2],
                    "timestamp": T0_S + i,
                    "labels": {"w": point[0]},
                }
                with lock:
                    sent.add(point)
                try:
                    answer = http.post("/metrics/ingest", json=body)
                except httpx.HTTPError:
                    return  # the server is gone: this sample was never acknowledged
                if answer.status_code != 201:
                    return
                with lock:
                    acknowledged.add(point)
                    if len(acknowledged) >= WORKERS * PER_WORKER // 2:
                        enough.set()

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = [pool.submit(worker, w) for w in range(WORKERS)]
        enough.wait(timeout=60)
        live_server.stop("kill")  # while the other half is still being written
        for future in futures:
            future.result()

    assert len(acknowledged) >= WORKERS * PER_WORKER // 2
    live_server.start()
    after = stored(live_server, "durable")
    for w, ts, value in acknowledged:
        assert after.get((w, ts)) == value, f"acknowledged sample {w} {ts} lost"
    # Nothing appears that was not sent, and the server takes writes again.
    assert {(w, ts, v) for (w, ts), v in after.items()} <= sent
    body = {"metric_name": "durable", "value": 1, "timestamp": time.time(), "labels": {"w": "x"}}
    assert httpx.post(f"{live_server.base_url}/metrics/ingest", json=body).status_code == 201


def test_sigterm_finishes_the_request_in_flight(live_server: LiveServer) -> None:
    count = 50_000
    body = orjson.dumps(
        {
            "metrics": [
                {"metric_name": "inflight", "value": float(i), "timestamp": T0_S + i / 20}
                for i in range(count)
            ]
        }
    )
    sent = threading.Event()

    def upload() -> Iterator[bytes]:
        for start in range(0, len(body), 65_536):
            yield body[start : start + 65_536]
        sent.set()  # the server has the whole body and is working on it

    with ThreadPoolExecutor(max_workers=1) as pool:
        answer = pool.submit(
            httpx.post,
            f"{live_server.base_url}/backfill/import",
            content=upload(),
            headers={"content-type": "application/json"},
            timeout=60,
        )
        assert sent.wait(timeout=30)
        assert live_server.process is not None
        live_server.process.terminate()  # SIGTERM while the import is in flight
        response = answer.result(timeout=60)
    assert response.status_code == 201, response.text
    assert response.json()["imported"] == count
    # The server shuts down on its own after the answer; uvicorn re-raises SIGTERM on its way out.
    assert live_server.process.wait(timeout=30) in (0, -signal.SIGTERM)
    live_server.process = None
    assert "Finished server process" in live_server.log_tail()
    live_server.start()
    params = {"metric_name": "inflight", **WINDOW, "limit": count + 1}
    stored_now = httpx.get(f"{live_server.base_url}/query/raw", params=params, timeout=30).json()
    assert sum(len(s["points"]) for s in stored_now["series"]) == count


MARKED_SERIES = 100
MARKED_POINTS = 720  # a minute apart: 72,000 one-minute buckets marked for the rollup job


def _jobs(server: LiveServer) -> dict[str, Any]:
    answer = httpx.get(f"{server.base_url}/jobs/status", timeout=30)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_sigterm_stops_a_long_job_run_at_its_next_transaction(
    live_server: LiveServer, database_url: str
) -> None:
    """A rollup run of 72,000 one-bucket transactions (minutes of work) is under way when the
    server gets SIGTERM: the server exits cleanly at once instead of finishing the run (the
    run ends before its next transaction), the run is recorded as `stopped` with its marks
    left pending, and the next run (the command-line job) completes them."""
    start_ms = (int(time.time()) // 3600 - 36) * 3_600_000  # a day and a half ago
    stamps = [(start_ms + i * 60_000) / 1000 for i in range(MARKED_POINTS)]
    series = [
        {"metric_name": "marked", "labels": {"host": f"h{s:03d}"}, "timestamps": stamps,
         "values": [float(s + i) for i in range(MARKED_POINTS)]}
        for s in range(MARKED_SERIES)
    ]  # fmt: skip
    answer = httpx.post(
        f"{live_server.base_url}/backfill/import", json={"series": series}, timeout=120
    )
    assert answer.status_code == 201, answer.text
    marked = _jobs(live_server)["pending_invalidations"]["1m"]
    assert marked == MARKED_SERIES * MARKED_POINTS
    live_server.stop()

    live_server.env = {
        "SCHEDULER_ENABLED": "true",
        "JOB_CHUNK_BUCKETS": "1",  # one bucket per transaction: a run of minutes
        "ROLLUP_INTERVAL": "1h",
        "RETENTION_INTERVAL": "1h",
        "COMPACT_INTERVAL": "1h",
    }
    live_server.start()
    deadline = time.monotonic() + 60
    while _jobs(live_server)["pending_invalidations"]["1m"] == marked:  # the run has begun
        assert time.monotonic() < deadline, live_server.log_tail()
        time.sleep(0.1)
    # Within LiveServer.stop's 30 s, though the run had minutes to go; uvicorn exits a graceful
    # stop by raising the signal it caught again.
    assert live_server.stop("term") in (0, -signal.SIGTERM)
    assert "job rollup stopped" in live_server.log_tail(), live_server.log_tail()

    live_server.env = {}
    live_server.start()
    status = _jobs(live_server)
    assert status["jobs"]["rollup"]["status"] == "stopped", status
    left = status["pending_invalidations"]["1m"]
    assert 0 < left < marked, status
    gauges = httpx.get(f"{live_server.base_url}/metrics", timeout=30).text
    assert 'metrics_job_last_success{job="rollup"} 1.0' in gauges  # stopped is not failed
    live_server.stop()

    run_job(database_url, "rollup")
    live_server.start()
    assert _jobs(live_server)["pending_invalidations"] == {"1m": 0, "5m": 0, "1h": 0}
    rows = sql_rows(database_url, "SELECT count(*), sum(sum) FROM rollup_1m")
    expected = sum(float(s + i) for s in range(MARKED_SERIES) for i in range(MARKED_POINTS))
    assert rows == [(MARKED_SERIES * MARKED_POINTS, expected)]
