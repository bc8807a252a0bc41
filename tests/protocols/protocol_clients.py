"""What the protocol tests send and read back: request bodies as the agents encode them, and the
stored samples, bit for bit, through the store's own read method."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import cramjam
import httpx
from conftest import test_settings
from fastapi.testclient import TestClient

from app.protocols.remote_write.proto import WriteRequest
from app.storage.store import Store, UnknownMetric

STALE_NAN_BITS = 0x7FF0000000000002
PLAIN_NAN_BITS = 0x7FF8000000000001
# Recent, whole minutes: inside raw retention and today's PostgreSQL partitions.
BASE_MS = (int(time.time()) // 60 - 30) * 60_000


def from_bits(bits: int) -> float:
    value: float = struct.unpack("<d", struct.pack("<Q", bits))[0]
    return value


def bits(value: float) -> int:
    found: int = struct.unpack("<Q", struct.pack("<d", value))[0]
    return found


Series = tuple[Mapping[str, str] | Sequence[tuple[str, str]], Sequence[tuple[int, float]]]


def write_request(
    series: Iterable[Series],
    metadata: Iterable[tuple[str, int, str, str]] = (),
    exemplars: int = 0,
    histograms: int = 0,
) -> bytes:
    """A WriteRequest protobuf: series as (labels, [(ts_ms, value)]), labels in the order given
    (a list of pairs may repeat a name); metadata as (family, type, help, unit)."""
    request = WriteRequest()
    for labels, samples in series:
        entry = request.timeseries.add()
        pairs = labels.items() if isinstance(labels, Mapping) else labels
        for name, value in pairs:
            entry.labels.add(name=name, value=value)
        for ts, value in samples:
            entry.samples.add(timestamp=ts, value=value)
        for _ in range(exemplars):
            entry.exemplars.append(b"\x12\x09\x09" + struct.pack("<d", 1.0))
        for _ in range(histograms):
            entry.histograms.append(b"\x08\x01")
    for family, kind, help_text, unit in metadata:
        request.metadata.add(type=kind, metric_family_name=family, help=help_text, unit=unit)
    encoded: bytes = request.SerializeToString()
    return encoded


def snappy(data: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(data))


REMOTE_WRITE_HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


def remote_write(
    client: TestClient | httpx.Client,
    series: Iterable[Series],
    path: str = "/api/v1/write",
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> httpx.Response:
    body = snappy(write_request(series, **extra))
    return client.post(path, content=body, headers={**REMOTE_WRITE_HEADERS, **(headers or {})})


def stored(
    database_url: str, metric: str, start_ms: int = 0, end_ms: int = 2**53
) -> dict[tuple[tuple[str, str], ...], list[tuple[int, int]]]:
    """Every stored sample of a metric, by label set: [(ts_ms, value bits)], read through
    Store.select_raw (the HTTP answer cannot carry NaN payloads)."""

    async def read() -> dict[tuple[tuple[str, str], ...], list[tuple[int, int]]]:
        store = Store.open(test_settings(database_url))
        try:
            series, _ = await store.select_raw(metric, [], start_ms, end_ms, 10_000_000)
        except UnknownMetric:
            return {}
        finally:
            await store.close()
        return {
            tuple(sorted(s.labels.items())): list(
                zip(s.ts.tolist(), s.values.view("<u8").tolist(), strict=True)
            )
            for s in series
            if s.ts.size
        }

    return asyncio.run(read())


def values_of(database_url: str, metric: str) -> dict[tuple[tuple[str, str], ...], list[Any]]:
    """Stored (ts_ms, value) by label set, values as floats (NaN compares unequal: use bits)."""
    return {
        labels: [(ts, from_bits(b)) for ts, b in points]
        for labels, points in stored(database_url, metric).items()
    }


def scrape(
    client: TestClient | httpx.Client,
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The service's own /metrics, as {(sample name, labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    answer = client.get("/metrics")
    assert answer.status_code == 200
    found = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def counter(client: TestClient | httpx.Client, name: str, **labels: str) -> float:
    return scrape(client).get((name, frozenset(labels.items())), 0.0)
