"""Reads: the metric catalogue, raw ranges and rollups."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

import numpy as np
import orjson
from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse

from app.api.deps import FiltersDep, MetricName, RangeDep, ReadKey, SettingsDep, StoreDep
from app.api.responses import FastJSON
from app.errors import Unavailable, responses_for
from app.schemas import NamesResponse, RawQueryResponse, RollupQueryResponse
from app.services.rollup import BY_NAME
from app.storage.reads import RollupData, SeriesData
from app.storage.store import QueryTimeout, UnknownMetric
from app.timeutil import format_ms, format_ms_array

router = APIRouter(tags=["queries"], dependencies=[ReadKey], default_response_class=FastJSON)
ERRORS = responses_for(UnknownMetric, RequestValidationError, Unavailable, QueryTimeout)


@router.get("/metrics/names", response_model=NamesResponse, summary="List metric names")
async def metric_names(
    store: StoreDep,
    prefix: Annotated[str | None, Query(max_length=255, description="Name prefix.")] = None,
) -> dict[str, object]:
    return {"names": await store.metric_names(prefix)}


@router.get(
    "/query/raw",
    response_model=RawQueryResponse,
    responses=ERRORS,
    summary="Raw samples in a range",
)
async def query_raw(
    metric_name: MetricName,
    time_range: RangeDep,
    filters: FiltersDep,
    store: StoreDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(gt=0, description="Most points in the answer.")] = 100_000,
) -> FastJSON | StreamingResponse:
    """Points ascending by time; series ordered by their labels, those without a point in the
    range left out. `raw_retained_from`: raw samples of the metric are kept from then on (older
    data is in the rollups that retain it). `truncated` says whether `limit` (capped at
    MAX_QUERY_POINTS) cut the answer short. Answers of more than 50,000 points are streamed in
    chunks."""
    limit = min(limit, settings.max_query_points)
    selection = await store.read_raw(
        metric_name, filters, time_range.start_ms, time_range.end_ms, limit
    )
    series, truncated = selection.series, selection.truncated
    head: dict[str, object] = {
        "metric_name": metric_name,
        "start_time": time_range.start_text,
        "end_time": time_range.end_text,
        "raw_retained_from": format_ms(selection.retained_from),
    }
    if sum(s.ts.size for s in series) > STREAM_ABOVE_POINTS:
        return StreamingResponse(
            _stream_raw(head, series, truncated), media_type="application/json"
        )
    # Returned as a response: the answer is shaped as RawQueryResponse (the OpenAPI page says so)
    # but not validated against it again, which cost more than reading the points.
    return FastJSON({**head, "series": [_raw_series(s) for s in series], "truncated": truncated})


STREAM_ABOVE_POINTS = 50_000
STREAM_CHUNK_POINTS = 10_000


def _stream_raw(
    head: dict[str, object], series: list[SeriesData], truncated: bool
) -> Iterator[bytes]:
    """The same JSON as the plain answer, encoded a chunk of points at a time: a large answer is
    never held as one Python object per point."""
    yield orjson.dumps(head)[:-1] + b',"series":['
    for i, data in enumerate(series):
        yield (b"," if i else b"") + b'{"labels":' + orjson.dumps(data.labels) + b',"points":['
        for start in range(0, data.ts.size, STREAM_CHUNK_POINTS):
            part = SeriesData(
                data.labels,
                data.ts[start : start + STREAM_CHUNK_POINTS],
                data.values[start : start + STREAM_CHUNK_POINTS],
            )
            points = orjson.dumps(_raw_series(part)["points"])[1:-1]
            yield (b"," if start else b"") + points
        yield b"]}"
    yield b'],"truncated":' + (b"true" if truncated else b"false") + b"}"


STALE_MARKER_BITS = 0x7FF0000000000002


def _raw_series(data: SeriesData) -> dict[str, object]:
    stamps = format_ms_array(data.ts)
    values = data.values.tolist()
    points = [{"timestamp": t, "value": v} for t, v in zip(stamps, values, strict=True)]
    special = np.flatnonzero(~np.isfinite(data.values))
    if special.size:  # JSON has no NaN or infinity: `value` null and `special` says which
        bits = data.values.view(np.uint64)
        for i in special.tolist():
            points[i] = {"timestamp": stamps[i], "value": None, "special": _special(data, bits, i)}
    return {"labels": data.labels, "points": points}


def _special(data: SeriesData, bits: np.ndarray, i: int) -> str:
    value = float(data.values[i])
    if value != value:
        return "stale" if int(bits[i]) == STALE_MARKER_BITS else "NaN"
    return "+Inf" if value > 0 else "-Inf"


@router.get(
    "/query/rollup",
    response_model=RollupQueryResponse,
    responses=ERRORS,
    summary="Rollups (1m, 5m, 1h buckets) in a range",
)
async def query_rollup(
    metric_name: MetricName,
    window: Annotated[Literal["1m", "5m", "1h"], Query(description="Bucket width.")],
    time_range: RangeDep,
    filters: FiltersDep,
    store: StoreDep,
) -> FastJSON:
    """Buckets whose start lies in [start_time floored to the window, end_time], each aggregating
    all of its samples (NaN values left out). Buckets not yet materialized by the rollup job, or
    invalidated by late data, are computed from raw samples on the fly, so the answer is always
    exact. Buckets before `retained_from` have expired; series without a bucket in the range are
    left out."""
    res = BY_NAME[window]
    selection = await store.read_rollup(
        metric_name, filters, res, time_range.start_ms, time_range.end_ms
    )
    until = selection.materialized_until
    return FastJSON(  # shaped as RollupQueryResponse, not validated again (see query_raw)
        {
            "metric_name": metric_name,
            "window": window,
            "start_time": time_range.start_text,
            "end_time": time_range.end_text,
            "materialized_until": None if until is None else format_ms(until),
            "retained_from": format_ms(selection.retained_from),
            "series": [_rollup_series(s) for s in selection.series],
        }
    )


def _rollup_series(data: RollupData) -> dict[str, object]:
    count = data.count.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):  # infinite values: NaN/inf, not warnings
        avg = data.sum / count
        stddev = np.sqrt(np.maximum(data.sumsq / count - avg * avg, 0.0))
    columns = zip(
        format_ms_array(data.bucket),
        avg.tolist(),
        data.min.tolist(),
        data.max.tolist(),
        data.sum.tolist(),
        data.count.tolist(),
        stddev.tolist(),
        data.last.tolist(),
        strict=True,
    )
    keys = ("timestamp", "avg", "min", "max", "sum", "count", "stddev", "last")
    return {"labels": data.labels, "points": [dict(zip(keys, row, strict=True)) for row in columns]}
