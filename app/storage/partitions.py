"""The day partitions of `samples` a PostgreSQL write needs, made sure of before it starts: a
per-process cache of the days known to exist, and the raw floors the last writes saw, to guess
which samples will be stored raw (history and samples beyond retention need no partition)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sqlalchemy.ext.asyncio import AsyncEngine

from app.model import SampleBatch
from app.storage import dialect
from app.storage.writes import NeedsPartitions, WritePlan

PARTITIONS_PER_TRANSACTION = 50


class Partitions:
    def __init__(self, enabled: bool, default_floor: Callable[[], int]) -> None:
        self.enabled = enabled  # PostgreSQL only
        self._default_floor = default_floor  # the raw floor of a metric without override
        self._days: set[int] = set()
        self._raw_floors: dict[str, int] = {}  # per metric, the raw floor its last write saw

    def learn(self, plan: WritePlan) -> None:
        self._raw_floors.update({metric: floors.raw for metric, floors in plan.floors.items()})

    async def ensure(self, engine: AsyncEngine, batch: SampleBatch) -> None:
        """Create the partitions the batch's raw samples probably need. A write that finds one
        missing after all asks for it (`check`)."""
        if not self.enabled or batch.ts.size == 0:
            return
        floors = np.array([self._floor_of(key.metric) for key in batch.keys], dtype=np.int64)
        ts = batch.ts
        if int(ts.min()) < int(floors.min()):
            ts = ts[ts >= floors[batch.series_index]]
        days = self._missing(ts)
        if days:
            await self.create(engine, days)

    def _floor_of(self, metric: str) -> int:
        known = self._raw_floors.get(metric)
        return self._default_floor() if known is None else known

    def check(self, ts: np.ndarray) -> None:
        """Inside a write: raise NeedsPartitions if raw rows fall on unknown day partitions."""
        days = self._missing(ts)
        if days:
            raise NeedsPartitions(days)

    async def create(self, engine: AsyncEngine, days: list[int]) -> None:
        """Create day partitions in short transactions of their own, so a long backfill neither
        holds their locks nor piles up hundreds in one transaction."""
        for start in range(0, len(days), PARTITIONS_PER_TRANSACTION):
            chunk = days[start : start + PARTITIONS_PER_TRANSACTION]
            async with engine.begin() as conn:
                await dialect.ensure_partitions(conn, chunk)
            self._days.update(chunk)

    def forget(self) -> None:
        """After partitions were dropped: nothing is known to exist any more."""
        self._days.clear()

    def _missing(self, ts: np.ndarray) -> list[int]:
        if not self.enabled or ts.size == 0:
            return []
        first, last = int(ts.min()) // dialect.DAY_MS, int(ts.max()) // dialect.DAY_MS
        if last - first < 32 and self._days.issuperset(range(first, last + 1)):
            return []  # the usual case, without sorting the batch's days
        return sorted(set(np.unique(ts // dialect.DAY_MS).tolist()) - self._days)
