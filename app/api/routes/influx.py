"""InfluxDB line protocol: `POST /write` (1.x) and `/api/v2/write` (2.x), both also under
`/influx`; `GET /ping`; `POST /query` for the statements clients send before writing."""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from app.api.body import read_body as read_request_body
from app.api.body import read_decoded
from app.api.deps import InfluxWriteKey, SettingsDep, StoreDep
from app.api.extra_labels import ExtraLabels
from app.errors import (
    Dialect,
    line_write_responses,
    use_dialect,
)
from app.protocols.builder import SeriesBuilder
from app.protocols.influx.common import precision_of
from app.protocols.influx.parse import read_body
from app.protocols.ingest import accepting_writes, store_request
from app.protocols.report import WriteReport
from app.validation import InvalidInput, TimeBounds

QUERY_BODY_BYTES = 1024 * 1024
INFLUX_VERSION = "1.8.10"  # what clients are told they speak to (they check the major version)
router = APIRouter(tags=["outside protocols"], dependencies=[Depends(use_dialect(Dialect.INFLUX))])
write_router = APIRouter(dependencies=[InfluxWriteKey])
RESPONSES = line_write_responses(
    "Bad lines refused while the good ones were stored: `error` says `partial write: unable to"
    " parse ...` and names their line numbers (what Telegraf reads)"
)
Precision = Annotated[
    str | None,
    Query(description="Timestamp unit: ns (n, the default), us (u), ms, s, m, h."),
]


async def _write(
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    extra: ExtraLabels,
    db: str | None,
    precision: str | None,
) -> Response:
    accepting_writes(request)
    unit = precision_of(precision)
    body = bytes(await read_decoded(request, settings.max_body_bytes))
    bounds = TimeBounds.starting_now(settings.max_future_skew)
    builder, report = SeriesBuilder(), WriteReport(unit="lines", influx=True)
    read_body(body, unit, db, bounds.now_ms, builder, report, extra)
    await store_request(request, store, builder, report, bounds.max_ms, "influx")
    return Response(status_code=204, headers={"X-Influxdb-Version": INFLUX_VERSION})


@write_router.post("/write", status_code=204, responses=RESPONSES, summary="InfluxDB 1.x write")
@write_router.post("/influx/write", status_code=204, include_in_schema=False)
async def write_v1(
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    extra: ExtraLabels,
    db: Annotated[str | None, Query(description="Becomes the `db` label of every series.")] = None,
    precision: Precision = None,
    rp: Annotated[str | None, Query(description="Accepted and ignored.")] = None,
) -> Response:
    """Line protocol, one point per line, gzip allowed. Each numeric field becomes the series
    `measurement_field`, tags become labels, `db` a label unless a tag has that name. String
    fields are skipped (counted on /metrics). Answers 204 once committed; a bad line among good
    ones: the good ones are stored and the answer is a 400 "partial write" naming the lines."""
    return await _write(request, settings, store, extra, db, precision)


@write_router.post(
    "/api/v2/write", status_code=204, responses=RESPONSES, summary="InfluxDB 2.x write"
)
@write_router.post("/influx/api/v2/write", status_code=204, include_in_schema=False)
async def write_v2(
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    extra: ExtraLabels,
    bucket: Annotated[str | None, Query(description="Becomes the `db` label.")] = None,
    org: Annotated[str | None, Query(description="Accepted and ignored.")] = None,
    precision: Precision = None,
) -> Response:
    """As `/write`, with the bucket as the `db` label; the token (`Authorization: Token KEY`)
    is the API key."""
    return await _write(request, settings, store, extra, bucket, precision)


@router.get(
    "/ping",
    status_code=204,
    summary="InfluxDB ping",
    responses={200: {"description": 'With `verbose=true`: `{"version": ...}`'}},
)
@router.head("/ping", status_code=204, include_in_schema=False)
@router.get("/influx/ping", status_code=204, include_in_schema=False)
@router.head("/influx/ping", status_code=204, include_in_schema=False)
async def ping(verbose: bool = False) -> Response:
    """204 with `X-Influxdb-Version` (what InfluxDB clients check before writing)."""
    headers = {"X-Influxdb-Version": INFLUX_VERSION}
    if verbose:
        return JSONResponse({"version": INFLUX_VERSION}, headers=headers)
    return Response(status_code=204, headers=headers)


# Statements clients send before writing; all succeed without effect (databases are labels).
NO_OP_STATEMENTS = re.compile(
    r"^\s*(CREATE\s+DATABASE|CREATE\s+RETENTION\s+POLICY|ALTER\s+RETENTION\s+POLICY)\b", re.I
)
SHOW_DATABASES = re.compile(r"^\s*SHOW\s+DATABASES\s*$", re.I)


def statement_result(number: int, statement: str) -> dict[str, object]:
    if NO_OP_STATEMENTS.match(statement):
        return {"statement_id": number}
    if SHOW_DATABASES.match(statement):
        series = {"name": "databases", "columns": ["name"], "values": []}
        return {"statement_id": number, "series": [series]}
    return {
        "statement_id": number,
        "error": "this service takes InfluxDB writes only; of the query language it answers"
        " CREATE DATABASE, CREATE/ALTER RETENTION POLICY (without effect) and SHOW DATABASES",
    }


@write_router.post("/query", summary="InfluxDB query (the statements clients send first)")
@write_router.get("/query", include_in_schema=False)
@write_router.post("/influx/query", include_in_schema=False)
@write_router.get("/influx/query", include_in_schema=False)
async def query(request: Request, q: str | None = None) -> JSONResponse:
    """`CREATE DATABASE` (Telegraf's first request), `CREATE`/`ALTER RETENTION POLICY` (what
    `influx -import` runs) succeed without effect, `SHOW DATABASES` is empty; anything else is
    an error in the statement's result, as InfluxDB reports statement errors."""
    if q is None and request.method == "POST":  # form-encoded, as the 1.x clients post it
        form = parse_qs(
            (await read_request_body(request, QUERY_BODY_BYTES)).decode("utf-8", "replace")
        )
        q = form.get("q", [None])[0]
    if not q:
        raise InvalidInput("q: required, the statements to run")
    statements = [s for s in q.split(";") if s.strip()]
    results = [statement_result(i, s) for i, s in enumerate(statements)]
    return JSONResponse({"results": results}, headers={"X-Influxdb-Version": INFLUX_VERSION})


router.include_router(write_router)
