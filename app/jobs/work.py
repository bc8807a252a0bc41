"""What each job does, given a store and a time. Pure functions decide; these act."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from app.config import Settings
from app.jobs import alert_delivery, alerting
from app.services.retention import plan_retention, retention_defaults
from app.services.rollup import RESOLUTIONS, closed_before
from app.storage.store import Store
from app.timeutil import to_ms

__all__ = ["JOBS", "JobOutcome", "closed_boundaries", "retention_defaults"]


@dataclass(frozen=True)
class JobOutcome:
    buckets_written: int = 0
    rows_dropped: int = 0
    detail: str = ""


def closed_boundaries(settings: Settings, now: int) -> dict[str, int]:
    grace = to_ms(settings.rollup_grace)
    return {res.name: closed_before(now, grace, res) for res in RESOLUTIONS}


async def rollup(store: Store, settings: Settings, now: int) -> JobOutcome:
    """Recompute every invalidated bucket that has closed (grace included)."""
    closed = closed_boundaries(settings, now)
    written = {res.name: await store.materialize(res, closed[res.name]) for res in RESOLUTIONS}
    detail = ", ".join(f"{name}: {count}" for name, count in written.items())
    return JobOutcome(buckets_written=sum(written.values()), detail=detail)


async def retention(store: Store, settings: Settings, now: int) -> JobOutcome:
    """Roll up what is pending, then drop raw and rollups past their retention."""
    closed = closed_boundaries(settings, now)
    overrides = await store.retention_overrides()
    plan = plan_retention(now, retention_defaults(settings), overrides, closed["1h"])
    report = await store.apply_retention(plan, closed)
    detail = (
        f"raw rows: {report.raw_rows}, rollup rows: {report.rollup_rows},"
        f" partitions: {report.partitions}"
    )
    return JobOutcome(rows_dropped=report.raw_rows + report.rollup_rows, detail=detail)


async def compact(store: Store, settings: Settings, now: int) -> JobOutcome:
    """Fold the head rows of closed spans (grace included) into compressed blocks, and the
    closed days of the rollup tables into rollup blocks (with either layout)."""
    closed = now - to_ms(settings.rollup_grace)
    done = await store.compact(closed)
    folded = await store.fold_rollups(closed)
    rollups = f"rollup rows folded: {folded.rows}, rollup blocks written: {folded.blocks}"
    if done is None:
        return JobOutcome(detail=f"nothing to compact: STORAGE_LAYOUT=rows; {rollups}")
    detail = f"rows compacted: {done.rows}, blocks written: {done.blocks}, chunks: {done.chunks}"
    return JobOutcome(detail=f"{detail}, {rollups}")


async def alert(store: Store, settings: Settings, now: int) -> JobOutcome:
    """Evaluate every alert rule over the data since its last run, then deliver what is due."""
    tally = await alerting.evaluate_all(store, settings, now)
    delivered = await alert_delivery.deliver(store, settings, now)
    detail = (
        f"rules: {tally.rules}, series: {tally.series}, points judged: {tally.points},"
        f" transitions: {tally.transitions}, notifications sent: {delivered.sent},"
        f" failed: {delivered.failed}"
    )
    if tally.errors:
        detail += f", rule errors: {'; '.join(tally.errors)}"
    return JobOutcome(detail=detail)


JobFn = Callable[[Store, Settings, int], Awaitable[JobOutcome]]
JOBS: dict[str, JobFn] = {
    "rollup": rollup,
    "retention": retention,
    "alert": alert,
    "compact": compact,
}


def job_interval(settings: Settings, job: str) -> float:
    """Seconds between runs of `job` (its *_INTERVAL setting)."""
    intervals = {
        "rollup": settings.rollup_interval,
        "retention": settings.retention_interval,
        "alert": settings.alert_interval,
        "compact": settings.compact_interval,
    }
    return intervals[job].total_seconds()
