"""PromQL windows served from rollups give the raw samples' answers, on both backends: with
samples on every bucket edge and off them, with stale markers, and falling back to raw where
rollups cannot be exact (a NaN, a minimum on a window's left edge)."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import numpy as np
import pytest
from conftest import run_inline, test_settings

from app.matchers import canonical_labels, fingerprint
from app.model import SampleBatch, SeriesKey
from app.promql import rollups
from app.promql.query import QueryOptions, prepare, range_query
from app.storage.store import Store

H = 3_600_000
T0 = 1_764_763_200_000  # a whole hour
STALE = np.uint64(0x7FF0000000000002).view(np.float64)


def key(metric: str, **labels: str) -> SeriesKey:
    text = canonical_labels(labels)
    return SeriesKey(metric, text, fingerprint(text))


def write(database_url: str, series: dict[SeriesKey, tuple[np.ndarray, np.ndarray]]) -> None:
    keys = list(series)
    index = np.concatenate([np.full(series[k][0].size, i) for i, k in enumerate(keys)])
    ts = np.concatenate([series[k][0] for k in keys])
    values = np.concatenate([series[k][1] for k in keys])

    async def go() -> None:
        store = Store.open(test_settings(database_url))
        try:
            await store.append(SampleBatch(keys, index.astype(np.int64), ts, values))
        finally:
            await store.close()

    asyncio.run(go())


def answers(database_url: str, expr: str, start: int, end: int, step: int) -> tuple[Any, ...]:
    """(with rollups, raw only, whether rollups served every candidate)."""

    async def go() -> tuple[Any, ...]:
        store = Store.open(test_settings(database_url))
        try:
            fast = await range_query(store, expr, start, end, step, QueryOptions(10**8, 60))
            raw_options = QueryOptions(10**8, 60, use_rollups=False)
            slow = await range_query(store, expr, start, end, step, raw_options)
            times = np.arange(start, end + 1, step, dtype=np.int64)
            node = prepare(expr, start, end)
            served = [await rollups.serve(store, c) for c in rollups.candidates(node, times)]
            return fast.result, slow.result, bool(served) and all(v is not None for v in served)
        finally:
            await store.close()

    return asyncio.run(go())


def same(a: Any, b: Any) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(sorted(a, key=str), sorted(b, key=str), strict=True):
        if x["metric"] != y["metric"] or [t for t, _ in x["values"]] != [t for t, _ in y["values"]]:
            return False
        for (_, u), (_, v) in zip(x["values"], y["values"], strict=True):
            fu, fv = float(u), float(v)
            if not (math.isclose(fu, fv, rel_tol=1e-12, abs_tol=1e-9) or (fu != fu and fv != fv)):
                return False
    return True


SERVED = [
    ("avg_over_time(g[5m])", 5 * 60_000),
    ("sum(sum_over_time(g[5m]))", 5 * 60_000),
    ("count_over_time(g[1h])", H),
    ('avg_over_time(g{host="a"}[10m])', 5 * 60_000),
    ("max_over_time(g[1h] offset 1h)", H),
    ("avg(avg_over_time(g[5m])) + 1", 5 * 60_000),
]


@pytest.fixture(scope="module")
def data(shared_url: str) -> str:
    """One database per backend for the module: written once, read by every case."""
    database_url = shared_url
    rng = np.random.default_rng(7)
    on_edges = np.arange(T0, T0 + 4 * H, 10_000)  # every 10 s: a sample on every bucket edge
    off_edges = np.arange(T0 + 3_333, T0 + 4 * H, 7_000)
    write(
        database_url,
        {
            key("g", host="a"): (on_edges, np.round(rng.normal(50, 5, on_edges.size), 3)),
            key("g", host="b"): (off_edges, np.round(rng.normal(10, 1, off_edges.size), 3)),
        },
    )
    run_inline(database_url, "rollup", now=(T0 + 5 * H) // 1000 * 1000)
    return database_url


@pytest.mark.parametrize(("expr", "step"), SERVED)
def test_served_from_rollups_equals_raw(data: str, expr: str, step: int) -> None:
    fast, slow, served = answers(data, expr, T0 + 2 * H, T0 + 4 * H, step)
    assert served, "the rollup path should have answered this query"
    assert slow and same(fast, slow), (fast[:1], slow[:1])


def test_not_aligned_is_read_raw(data: str) -> None:
    fast, slow, served = answers(
        data, "avg_over_time(g[5m])", T0 + 2 * H + 1000, T0 + 3 * H, 5 * 60_000
    )
    assert not served and same(fast, slow)


def test_a_nan_falls_back_to_raw(database_url: str) -> None:
    ts = np.arange(T0, T0 + 2 * H, 15_000)
    values = np.arange(ts.size, dtype=np.float64)
    values[300] = math.nan  # 75 min in: inside the windows
    values[320] = STALE  # stale markers alone would not stop the rollup path
    write(database_url, {key("g", host="n"): (ts, values)})
    fast, slow, served = answers(
        database_url, "sum_over_time(g[5m])", T0 + H, T0 + 2 * H, 5 * 60_000
    )
    assert not served and same(fast, slow)
    assert any(v == "NaN" for _, v in fast[0]["values"])


def test_stale_markers_are_left_out_by_both(database_url: str) -> None:
    ts = np.arange(T0, T0 + 2 * H, 15_000)
    values = np.arange(ts.size, dtype=np.float64)
    values[60] = STALE  # on an edge: 60 * 15 s = 15 min
    values[61] = STALE
    write(database_url, {key("g", host="s"): (ts, values)})
    fast, slow, served = answers(
        database_url, "count_over_time(g[5m])", T0 + H // 4, T0 + H, 5 * 60_000
    )
    assert served and same(fast, slow)


def test_a_minimum_on_the_left_edge_falls_back(database_url: str) -> None:
    ts = np.arange(T0, T0 + 2 * H, 60_000)  # one sample a minute: on every 5m edge
    values = 100.0 - (ts % (5 * 60_000)) / 60_000  # the bucket's first sample is its largest
    write(database_url, {key("g", host="m"): (ts, values)})
    fast, slow, served = answers(
        database_url, "max_over_time(g[5m])", T0 + H, T0 + 2 * H, 5 * 60_000
    )
    assert not served and same(fast, slow)
    fast, slow, served = answers(
        database_url, "min_over_time(g[5m])", T0 + H, T0 + 2 * H, 5 * 60_000
    )
    assert served and same(fast, slow)
