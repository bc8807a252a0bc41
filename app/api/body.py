"""Reading JSON bodies within MAX_BODY_BYTES, refusing oversized ones before buffering them."""

from __future__ import annotations

import orjson
from fastapi import Request
from starlette.requests import ClientDisconnect

from app.errors import BadRequest, PayloadTooLarge


async def read_json(request: Request, limit: int) -> object:
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
    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body: not valid JSON ({exc})") from None
