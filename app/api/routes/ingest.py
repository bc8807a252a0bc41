"""Writes: one sample (group-committed) and bulk import (one all-or-nothing transaction)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request

from app import observability
from app.api.body import read_json
from app.api.deps import CommitterDep, SettingsDep, StoreDep, WriteKey
from app.schemas import BackfillResponse, ErrorResponse, IngestResponse
from app.timeutil import now_ms
from app.validation import TimeBounds, parse_import, parse_single

router = APIRouter(tags=["ingestion"], dependencies=[WriteKey])

ERRORS = {
    400: {"model": ErrorResponse, "description": "Body is not JSON"},
    401: {"model": ErrorResponse, "description": "API key missing or wrong"},
    413: {"model": ErrorResponse, "description": "Body or batch too large"},
    422: {"model": ErrorResponse, "description": "A rule broken; names the field or item"},
    429: {"model": ErrorResponse, "description": "Cardinality limit reached"},
    503: {"model": ErrorResponse, "description": "Database unavailable"},
}


def _bounds(skew: timedelta) -> TimeBounds:
    now = now_ms()
    return TimeBounds(now_ms=now, max_ms=now + round(skew.total_seconds() * 1000))


def _body_doc(model: str) -> dict[str, object]:
    schema = {"$ref": f"#/components/schemas/{model}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


@router.post(
    "/metrics/ingest",
    status_code=201,
    response_model=IngestResponse,
    responses=ERRORS,  # type: ignore[arg-type]
    openapi_extra=_body_doc("IngestSample"),
    summary="Ingest one sample",
)
async def ingest(
    request: Request, settings: SettingsDep, committer: CommitterDep
) -> dict[str, object]:
    """Answers 201 once the sample is committed. The same series and timestamp written twice
    keeps the last value."""
    body = await read_json(request, settings.max_body_bytes)
    batch = parse_single(body, _bounds(settings.max_future_skew))
    await committer.submit(batch)
    observability.count_ingested(request, len(batch))
    return {"status": "ok"}


@router.post(
    "/backfill/import",
    status_code=201,
    response_model=BackfillResponse,
    responses=ERRORS,  # type: ignore[arg-type]
    openapi_extra=_body_doc("BackfillRequest"),
    summary="Import many samples at once",
)
async def backfill(request: Request, settings: SettingsDep, store: StoreDep) -> dict[str, object]:
    """All-or-nothing: one invalid item rejects the request with a 422 naming its index. At most
    MAX_BATCH samples (413 beyond). Accepts `metrics` (one object per sample) and/or the columnar
    `series` form."""
    body = await read_json(request, settings.max_body_bytes)
    batch = parse_import(body, _bounds(settings.max_future_skew), settings.max_batch)
    result = await store.append(batch, all_or_nothing=True)
    observability.count_ingested(request, result.written)
    return {"status": "ok", "imported": result.written, "series": len(batch.keys)}
