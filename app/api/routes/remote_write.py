"""Prometheus remote write 1.0: `POST /api/v1/write` (also `/api/v1/push`, and both under
`/prometheus`), what Prometheus and vmagent send with `remote_write`."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from app.api.body import content_encoding, read_body
from app.api.deps import SettingsDep, StoreDep, WriteKey
from app.errors import (
    BadRequest,
    Dialect,
    PartialWrite,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
    responses_for,
    use_dialect,
)
from app.protocols.ingest import accepting_writes, store_request
from app.protocols.remote_write.decode import decode_write_request, snappy_block
from app.validation import TimeBounds

router = APIRouter(
    tags=["outside protocols"],
    dependencies=[Depends(use_dialect(Dialect.REMOTE_WRITE)), WriteKey],
)
PATHS = ("/api/v1/write", "/api/v1/push", "/prometheus/api/v1/write", "/prometheus/api/v1/push")
V1_PROTO = "prometheus.WriteRequest"
RESPONSES: dict[int | str, dict[str, object]] = {
    **responses_for(BadRequest, PartialWrite, Unauthorized, UnsupportedMediaType, Unavailable),
    204: {"description": "Stored (committed)"},
}
RESPONSES[400]["description"] = (
    "Undecodable or oversized body (a 413 would make vmagent retry forever), or some series"
    " refused (invalid, over a cardinality limit, out of range) while the rest was stored;"
    " `detail` names the first ones"
)


def check_media(request: Request) -> None:
    """Remote write 1.0 only: protobuf, snappy block encoding. 2.0 is refused with a 415, on
    which a 2.0 sender falls back to 1.0."""
    media, _, params = request.headers.get("content-type", "").partition(";")
    media = media.strip().lower()
    if media not in ("", "application/x-protobuf"):
        raise UnsupportedMediaType(
            f"Content-Type: {media!r}; remote write takes application/x-protobuf"
        )
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.lower() == "proto" and value.strip() != V1_PROTO:
            raise UnsupportedMediaType(
                f"Content-Type: proto={value.strip()} is not supported; this endpoint speaks"
                f" remote write 1.0 (proto={V1_PROTO})"
            )
    encoding = content_encoding(request)
    if encoding not in ("snappy", "identity"):
        raise UnsupportedMediaType(
            f"Content-Encoding: {encoding!r}; remote write bodies are snappy block-compressed"
        )


@router.post(PATHS[0], status_code=204, responses=RESPONSES, summary="Prometheus remote write")
@router.post(PATHS[1], status_code=204, include_in_schema=False)
@router.post(PATHS[2], status_code=204, include_in_schema=False)
@router.post(PATHS[3], status_code=204, include_in_schema=False)
async def remote_write(request: Request, settings: SettingsDep, store: StoreDep) -> Response:
    """A snappy-compressed protobuf `WriteRequest` (remote write 1.0). Answers 204 once
    committed. Series are keyed by their labels with `__name__` as the metric; empty-valued
    labels are dropped, names sanitized (README). Stale markers and NaN are stored bit for bit,
    samples in any order are accepted (the last write of a timestamp wins). Exemplars and
    native histograms are ignored and counted on /metrics; metadata is stored."""
    accepting_writes(request)
    check_media(request)
    limit = settings.max_body_bytes
    decoded = decode_write_request(snappy_block(bytes(await read_body(request, limit)), limit))
    if decoded.metadata:
        await store.record_metadata(decoded.metadata)
    bounds = TimeBounds.starting_now(settings.max_future_skew)
    await store_request(
        request, store, decoded.builder, decoded.report, bounds.max_ms, "remote_write"
    )
    return Response(status_code=204)
