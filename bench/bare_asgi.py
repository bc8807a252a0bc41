"""The HTTP ceiling for single-sample ingestion: an ASGI app that reads the body and answers 201,
and nothing else, served by uvicorn with the same flags and driven by the same wrk load as the
real server in the same run. What the service does per request is the gap between the two."""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

ANSWER = b'{"status":"ok"}'


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    status = 201 if scope["method"] == "POST" else 200
    headers = [(b"content-type", b"application/json"), (b"content-length", b"15")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": ANSWER})
