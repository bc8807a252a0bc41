"""Pure rollup arithmetic: resolutions, epoch-aligned buckets, which buckets are closed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Resolution:
    name: str  # "1m", "5m", "1h": also the query `window` value
    ms: int


RESOLUTIONS = (Resolution("1m", 60_000), Resolution("5m", 300_000), Resolution("1h", 3_600_000))
BY_NAME = {res.name: res for res in RESOLUTIONS}


def bucket_start(ts_ms: int, res: Resolution) -> int:
    """The start of the epoch-aligned bucket holding ts (floor, also for times before 1970)."""
    return ts_ms - ts_ms % res.ms


def closed_before(now_ms: int, grace_ms: int, res: Resolution) -> int:
    """Buckets starting before this are closed: their end plus the grace lies in the past."""
    return bucket_start(now_ms - grace_ms, res)


def window_bounds(start_ms: int, end_ms: int, res: Resolution) -> tuple[int, int]:
    """The first and last bucket starts a rollup query over [start, end] answers with."""
    return bucket_start(start_ms, res), bucket_start(end_ms, res)
