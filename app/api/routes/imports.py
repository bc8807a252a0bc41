"""VictoriaMetrics' import endpoints: JSON lines at `POST /api/v1/import` (what `vmctl` writes)
and the Prometheus text format at `POST`/`PUT /api/v1/import/prometheus`, both also under
`/prometheus`, gzip allowed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.api.body import read_decoded
from app.api.deps import SettingsDep, StoreDep, WriteKey
from app.api.extra_labels import ExtraLabels
from app.errors import (
    line_write_responses,
)
from app.protocols.builder import SeriesBuilder
from app.protocols.ingest import accepting_writes, store_request
from app.protocols.promtext import parse as promtext
from app.protocols.report import WriteReport
from app.protocols.vmimport import parse as vmimport
from app.timeutil import TimeParseError, parse_time_ms
from app.validation import InvalidInput, TimeBounds

router = APIRouter(tags=["outside protocols"], dependencies=[WriteKey])
RESPONSES = line_write_responses(
    "Bad lines refused while the good ones were stored; `detail` names their line numbers"
)


@router.post(
    "/api/v1/import", status_code=204, responses=RESPONSES, summary="VictoriaMetrics JSON lines"
)
@router.post("/prometheus/api/v1/import", status_code=204, include_in_schema=False)
async def import_json_lines(
    request: Request, settings: SettingsDep, store: StoreDep, extra: ExtraLabels
) -> Response:
    """One series per line: `{"metric": {"__name__": ..., ...}, "values": [...],
    "timestamps": [ms, ...]}`; values may be `null` or `"NaN"`, `"Inf"`, `"-Inf"`. Answers 204
    once committed; bad lines are refused (400 naming them) and the good ones stored."""
    accepting_writes(request)
    body = bytes(await read_decoded(request, settings.max_body_bytes))
    builder, report = SeriesBuilder(), WriteReport(unit="lines")
    vmimport.read_body(body, builder, report, extra)
    bounds = TimeBounds.starting_now(settings.max_future_skew)
    await store_request(request, store, builder, report, bounds.max_ms, "vmimport")
    return Response(status_code=204)


def default_timestamp(text: str | None, now_ms: int) -> int:
    if text is None:
        return now_ms
    try:
        return parse_time_ms(text, "ms")
    except TimeParseError as exc:
        raise InvalidInput(f"timestamp: {exc}") from None


Timestamp = Annotated[
    str | None,
    Query(
        description="For lines without a timestamp: epoch milliseconds or RFC 3339. Default now."
    ),
]


@router.post(
    "/api/v1/import/prometheus",
    status_code=204,
    responses=RESPONSES,
    summary="Prometheus text exposition format",
)
@router.put("/api/v1/import/prometheus", status_code=204, include_in_schema=False)
@router.post("/prometheus/api/v1/import/prometheus", status_code=204, include_in_schema=False)
@router.put("/prometheus/api/v1/import/prometheus", status_code=204, include_in_schema=False)
async def import_prometheus_text(
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    extra: ExtraLabels,
    timestamp: Timestamp = None,
) -> Response:
    """What an exporter's `/metrics` answers (and OpenMetrics text). Timestamps in
    milliseconds (seconds in OpenMetrics); `# HELP`, `# TYPE`, `# UNIT` are stored as metadata.
    Answers 204 once committed; bad lines are refused (400 naming them), the good ones stored."""
    accepting_writes(request)
    bounds = TimeBounds.starting_now(settings.max_future_skew)
    default_ms = default_timestamp(timestamp, bounds.now_ms)
    body = bytes(await read_decoded(request, settings.max_body_bytes))
    builder, report = SeriesBuilder(), WriteReport(unit="lines")
    metadata = promtext.read_body(body, default_ms, builder, report, extra)
    if metadata:
        await store.record_metadata(metadata)
    await store_request(request, store, builder, report, bounds.max_ms, "prometheus_text")
    return Response(status_code=204)
