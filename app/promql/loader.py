"""Loading what a query needs from the store: for each selector the matching series and their
samples over the range the plan found, stale markers included, within a sample budget."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from app.matchers import Matcher
from app.promql.errors import TooManySamples
from app.promql.plan import Ranges
from app.promql.selectors import SeriesSet
from app.promql.values import labels_of
from app.storage.series_index import IndexedSeries, TimeBounds


class SampleSource(Protocol):
    """The store methods the query engine reads through (app.storage.store.Store)."""

    async def find_series_by_matchers(
        self, matchers: tuple[Matcher, ...], bounds: TimeBounds | None = None
    ) -> list[IndexedSeries]: ...

    async def read_samples(
        self, ids: list[int], start_ms: int, end_ms: int, limit: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


async def load(
    store: SampleSource, ranges: Ranges, max_samples: int
) -> dict[tuple[Matcher, ...], SeriesSet]:
    data: dict[tuple[Matcher, ...], SeriesSet] = {}
    budget = max_samples
    for matchers, (lo, hi) in ranges.items():
        found = await store.find_series_by_matchers(matchers)
        if not found or hi < lo:
            data[matchers] = SeriesSet.empty()
            continue
        ids = np.array([s.id for s in found], dtype=np.int64)
        sids, ts, values = await store.read_samples(ids.tolist(), lo, hi, budget + 1)
        if ts.size > budget:
            raise TooManySamples(max_samples)
        budget -= ts.size
        data[matchers] = series_set(found, ids, sids, ts, values)
    return data


def series_set(
    found: list[IndexedSeries],
    ids: np.ndarray,
    sids: np.ndarray,
    ts: np.ndarray,
    values: np.ndarray,
) -> SeriesSet:
    """The series that have samples, rows in id order (the order samples arrive in)."""
    rows = np.searchsorted(ids, sids)
    counts = np.bincount(rows, minlength=ids.size)
    kept = np.flatnonzero(counts)
    renumber = np.full(ids.size, -1, dtype=np.int64)
    renumber[kept] = np.arange(kept.size)
    labels = [labels_of(found[i].all_labels) for i in kept.tolist()]
    return SeriesSet.from_rows(labels, renumber[rows], ts, values)
