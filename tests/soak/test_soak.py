"""Soak: a real server under mixed load for SOAK_SECONDS (default 120) on each backend.

Concurrent single-sample ingestion, backfill batches, queries of every kind, and the rollup job run
as its own process every ~10 s. Traffic goes only to the live server on 127.0.0.1, every loop is
bounded in time and count. Checks: no 5xx and no failed connection, every acknowledged sample is
stored, and the server's resident memory at the end is at most 1.5x what it was after warm-up.

Run with `make soak` (or `pytest -m slow tests/soak`).
"""

from __future__ import annotations

import os
import random
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from conftest import LiveServer, run_job

pytestmark = pytest.mark.slow

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "120"))
WARMUP_SECONDS = min(30.0, max(5.0, SOAK_SECONDS * 0.15))
JOB_EVERY_SECONDS = 10.0
MAX_REQUESTS_PER_WORKER = 200_000
RSS_GROWTH_LIMIT = 1.5
INGEST_WORKERS = 4
QUERY_WORKERS = 2


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS line")


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    transport_errors: list[str] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=dict)

    def record(self, kind: str, answer: httpx.Response, seconds: float) -> None:
        with self.lock:
            self.statuses[(kind, answer.status_code)] += 1
            self.latencies.setdefault(kind, []).append(seconds)
            if answer.status_code >= 500 and len(self.server_errors) < 20:
                self.server_errors.append(f"{kind} {answer.status_code}: {answer.text[:300]}")

    def failed(self, kind: str, exc: Exception) -> None:
        with self.lock:
            if len(self.transport_errors) < 20:
                self.transport_errors.append(f"{kind}: {type(exc).__name__}: {exc}")

    def summary(self) -> str:
        lines = []
        for kind, values in sorted(self.latencies.items()):
            values = sorted(values)
            p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
            lines.append(
                f"{kind:20s} n={len(values):7d} p50={statistics.median(values) * 1000:7.1f}ms"
                f" p99={p99 * 1000:7.1f}ms"
            )
        return "\n".join(lines)


