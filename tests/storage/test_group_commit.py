"""Group commit: concurrent single-sample requests share transactions, and every acknowledged
sample is stored; one rejected request does not take the others down."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from conftest import LiveServer, test_settings

from app.model import Sample, SeriesKey
from app.services.retention import BEYOND, HISTORY, RAW
from app.storage.group_commit import GroupCommitter, merge
from app.storage.store import HistoryConflict, Store


def key(metric: str, labels: bytes) -> SeriesKey:
    return SeriesKey(metric, labels, labels.hex())


def test_merge_shares_series_keys_across_requests() -> None:
    a, b = key("cpu", b'{"h":"a"}'), key("cpu", b'{"h":"b"}')
    merged, slots = merge([Sample(a, 1, 1.0), Sample(b, 2, 2.0), Sample(a, 3, 3.0)])
    assert merged.keys == [a, b]
    assert merged.series_index.tolist() == [0, 1, 0] == slots
    assert merged.ts.tolist() == [1, 2, 3]
    assert merged.values.tolist() == [1.0, 2.0, 3.0]


def gauge(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exposed")


def test_concurrent_requests_share_commits_and_all_are_stored(
    database_url: str,
) -> None:
    server = LiveServer(database_url, env={"MAX_SERIES_PER_METRIC": "20"})
    server.start()
    now = time.time() - 60
    try:
        with httpx.Client(base_url=server.base_url, timeout=30) as client:

            def send(i: int) -> int:
                body = {
                    "metric_name": "cpu",
                    "value": float(i),
                    "timestamp": now + i / 1000,
                    "labels": {"host": f"h{i % 25}"},  # 25 hosts: 5 exceed the limit
                }
                return client.post("/metrics/ingest", json=body).status_code

            with ThreadPoolExecutor(max_workers=16) as pool:
                statuses = list(pool.map(send, range(400)))
            stored = client.get(
                "/query/raw", params={"metric_name": "cpu", "start_time": now - 1, "limit": 1000}
            ).json()
            exposition = client.get("/metrics").text
    finally:
        server.stop()
    accepted = [i for i, status in enumerate(statuses) if status == 201]
    # Whichever 20 hosts came first got a series; every request for them is acknowledged, every
    # request for the other five is refused, whatever group it travelled in.
    hosts = {i % 25 for i in accepted}
    assert len(hosts) == 20
    assert all(statuses[i] == (201 if i % 25 in hosts else 429) for i in range(400))
    values = sorted(p["value"] for s in stored["series"] for p in s["points"])
    assert values == sorted(float(i) for i in accepted)
    commits = gauge(exposition, "metrics_ingest_group_commits")
    carried = gauge(exposition, "metrics_ingest_group_requests")
    assert carried == 400
    assert commits < carried  # requests were grouped


def test_each_request_of_a_group_hears_what_became_of_its_sample(database_url: str) -> None:
    """One group holding a recent sample, history into empty buckets, a sample beyond every
    retention and history into a bucket that holds data: each gets its own answer, and the
    refused one does not take the others down."""
    hour = 3_600_000
    now = int(time.time() * 1000)
    start = now - now % hour - 5 * hour
    metric = key("grouped", b'{"h":"a"}')

    async def go() -> list[object]:
        store = Store.open(test_settings(database_url))
        committer = GroupCommitter(store)
        committer.start()
        try:
            policy = {"raw": 2 * hour, "1m": 4 * hour, "5m": 4 * hour, "1h": 4 * hour}
            await store.set_retention_override("grouped", policy)
            await committer.submit(Sample(metric, start + 2 * hour, 1.0))  # history, first
            samples = [
                Sample(metric, now - 60_000, 2.0),  # raw
                Sample(metric, start + hour + 1_800_000, 3.0),  # history into empty buckets
                Sample(metric, start, 4.0),  # older than every retention
                Sample(metric, start + 2 * hour + 1000, 5.0),  # its buckets hold data
            ]
            return await asyncio.gather(
                *(committer.submit(s) for s in samples), return_exceptions=True
            )
        finally:
            await committer.stop()
            await store.close()

    answers = asyncio.run(go())
    assert answers[:3] == [RAW, HISTORY, BEYOND]
    assert isinstance(answers[3], HistoryConflict) and answers[3].resolution == "1m"
