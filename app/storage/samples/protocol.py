"""The sample store: the contract every layout of raw samples keeps (docs/storage.md#the-sample-
store-seam).

It owns all raw-sample I/O, in the spirit of Prometheus' `Appender` and `Querier`: a write of a
batch (one transaction, with the invalidation marks and the horizon rules of
docs/rollups-and-retention.md#writes-older-than-raw-retention), reads of series ranges into
numpy arrays, bucket aggregates of a selection, and drops before retention cut-offs. The series
registry, the limits, the catalogue, rollup state, overrides and job records stay in `Store`,
which calls it.

Reads take the caller's connection: a query reads the series, the rollup tables and the samples
in one snapshot. A write takes none: its transaction, and which road it travels (chosen once when
the store opens), are the implementation's business.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncConnection

from app.model import SampleBatch
from app.services.retention import RetentionPlan
from app.services.rollup import Buckets, Resolution
from app.storage.writes import AppendResult, CardinalityExceeded

# (series_id int64, ts int64 ms, value float64), ordered by series, then time.
Points = tuple[np.ndarray, np.ndarray, np.ndarray]


def no_points() -> Points:
    empty = np.empty(0, dtype=np.int64)
    return empty, empty, np.empty(0, dtype=np.float64)


@dataclass(frozen=True)
class BucketRange:
    """Every bucket of these series with samples in [start_ms, end_ms): the live tail of a
    rollup answer. `start_ms` is expected on a bucket boundary."""

    ids: Sequence[int]
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class MarkedBuckets:
    """The (series, bucket) pairs held in a marks table (`rollup_dirty_<res>`, or `claimed`, the
    pairs the rollup job took from it), optionally only those of `ids`, starting in [lo, hi]
    and before `before`."""

    table: str
    ids: Sequence[int] | None = None
    lo: int | None = None
    hi: int | None = None
    before: int | None = None


BucketSelection = BucketRange | MarkedBuckets


@dataclass(frozen=True)
class RawDrop:
    """What a drop of raw samples did: rows deleted and PostgreSQL day partitions dropped."""

    rows: int = 0
    partitions: int = 0


class SeriesResolver(Protocol):
    """The registry's part of a write, run inside its transaction: fill in `ids` of the `missing`
    series keys (found or created within the limits; -1 for rejected ones, which are returned
    by key index)."""

    async def __call__(
        self, conn: AsyncConnection, ids: np.ndarray, missing: list[int]
    ) -> dict[int, CardinalityExceeded]: ...


class SampleStore(Protocol):
    """Raw-sample I/O. Every implementation passes tests/storage/test_sample_store_contract.py on
    both backends."""

    async def append(
        self, batch: SampleBatch, ids: np.ndarray, missing: list[int], resolve: SeriesResolver
    ) -> AppendResult:
        """Write a batch in one transaction: read its metrics' floors, resolve the `missing`
        series (`ids` holds the known ones, -1 for the others; filled in), store what is at or
        after its raw floor (last write wins) with its invalidation marks, place history, leave
        out what is beyond retention. Raises CardinalityExceeded or HistoryConflict with
        nothing written. Counts in `AppendResult.overwritten` the raw samples that replaced a
        stored one of other float64 bits (the same bits again: none), at no cost to a write
        that replaces nothing. Called one at a time per process (the store's write lock)."""
        ...

    async def read(
        self, conn: AsyncConnection, ids: Sequence[int], start_ms: int, end_ms: int, limit: int
    ) -> Points:
        """Samples of these series in [start, end], at most `limit` (the lowest series ids
        first), every float64 bit pattern as written."""
        ...

    async def read_at(
        self, conn: AsyncConnection, ids: Sequence[int], stamps: Sequence[int]
    ) -> Points:
        """Samples of these series at exactly these timestamps."""
        ...

    async def has_nan(
        self, conn: AsyncConnection, ids: Sequence[int], start_ms: int, end_ms: int
    ) -> bool:
        """Whether a NaN other than the stale marker lies in [start, end] for these series."""
        ...

    async def aggregate(
        self, conn: AsyncConnection, selection: BucketSelection, res: Resolution
    ) -> Buckets:
        """Bucket aggregates of the selection's samples, NaN left out, sums' terms bounded
        (app.storage.exact_values): ordered by series and bucket; a bucket without a counted
        sample has none."""
        ...

    async def store_aggregates(
        self,
        conn: AsyncConnection,
        selection: MarkedBuckets,
        res: Resolution,
        selected: int | None = None,
    ) -> int:
        """The rollup job's step: replace the stored rows of `res` of the selected buckets by
        their aggregates, and delete those whose samples are all NaN now (a selected bucket
        without any sample keeps its row: merged history). Returns the rows written. With
        `selected`, the number of pairs selected, the delete is skipped when as many rows were
        written (the usual run)."""
        ...

    def has_samples_in(
        self, series_id: ColumnElement[int], start_ms: int, end_ms: int
    ) -> ColumnElement[bool]:
        """An SQL condition on a series id column: the series has a sample in [start, end]
        (the time bounds of the Prometheus series and label APIs)."""
        ...

    async def hours_with_samples(
        self, conn: AsyncConnection, sids: np.ndarray, hours: np.ndarray
    ) -> np.ndarray:
        """Per (series, hour start) pair, whether samples of the series lie in that hour."""
        ...

    async def drop_before(
        self, conn: AsyncConnection, plan: RetentionPlan, series: Sequence[int] | None = None
    ) -> RawDrop:
        """Delete raw samples before the plan's cut-offs (every metric's own) and move the raw
        horizons to them; in the caller's transaction, which holds the retention lock alone.

        With `series` (the retention job's short transactions, a chunk of series at a time):
        only samples of these series, only what goes series by series, and no horizon moves.
        What goes whole for every series at once (PostgreSQL's day partitions) and the horizons
        are left to the call without `series` that the job makes after its last chunk; the
        caller has recomputed the chunk's marks before their cut-offs in the same transaction."""
        ...

    async def writer_read_only(self) -> bool | None:
        """A round trip on the connection writes use, if the store keeps one of its own: True
        if the server accepts no writes. None when it keeps none."""
        ...

    async def close(self) -> None: ...