def test_soak(live_server: LiveServer, database_url: str) -> None:
    assert live_server.process is not None
    pid = live_server.process.pid

    tally = Tally()
    acknowledged: Counter[str] = Counter()  # host -> samples acknowledged
    started = time.monotonic()
    deadline = started + SOAK_SECONDS
    stop = threading.Event()
    soak_start_ms = int(time.time() * 1000)

    def loop(kind: str, step: Callable[[httpx.Client, int], httpx.Response]) -> None:
        with httpx.Client(base_url=live_server.base_url, timeout=30) as client:
            for n in range(MAX_REQUESTS_PER_WORKER):
                if stop.is_set() or time.monotonic() > deadline:
                    return
                began = time.perf_counter()
                try:
                    answer = step(client, n)
                except httpx.HTTPError as exc:
                    tally.failed(kind, exc)
                    time.sleep(0.1)
                    continue
                named = f"GET {answer.request.url.path}" if kind == "query" else kind
                tally.record(named, answer, time.perf_counter() - began)

    def ingest_step(host: str) -> Callable[[httpx.Client, int], httpx.Response]:
        last_ms = [0]

        def step(client: httpx.Client, n: int) -> httpx.Response:
            ts_ms = max(int(time.time() * 1000), last_ms[0] + 1)  # unique per series
            last_ms[0] = ts_ms
            body = {
                "metric_name": "soak_cpu",
                "value": random.gauss(50, 10),
                "timestamp": ts_ms / 1000,
                "labels": {"host": host, "region": "r1"},
            }
            answer = client.post("/metrics/ingest", json=body)
            if answer.status_code == 201:
                with tally.lock:
                    acknowledged[host] += 1
            return answer

        return step

    def backfill_step(client: httpx.Client, n: int) -> httpx.Response:
        now = time.time()
        metrics = [
            {
                "metric_name": "soak_backfill",
                "value": random.random(),
                "timestamp": now - 3000 + random.random() * 2900,
                "labels": {"host": f"b{i % 10}"},
            }
            for i in range(500)
        ]
        answer = client.post("/backfill/import", json={"metrics": metrics})
        time.sleep(0.2)
        return answer

    def query_step(client: httpx.Client, n: int) -> httpx.Response:
        now = time.time()
        recent = {"start_time": now - 300, "end_time": now}
        host = f"h{n % INGEST_WORKERS}"
        choices: list[tuple[str, dict[str, Any]]] = [
            ("/query/raw", {"metric_name": "soak_cpu", "label": f"host:{host}", **recent}),
            ("/query/raw", {"metric_name": "soak_cpu", "match": '{host=~"h[01]"}', **recent}),
            ("/query/rollup", {"metric_name": "soak_cpu", "window": "1m", **recent}),
            ("/query/rollup", {"metric_name": "soak_backfill", "window": "5m"}),
            ("/anomaly/detect", {"metric_name": "soak_cpu", **recent}),
            ("/metrics/names", {}),
            ("/jobs/status", {}),
            ("/db/status", {}),
            ("/metrics", {}),
        ]
        path, params = choices[n % len(choices)]
        return client.get(path, params=params)

    def job_loop() -> None:
        while not stop.is_set() and time.monotonic() < deadline - JOB_EVERY_SECONDS / 2:
            began = time.perf_counter()
            try:
                run_job(database_url, "rollup")
            except AssertionError as exc:
                tally.failed("rollup_job", RuntimeError(str(exc)[-500:]))
            with tally.lock:
                tally.latencies.setdefault("rollup_job", []).append(time.perf_counter() - began)
            stop.wait(JOB_EVERY_SECONDS)

    ingest_steps = [ingest_step(f"h{i}") for i in range(INGEST_WORKERS)]
    with httpx.Client(base_url=live_server.base_url, timeout=30) as seed:
        # every metric the queries ask for exists before they start: any 404 is then a bug
        for step in ingest_steps:
            assert step(seed, 0).status_code == 201
        assert backfill_step(seed, 0).status_code == 201
    workers = [threading.Thread(target=loop, args=("ingest", step)) for step in ingest_steps]
    workers.append(threading.Thread(target=loop, args=("backfill", backfill_step)))
    workers += [
        threading.Thread(target=loop, args=("query", query_step)) for _ in range(QUERY_WORKERS)
    ]
    workers.append(threading.Thread(target=job_loop))
    for worker in workers:
        worker.start()

    rss_samples: list[tuple[float, int]] = []
    warm_rss: int | None = None
    try:
        while time.monotonic() < deadline and any(w.is_alive() for w in workers):
            elapsed = time.monotonic() - started
            rss_samples.append((elapsed, rss_kib(pid)))
            if warm_rss is None and elapsed >= WARMUP_SECONDS:
                warm_rss = rss_samples[-1][1]
            time.sleep(1.0)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=120)
    final_rss = rss_kib(pid)
    assert live_server.process.poll() is None, live_server.log_tail()

    report = (
        f"{tally.summary()}\nstatuses: {dict(tally.statuses)}\n"
        f"rss KiB: warm {warm_rss}, final {final_rss}, peak {max(r for _, r in rss_samples)}"
    )
    print(report)
    assert not tally.server_errors, "\n".join(tally.server_errors) + "\n" + report
    assert not tally.transport_errors, "\n".join(tally.transport_errors) + "\n" + report
    # /metrics is a 404 only while app.observability is not installed by create_app
    unexpected = {
        k: v for k, v in tally.statuses.items() if k[1] >= 400 and k != ("GET /metrics", 404)
    }
    assert not unexpected, report
    assert sum(acknowledged.values()) > 0 and len(tally.latencies.get("rollup_job", [])) >= 1

    # every acknowledged sample is there
    with httpx.Client(base_url=live_server.base_url, timeout=60) as client:
        for host, count in acknowledged.items():
            params: dict[str, str | float] = {
                "metric_name": "soak_cpu",
                "label": f"host:{host}",
                "start_time": soak_start_ms / 1000 - 1,
                "end_time": time.time() + 1,
                "limit": 1_000_000,
            }
            answer = client.get("/query/raw", params=params)
            assert answer.status_code == 200, answer.text
            [series] = answer.json()["series"]
            assert len(series["points"]) == count, host

    assert warm_rss is not None, report
    assert final_rss <= RSS_GROWTH_LIMIT * warm_rss, report
