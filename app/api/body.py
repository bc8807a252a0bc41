"""Reading request bodies into memory within MAX_BODY_BYTES and the process-wide budget of
MAX_BUFFERED_BODY_BYTES (app.http_guard): the one way a route (or a protocol endpoint) buffers a
body. Checked again after decompression (gzip), so a small compressed body cannot expand into a
large one.

An oversized body is refused before it is buffered: from its Content-Length when it has one,
else as soon as it grows past the limit (the guard then reads and drops the rest, so the client
gets the 413). With a Content-Length the body is read into one buffer of that size, so it is
held once, not as chunks and then their join.
"""

from __future__ import annotations

import asyncio
import zlib

import orjson
from fastapi import Request
from starlette.requests import ClientDisconnect

from app.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from app.http_guard import body_budget
from app.jsonsplit import NotSplittable, split_arrays
from app.model import SampleBatch
from app.protocols.native.items import IMPORT_ARRAYS, BatchBuilder, add_import_slice, parse_import
from app.timeutil import Precision
from app.validation import TimeBounds

MAX_SAMPLE_BODY_BYTES = 1024 * 1024  # one sample is a few KiB at most; its body never needs more
GZIP_WBITS = 16 + zlib.MAX_WBITS


def declared_length(request: Request) -> int | None:
    declared = request.headers.get("content-length")
    return int(declared) if declared is not None and declared.isdigit() else None


async def read_body(request: Request, limit: int, limit_name: str = "MAX_BODY_BYTES") -> bytearray:
    """The whole body, at most `limit` bytes (PayloadTooLarge beyond, naming `limit_name`), its
    bytes taken from the budget (Overloaded when that is spent; given back when the request
    ends)."""
    declared = declared_length(request)
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"body: {declared} bytes, more than {limit_name} ({limit})")
    share = body_budget(request.scope)
    if declared is not None and share is not None:
        share.take(declared)
    buffer = bytearray(declared or 0)
    size = 0
    try:
        async for chunk in request.stream():
            end = size + len(chunk)
            if end > limit:
                raise PayloadTooLarge(f"body: more than {limit_name} ({limit} bytes)")
            if declared is None:
                if share is not None:
                    share.take(len(chunk))
                buffer += chunk
            elif end <= declared:
                buffer[size:end] = chunk
            else:
                raise BadRequest("body: longer than its Content-Length")
            size = end
    except ClientDisconnect:  # nobody to answer; nothing was written
        raise BadRequest("body: the client disconnected before sending all of it") from None
    if declared is not None and size < declared:
        raise BadRequest("body: shorter than its Content-Length")
    return buffer


async def read_json(request: Request, limit: int, limit_name: str = "MAX_BODY_BYTES") -> object:
    """The body (gunzipped if need be) parsed as JSON; BadRequest when it is not JSON."""
    return parse_json(await read_decoded(request, limit, limit_name))


def content_encoding(request: Request) -> str:
    return request.headers.get("content-encoding", "identity").strip().lower() or "identity"


async def read_decoded(
    request: Request, limit: int, limit_name: str = "MAX_BODY_BYTES"
) -> bytes | bytearray:
    """The body, gunzipped when `Content-Encoding: gzip`; other encodings are a 415. Bounded
    decompression, also for the protocol endpoints: a small body that would inflate past `limit`
    is refused once `limit` bytes came out."""
    body = await read_body(request, limit, limit_name)
    encoding = content_encoding(request)
    if encoding in ("identity", "none"):
        return body
    if encoding in ("gzip", "x-gzip"):
        return gunzip(body, limit)
    raise UnsupportedMediaType(
        f"Content-Encoding: {encoding!r} is not supported here; send gzip or no encoding"
    )


def gunzip(data: bytes | bytearray, limit: int) -> bytes:
    """Decompress gzip (several members too), refusing output beyond `limit` bytes."""
    out, rest = bytearray(), data
    while rest:
        decoder = zlib.decompressobj(GZIP_WBITS)
        try:
            out += decoder.decompress(rest, limit + 1 - len(out))
        except zlib.error as exc:
            raise BadRequest(f"body: not valid gzip ({exc})") from None
        if len(out) > limit:
            raise PayloadTooLarge(
                f"body: more than MAX_BODY_BYTES ({limit} bytes) once decompressed"
            )
        if not decoder.eof:
            raise BadRequest("body: the gzip stream is truncated")
        rest = decoder.unused_data
    return bytes(out)


def sample_body_limit(max_body_bytes: int) -> tuple[int, str]:
    """The limit of a single-sample body, and its name for the 413's message."""
    if max_body_bytes <= MAX_SAMPLE_BODY_BYTES:
        return max_body_bytes, "MAX_BODY_BYTES"
    return MAX_SAMPLE_BODY_BYTES, "the most one sample needs"


def parse_json(body: bytes | bytearray | memoryview) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body: not valid JSON ({exc})") from None


async def parse_import_body(
    body: bytes | bytearray, bounds: TimeBounds, max_batch: int, precision: Precision = "s"
) -> SampleBatch:
    """An import body (`{"metrics": [...], "series": [...]}`) validated a slice at a time
    (app.jsonsplit), yielding to the event loop between slices: only one slice's Python objects
    exist at once, and no other request waits for more than one slice. A body of another shape
    is parsed whole, with the same answers as before."""
    builder = BatchBuilder(bounds, precision)
    try:
        for key, first, elements in split_arrays(body, IMPORT_ARRAYS):
            add_import_slice(builder, key, first, elements, max_batch)
            del elements
            await asyncio.sleep(0)
    except NotSplittable:
        return parse_import(parse_json(body), bounds, max_batch, precision)
    return builder.build()
