"""Job status, and per-metric retention policies that can be read and changed at run time."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Path

from app.api.deps import ReadKey, SettingsDep, StoreDep, WriteKey
from app.config import format_duration, parse_duration
from app.jobs.work import retention_defaults
from app.services.retention import KINDS, effective_policy
from app.timeutil import format_ms, to_ms
from app.validation import InvalidInput, check_metric_name

router = APIRouter(tags=["jobs and retention"])
MetricPath = Annotated[str, Path(max_length=255)]


def _fmt(policy: dict[str, int]) -> dict[str, str]:
    return {kind: format_duration_ms(ms) for kind, ms in policy.items()}


def format_duration_ms(ms: int) -> str:
    return format_duration(timedelta(milliseconds=ms))


@router.get("/jobs/status", dependencies=[ReadKey], summary="What the background jobs did")
async def jobs_status(store: StoreDep, settings: SettingsDep) -> dict[str, object]:
    """Per job: last run, its duration, buckets written, rows dropped and the last error; plus
    pending invalidations per resolution and up to when rollups are materialized."""
    runs = await store.job_runs()
    pending = await store.pending_invalidations()
    until = await store.materialized_until()
    jobs = {}
    for name in ("rollup", "retention", "alert", "compact"):
        row = runs.get(name, {})
        jobs[name] = {
            "runs": row.get("runs", 0),
            "last_run": _time(row.get("last_started_ms")),
            "last_finished": _time(row.get("last_finished_ms")),
            "duration_ms": row.get("last_duration_ms"),
            "status": row.get("last_status"),
            "buckets_written": row.get("buckets_written", 0),
            "rows_dropped": row.get("rows_dropped", 0),
            "last_error": row.get("last_error"),
            "last_error_at": _time(row.get("last_error_ms")),
        }
    return {
        "scheduler_enabled": settings.scheduler_enabled,
        "jobs": jobs,
        "pending_invalidations": pending,
        "materialized_until": {k: _time(v) for k, v in until.items()},
    }


def _time(ms: object) -> str | None:
    return format_ms(ms) if isinstance(ms, int) else None


@router.get("/retention", dependencies=[ReadKey], summary="Retention defaults and overrides")
async def retention_policies(store: StoreDep, settings: SettingsDep) -> dict[str, object]:
    defaults = retention_defaults(settings)
    overrides = await store.retention_overrides()
    return {
        "defaults": _fmt(defaults),
        "overrides": {m: _fmt(effective_policy(defaults, o)) for m, o in sorted(overrides.items())},
    }


@router.put(
    "/retention/{metric_name}",
    dependencies=[WriteKey],
    summary="Set a metric's retention override",
)
async def set_retention(
    metric_name: MetricPath,
    store: StoreDep,
    settings: SettingsDep,
    policy: Annotated[
        dict[str, str | None],
        Body(examples=[{"raw": "2d", "1m": "14d", "5m": None, "1h": "730d"}]),
    ],
) -> dict[str, object]:
    """Keys among raw, 1m, 5m, 1h; a duration such as 2d, or null for the default. Applied by the
    next retention run."""
    try:
        check_metric_name(metric_name, "")
    except InvalidInput as exc:
        raise HTTPException(422, str(exc)) from None
    values: dict[str, int | None] = {}
    for kind, text in policy.items():
        if kind not in KINDS:
            raise HTTPException(422, f"{kind}: unknown; use one of {', '.join(KINDS)}")
        if text is None:
            values[kind] = None
            continue
        try:
            ms = to_ms(parse_duration(text))
        except ValueError as exc:
            raise HTTPException(422, f"{kind}: {exc}") from None
        if ms < 3_600_000:
            raise HTTPException(422, f"{kind}: keep data for at least 1h")
        values[kind] = ms
    await store.set_retention_override(metric_name, values)
    overrides = await store.retention_overrides()
    effective = effective_policy(retention_defaults(settings), overrides.get(metric_name))
    return {"metric_name": metric_name, "policy": _fmt(effective)}


@router.delete(
    "/retention/{metric_name}", dependencies=[WriteKey], summary="Remove a retention override"
)
async def clear_retention(metric_name: MetricPath, store: StoreDep) -> dict[str, object]:
    try:
        check_metric_name(metric_name, "")
    except InvalidInput as exc:
        raise HTTPException(422, str(exc)) from None
    await store.set_retention_override(metric_name, {})
    return {"metric_name": metric_name, "status": "default"}
