"""Reading request bodies into memory within MAX_BODY_BYTES and the process-wide budget of
MAX_BUFFERED_BODY_BYTES (app.http_guard): the one way a route (or a protocol endpoint) buffers a
body.

An oversized body is refused before it is buffered: from its Content-Length when it has one,
else as soon as it grows past the limit (the guard then reads and drops the rest, so the client
gets the 413). With a Content-Length the body is read into one buffer of that size, so it is
held once, not as chunks and then their join.
"""

from __future__ import annotations

import asyncio
import zlib

import cramjam
import orjson
from fastapi import Request
from starlette.requests import ClientDisconnect

from app.errors import BadRequest, PayloadTooLarge
from app.http_guard import body_budget
from app.jsonsplit import NotSplittable, split_arrays
from app.model import SampleBatch
from app.validation import IMPORT_ARRAYS, BatchBuilder, TimeBounds, add_import_slice, parse_import

MAX_SAMPLE_BODY_BYTES = 1024 * 1024  # one sample is a few KiB at most; its body never needs more


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
    """The body parsed as JSON (read as read_body does); BadRequest when it is not JSON."""
    return parse_json(await read_body(request, limit, limit_name))


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


async def parse_import_body(body: bytearray, bounds: TimeBounds, max_batch: int) -> SampleBatch:
    """An import body (`{"metrics": [...], "series": [...]}`) validated a slice at a time
    (app.jsonsplit), yielding to the event loop between slices: only one slice's Python objects
    exist at once, and no other request waits for more than one slice. A body of another shape
    is parsed whole, with the same answers as before."""
    builder = BatchBuilder(bounds)
    try:
        for key, first, elements in split_arrays(body, IMPORT_ARRAYS):
            add_import_slice(builder, key, first, elements, max_batch)
            del elements
            await asyncio.sleep(0)
    except NotSplittable:
        return parse_import(parse_json(body), bounds, max_batch)
    return builder.build()


def decompress(data: bytes | bytearray, encoding: str | None, limit: int) -> bytes:
    """A body decoded from its Content-Encoding (`gzip`, `deflate`, or `snappy`: the raw block
    format remote write uses), at most `limit` bytes: a small body that would inflate past the
    limit (a "zip bomb") is refused once `limit` bytes came out, not after filling memory.
    PayloadTooLarge beyond the limit, BadRequest for data that does not decode."""
    name = (encoding or "identity").strip().lower()
    if name == "identity":
        if len(data) > limit:
            raise PayloadTooLarge(f"body: more than {limit} bytes")
        return bytes(data)
    if name == "snappy":
        return _unsnappy(data, limit)
    if name in ("gzip", "x-gzip", "deflate"):
        return _inflate(data, limit, wbits=47 if name != "deflate" else 15)
    raise BadRequest(f"Content-Encoding: {encoding!r} is not supported (gzip, deflate, snappy)")


def _inflate(data: bytes | bytearray, limit: int, wbits: int) -> bytes:
    out = bytearray()
    rest = bytes(data)
    while rest:  # gzip allows several members one after the other
        inflater = zlib.decompressobj(wbits)
        try:
            out += inflater.decompress(rest, limit + 1 - len(out))
        except zlib.error as exc:
            raise BadRequest(f"body: not valid compressed data ({exc})") from None
        if len(out) > limit or inflater.unconsumed_tail:
            raise PayloadTooLarge(f"body: more than {limit} bytes once decompressed")
        if not inflater.eof:
            raise BadRequest("body: compressed data cut short")
        rest = inflater.unused_data
    return bytes(out)


def _unsnappy(data: bytes | bytearray, limit: int) -> bytes:
    size, shift = 0, 0
    for byte in data[:10]:  # the block starts with its length, a varint
        size |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            break
    else:
        raise BadRequest("body: not valid snappy data (no length)")
    if size > limit:
        raise PayloadTooLarge(f"body: {size} bytes once decompressed, more than {limit}")
    try:
        return bytes(cramjam.snappy.decompress_raw(bytes(data)))
    except cramjam.DecompressionError as exc:
        raise BadRequest(f"body: not valid snappy data ({exc})") from None
