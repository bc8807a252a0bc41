"""Migration 0007 converts a database the previous release wrote (schema 0006, raw samples as
rows) to the block layout, and its downgrade converts it back (docs/storage.md#converting-a-
database): both run as `python -m app.migrate` processes, and every sample reads back bit for
bit, through the HTTP API (values, and what JSON cannot carry as `special`) and through
`Store.select_raw` (every NaN payload), on both backends."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import fresh_database, run_migrate, sql_rows, test_settings
from fastapi.testclient import TestClient

from app.main import create_app
from app.model import SampleBatch
from app.storage.samples.block_table import SPAN_MS
from app.storage.samples.compaction import closed_span_end
from app.storage.store import Store
from app.timeutil import format_ms
from app.validation import series_key

HOUR = 3_600_000
STALE = 0x7FF0000000000002
PATTERNS = [
    STALE,
    0x7FF8000000000001,  # an ordinary NaN
    0x7FF8DEADBEEF0001,  # a NaN with another payload
    0xFFF8000000000000,  # a negative quiet NaN
    0x7FF0000000000000,  # +Inf
    0xFFF0000000000000,  # -Inf
    0x8000000000000000,  # -0.0
    0x0000000000000001,  # the smallest subnormal
]
Expected = dict[tuple[str, str], dict[int, int]]  # (metric, host) -> ts -> bits


def bits_of(value: float) -> int:
    return int(np.array([value], dtype=np.float64).view(np.uint64)[0])


def from_bits(bits: int) -> float:
    return float(np.array([bits], dtype=np.uint64).view(np.float64)[0])


@pytest.fixture(params=["sqlite", "postgresql"])
def previous_release(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database at the previous release's schema (0006)."""
    with fresh_database(str(request.param), tmp_path, "conversion", revision="0006") as url:
        yield url


def write(url: str, metric: str, rows: list[tuple[str, int, float]]) -> None:
    """(host, ts, value) rows as one batch through the row layout's write path, as the previous
    release wrote them."""
    hosts = sorted({h for h, _, _ in rows})
    batch = SampleBatch(
        keys=[series_key(metric, f'{{"host":"{h}"}}'.encode()) for h in hosts],
        series_index=np.array([hosts.index(h) for h, _, _ in rows], dtype=np.int64),
        ts=np.array([t for _, t, _ in rows], dtype=np.int64),
        values=np.array([v for _, _, v in rows], dtype=np.float64),
    )

    async def go() -> None:
        store = Store.open(test_settings(url, storage_layout="rows"))
        try:
            await store.append(batch)
        finally:
            await store.close()

    asyncio.run(go())


def compact_before(url: str, closed_before: int) -> None:
    """What the opt-in block layout of the previous release did: fold closed spans into blocks."""

    async def go() -> None:
        store = Store.open(test_settings(url, storage_layout="blocks"))
        try:
            await store.compact(closed_before)
        finally:
            await store.close()

    asyncio.run(go())


