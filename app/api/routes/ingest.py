"""Writes: one sample (group-committed) and bulk import (one all-or-nothing transaction)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from app import observability
from app.api.body import parse_import_body, read_decoded, read_json, sample_body_limit
from app.api.deps import CommitterDep, PrecisionParam, SettingsDep, StoreDep, WriteKey
from app.api.responses import INGEST_ANSWERS, write_counts
from app.api.streaming_import import (
    DEFAULT_CHUNK_SIZE,
    MAX_LINE_BYTES,
    StreamingImportResponse,
    stream_import,
    streaming_format,
)
from app.errors import (
    BadRequest,
    PayloadTooLarge,
    Unauthorized,
    Unavailable,
    responses_for,
)
from app.http_guard import BodyTimeout, Overloaded
from app.protocols.native.items import parse_single
from app.schemas import BackfillResponse, IngestResponse
from app.storage.store import CardinalityExceeded, HistoryConflict, WriteTimeout
from app.validation import BatchTooLarge, InvalidInput, TimeBounds

router = APIRouter(tags=["ingestion"], dependencies=[WriteKey])

ERRORS = responses_for(
    BadRequest,
    Unauthorized,
    PayloadTooLarge,
    BatchTooLarge,
    InvalidInput,
    HistoryConflict,
    CardinalityExceeded,
    BodyTimeout,
    Unavailable,
    WriteTimeout,
    Overloaded,
)


def _body_doc(model: str) -> dict[str, object]:
    schema = {"$ref": f"#/components/schemas/{model}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


@router.post(
    "/metrics/ingest",
    status_code=201,
    response_model=IngestResponse,
    responses=ERRORS,
    openapi_extra=_body_doc("IngestSample"),
    summary="Ingest one sample",
)
async def ingest(
    request: Request,
    settings: SettingsDep,
    committer: CommitterDep,
    precision: PrecisionParam = "s",
) -> Response:
    """Answers 201 once the sample is committed, saying whether it was stored raw, merged into
    the rollups only (older than the raw data retention) or is beyond every retention (not
    stored). The same series and timestamp written twice keeps the last value. A numeric
    `timestamp` is in `precision` (default seconds); one that is no time in seconds but is in
    ms, us or ns gets a 422 that says which `precision` to send."""
    body = await read_json(request, *sample_body_limit(settings.max_body_bytes))
    sample = parse_single(body, TimeBounds.starting_now(settings.max_future_skew), precision)
    kind = await committer.submit(sample)
    observability.count_ingested(request, 1)
    # A ready answer: the hottest route skips serializing a dict through IngestResponse.
    return Response(INGEST_ANSWERS[kind], status_code=201, media_type="application/json")


NDJSON_EXAMPLE = (
    '{"metric_name": "cpu_usage", "value": 62.0, "timestamp": "2025-12-03T12:00:00Z", '
    '"labels": {"host": "server2"}}\n'
    '{"metric_name": "cpu_usage", "value": 64.5, "timestamp": 1764763260, '
    '"labels": {"host": "server2"}}\n'
)
CSV_EXAMPLE = (
    "metric_name,value,timestamp,host,region\n"
    "cpu_usage,62.0,2025-12-03T12:00:00Z,server2,us-west\n"
    "cpu_usage,64.5,1764763260,server2,\n"
)
STREAMING_NOTE = (
    "Streamed in bounded memory (MAX_BODY_BYTES and MAX_BATCH do not limit the total; a line over "
    f"{MAX_LINE_BYTES} bytes is a 413) and committed in chunks of `chunk_size` samples."
)


def _backfill_doc() -> dict[str, object]:
    doc = _body_doc("BackfillRequest")
    content: dict[str, object] = doc["requestBody"]["content"]  # type: ignore[index]
    content["application/x-ndjson"] = {
        "schema": {
            "type": "string",
            "description": "One sample object per line, shaped as for /metrics/ingest (also "
            "accepted as application/jsonl). " + STREAMING_NOTE,
        },
        "example": NDJSON_EXAMPLE,
    }
    content["text/csv"] = {
        "schema": {
            "type": "string",
            "description": "A header line with columns metric_name, value, optional timestamp "
            "(RFC 3339 or epoch seconds); every other column is a label, an empty cell leaves "
            "it out. " + STREAMING_NOTE,
        },
        "example": CSV_EXAMPLE,
    }
    return doc


ChunkSize = Annotated[
    int | None,
    Query(
        ge=1,
        description="NDJSON/CSV only: samples per committed transaction; default "
        f"{DEFAULT_CHUNK_SIZE:,} (or MAX_BATCH if smaller), at most MAX_BATCH.",
    ),
]


@router.post(
    "/backfill/import",
    status_code=201,
    response_model=BackfillResponse | StreamingImportResponse,
    responses=ERRORS,
    openapi_extra=_backfill_doc(),
    summary="Import many samples at once",
)
async def backfill(
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    chunk_size: ChunkSize = None,
    precision: PrecisionParam = "s",
) -> dict[str, object] | JSONResponse:
    """`application/json`: all-or-nothing, one invalid item rejects the request with a 422 naming
    its index; at most MAX_BATCH samples (413 beyond). Accepts `metrics` (one object per sample)
    and/or the columnar `series` form.

    `application/x-ndjson` (or `application/jsonl`) and `text/csv`: streamed line by line and
    committed every `chunk_size` samples, each chunk all-or-nothing. On a bad line (422), a line
    over 1 MiB (413) or a cardinality limit (429) the import stops: chunks before it stay
    committed, that chunk and everything after it are not written, and the answer reports
    `imported`, `committed_lines` and `chunks` committed. Line numbers count from 1, the CSV
    header being line 1."""
    fmt = streaming_format(request.headers.get("content-type"))
    if fmt is not None:
        size = min(DEFAULT_CHUNK_SIZE, settings.max_batch) if chunk_size is None else chunk_size
        if size > settings.max_batch:
            raise InvalidInput(f"chunk_size: {size} is more than MAX_BATCH ({settings.max_batch})")
        return await stream_import(request, store, settings.max_future_skew, fmt, size, precision)
    body = await read_decoded(request, settings.max_body_bytes)
    bounds = TimeBounds.starting_now(settings.max_future_skew)
    batch = await parse_import_body(body, bounds, settings.max_batch, precision)
    del body  # the batch holds what is needed; the write may take a while
    result = await store.append(batch, all_or_nothing=True)
    observability.count_ingested(request, result.written)
    return {
        "status": "ok",
        "imported": result.written,
        "series": len(batch.keys),
        **write_counts(result),
    }
