"""Reading request bodies within MAX_BODY_BYTES: refused before buffering when the declared size
is too large, and checked again after decompression (gzip), so a small compressed body cannot
expand into a large one."""

from __future__ import annotations

import zlib

import orjson
from fastapi import Request
from starlette.requests import ClientDisconnect

from app.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

GZIP_WBITS = 16 + zlib.MAX_WBITS


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, at most `limit` bytes (PayloadTooLarge beyond)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body: {declared} bytes, more than MAX_BODY_BYTES ({limit})")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"body: more than MAX_BODY_BYTES ({limit} bytes)")
            chunks.append(chunk)
    except ClientDisconnect:  # nobody to answer; nothing was written
        raise BadRequest("body: the client disconnected before sending all of it") from None
    return b"".join(chunks)


def content_encoding(request: Request) -> str:
    return request.headers.get("content-encoding", "identity").strip().lower() or "identity"


async def read_decoded(request: Request, limit: int) -> bytes:
    """The body, gunzipped when `Content-Encoding: gzip`; other encodings are a 415."""
    body = await read_body(request, limit)
    encoding = content_encoding(request)
    if encoding in ("identity", "none"):
        return body
    if encoding in ("gzip", "x-gzip"):
        return gunzip(body, limit)
    raise UnsupportedMediaType(
        f"Content-Encoding: {encoding!r} is not supported here; send gzip or no encoding"
    )


def gunzip(data: bytes, limit: int) -> bytes:
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


async def read_json(request: Request, limit: int) -> object:
    body = await read_decoded(request, limit)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body: not valid JSON ({exc})") from None