def fill(url: str, now: int) -> Expected:
    """Several series over two days of closed spans at 10 s, the open span, late rows into
    closed spans, overwrites, NaN payloads, stale markers, infinities; what they should read.
    The first day's spans were compacted by the previous release's opt-in block layout before
    the late rows came, so some of those land over blocks."""
    rng = np.random.default_rng(13)
    start = closed_span_end(now) - 2 * 24 * HOUR - 7 * 60_000
    expected: Expected = {}
    for metric, hosts in (("conv_cpu", ["a", "b", "c"]), ("conv_mem", ["a"])):
        rows = []
        for host in hosts:
            stamps = range(start, now, 10_000)
            values = np.round(50 + 20 * rng.standard_normal(len(stamps)), 3)
            for i, (ts, value) in enumerate(zip(stamps, values.tolist(), strict=True)):
                if i % 97 == 0:
                    value = from_bits(PATTERNS[(i // 97) % len(PATTERNS)])
                rows.append((host, ts, value))
        # in time order, a day at a time, as a live writer would
        rows.sort(key=lambda r: r[1])
        for first in range(0, len(rows), 20_000):
            write(url, metric, rows[first : first + 20_000])
        for host, ts, value in rows:
            expected.setdefault((metric, host), {})[ts] = bits_of(value)
    compact_before(url, start + 24 * HOUR)
    # late rows between existing ones, and overwrites (a number over a NaN, a NaN over a number)
    late = [("a", start + 5_003, 1.25), ("b", start + 3 * HOUR + 1, from_bits(STALE))]
    late += [("a", start, 7.5), ("c", start + 970_000, from_bits(0x7FF8000000000042))]
    late += [("a", now - now % SPAN_MS + 1, -0.0)]  # in the open span
    write(url, "conv_cpu", late)
    for host, ts, value in late:
        expected[("conv_cpu", host)][ts] = bits_of(value)
    return expected


def migrate(url: str, *args: str, layout: str = "blocks") -> str:
    return run_migrate(url, *args, STORAGE_LAYOUT=layout).stdout


def stored_bits(url: str, layout: str, metric: str) -> dict[str, dict[int, int]]:
    async def go() -> dict[str, dict[int, int]]:
        store = Store.open(test_settings(url, storage_layout=layout))
        try:
            series, truncated = await store.select_raw(metric, [], 0, 2**53, 10_000_000)
        finally:
            await store.close()
        assert not truncated
        return {
            s.labels["host"]: dict(
                zip(s.ts.tolist(), s.values.view(np.uint64).tolist(), strict=True)
            )
            for s in series
        }

    return asyncio.run(go())


def shown(bits: int) -> dict[str, Any]:
    """A raw answer's point value for these bits."""
    value = from_bits(bits)
    if math.isnan(value):
        return {"value": None, "special": "stale" if bits == STALE else "NaN"}
    if math.isinf(value):
        return {"value": None, "special": "+Inf" if value > 0 else "-Inf"}
    return {"value": value}


def check_everything(url: str, layout: str, expected: Expected) -> None:
    for metric in ("conv_cpu", "conv_mem"):
        hosts = {host: got for (m, host), got in expected.items() if m == metric}
        assert stored_bits(url, layout, metric) == hosts
    lo = min(min(points) for points in expected.values())
    hi = max(max(points) for points in expected.values())
    with TestClient(create_app(test_settings(url, storage_layout=layout))) as client:
        for (metric, host), points in expected.items():
            answer = client.get(
                "/query/raw",
                params={
                    "metric_name": metric,
                    "label": f"host:{host}",
                    "start_time": format_ms(lo),
                    "end_time": format_ms(hi),
                },
            )
            assert answer.status_code == 200, answer.text
            (series,) = answer.json()["series"]
            got = [(p["timestamp"], p.get("value"), p.get("special")) for p in series["points"]]
            want = [
                (format_ms(ts), shown(b)["value"], shown(b).get("special"))
                for ts, b in sorted(points.items())
            ]
            assert got == want


def test_upgrade_folds_closed_spans_into_blocks_and_downgrade_brings_rows_back(
    previous_release: str,
) -> None:
    now = int(time.time() * 1000)
    expected = fill(previous_release, now)
    total = sum(len(points) for points in expected.values())
    (before,) = sql_rows(previous_release, "SELECT count(*) FROM samples")
    assert before[0] < total  # some in the blocks of the opt-in layout

    assert "migrations applied" in migrate(previous_release)
    # every closed span is in blocks; the head keeps the spans that have not closed
    head = sql_rows(previous_release, "SELECT min(ts), count(*) FROM samples")
    assert head[0][1] > 0 and head[0][0] >= closed_span_end(now - 30_000)
    in_blocks = sql_rows(previous_release, "SELECT count(*), sum(count) FROM blocks")
    assert in_blocks[0][0] >= 4 * 24 and in_blocks[0][1] + head[0][1] == total
    check_everything(previous_release, "blocks", expected)

    # back to the previous release's layout: every sample in rows again, no block left
    migrate(previous_release, "--downgrade", "0006")
    assert sql_rows(previous_release, "SELECT count(*) FROM blocks") == [(0,)]
    assert sql_rows(previous_release, "SELECT count(*) FROM samples") == [(total,)]
    assert stored_bits(previous_release, "rows", "conv_cpu") == {
        host: points for (m, host), points in expected.items() if m == "conv_cpu"
    }

    # with STORAGE_LAYOUT=rows the upgrade converts nothing, and the rows layout reads it all
    migrate(previous_release, layout="rows")
    assert sql_rows(previous_release, "SELECT count(*) FROM blocks") == [(0,)]
    check_everything(previous_release, "rows", expected)
