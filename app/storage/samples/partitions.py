"""The day partitions of `samples` (PostgreSQL): their DDL, and those a write needs, made sure of
before it starts: a per-process cache of the days known to exist, and the raw floors the last
writes saw, to guess which samples will be stored raw (history and samples beyond retention need
no partition)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.model import SampleBatch
from app.storage.writes import NeedsPartitions, WritePlan

PARTITIONS_PER_TRANSACTION = 50
DAY_MS = 86_400_000
PARTITION_LOCK_KEY = 7_263_002


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
                await ensure_partitions(conn, chunk)
            self._days.update(chunk)

    def forget(self) -> None:
        """After partitions were dropped: nothing is known to exist any more."""
        self._days.clear()

    def _missing(self, ts: np.ndarray) -> list[int]:
        if not self.enabled or ts.size == 0:
            return []
        first, last = int(ts.min()) // DAY_MS, int(ts.max()) // DAY_MS
        if last - first < 32 and self._days.issuperset(range(first, last + 1)):
            return []  # the usual case, without sorting the batch's days
        return sorted(set(np.unique(ts // DAY_MS).tolist()) - self._days)


def partition_name(day: int) -> str:
    return f"samples_d{day}" if day >= 0 else f"samples_dm{-day}"


async def ensure_partitions(conn: AsyncConnection, days: Iterable[int]) -> None:
    """Create the day partitions of `samples` that these days need (PostgreSQL only)."""
    wanted = sorted(set(days))
    if not wanted:
        return
    await conn.execute(text(f"SELECT pg_advisory_xact_lock({PARTITION_LOCK_KEY})"))
    for day in wanted:
        await conn.execute(
            text(
                f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF samples"
                f" FOR VALUES FROM ({day * DAY_MS}) TO ({(day + 1) * DAY_MS})"
            )
        )


async def existing_partition_days(conn: AsyncConnection) -> list[int]:
    result = await conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'samples'"
        )
    )
    days = []
    for (name,) in result:
        suffix = name.removeprefix("samples_d")
        days.append(-int(suffix[1:]) if suffix.startswith("m") else int(suffix))
    return sorted(days)


async def drop_partition(conn: AsyncConnection, day: int) -> int:
    """Drop one whole day of raw samples; returns how many rows went with it."""
    name = partition_name(day)
    count = (await conn.execute(text(f"SELECT count(*) FROM {name}"))).scalar_one()
    await conn.execute(text(f"DROP TABLE {name}"))
    return int(count)
