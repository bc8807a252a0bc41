"""`POST /metrics/ingest` answered below the framework, for the plain case.

Single-sample writes are the most frequent request a metrics service gets, and for them the
framework's per-request work (routing, dependency solving, a stack of middleware) costs several
times the write itself: on the benchmark machine a bare ASGI endpoint answers about four times the
requests per second of a FastAPI endpoint that does the same nothing. So the application sends
this one route here first (`MetricsApp.__call__` in app.main), where it takes the steps the route
in app.api.routes.ingest takes, through the same functions: the write-key check, MAX_BODY_BYTES,
`parse_single`, the group commit, the exception handlers for what the commit refuses, and the
request's count, access-log line and Server-Timing header.

Everything that is not a plain, acceptable sample (a missing key, a body too large or not JSON,
a rule broken, a client gone before its body arrived) goes to the framework route instead, with
the body read so far replayed, so each of those answers is written in one place only.
"""

from __future__ import annotations

import collections
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from app.api.body import sample_body_limit
from app.api.deps import key_in, presented_key
from app.api.responses import INGEST_ANSWERS
from app.config import Settings
from app.http_guard import Overloaded, body_budget
from app.model import Sample
from app.observability import RequestRecorder
from app.protocols.native.items import parse_single
from app.storage.group_commit import GroupCommitter
from app.timeutil import PRECISIONS, Precision
from app.validation import TimeBounds

ROUTE = "/metrics/ingest"
ANSWER_HEADERS = {
    kind: [(b"content-length", str(len(answer)).encode()), (b"content-type", b"application/json")]
    for kind, answer in INGEST_ANSWERS.items()
}

ASGICall = Callable[[Scope, Receive, Send], Awaitable[None]]
Handlers = Mapping[Any, Callable[..., Any]]  # the app's exception handlers, by class


def is_hot(scope: Scope) -> bool:
    return bool(scope["type"] == "http" and scope["path"] == ROUTE and scope["method"] == "POST")


async def ingest(
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    settings: Settings,
    committer: GroupCommitter,
    recorder: RequestRecorder,
    handlers: Handlers,
    framework: ASGICall,
) -> None:
    """Answer a plain single-sample write; hand anything else to `framework`."""
    started = time.perf_counter()
    messages: list[Message] = []
    sample = await _plain_sample(scope, receive, messages, settings)
    if sample is None:
        share = body_budget(scope)
        if share is not None:
            share.release()  # the route takes the body's bytes again as it reads it
        await framework(scope, _replay(messages, receive), send)
        return
    recorder.first_request(scope)
    with recorder.tracking(scope, started, ROUTE) as outcome:
        try:
            kind = await committer.submit(sample)
        except Exception as exc:
            outcome.status = await _refusal(scope, send, exc, handlers, recorder, started)
            return
        recorder.metrics.ingested.inc()
        outcome.status = 201
        headers = [*ANSWER_HEADERS[kind], recorder.server_timing(started)]
        await send({"type": "http.response.start", "status": 201, "headers": headers})
        await send({"type": "http.response.body", "body": INGEST_ANSWERS[kind]})


async def _plain_sample(
    scope: Scope, receive: Receive, messages: list[Message], settings: Settings
) -> Sample | None:
    """The sample, if the request is plain and acceptable; else None (the framework answers)."""
    limit, _ = sample_body_limit(settings.max_body_bytes)
    for name, value in scope["headers"]:
        if name == b"content-length" and (not value.isdigit() or int(value) > limit):
            return None
    if settings.api_keys and not key_in(presented_key(Request(scope)), settings.api_keys):
        return None
    share, size = body_budget(scope), 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return None
        chunk = len(message.get("body", b""))
        size += chunk
        if size > limit:
            return None
        if share is not None:
            try:
                share.take(chunk)
            except Overloaded:
                return None  # the route answers it, taking from the same budget
        if not message.get("more_body", False):
            break
    precision = _precision(scope["query_string"])
    if precision is None:
        return None
    body = b"".join(m.get("body", b"") for m in messages)
    try:
        bounds = TimeBounds.starting_now(settings.max_future_skew)
        return parse_single(orjson.loads(body), bounds, precision)
    except Exception:  # not JSON, or a rule broken: the route says which, in its own words
        return None


def _precision(query: bytes) -> Precision | None:
    """`precision` from the query (default s); None for any other parameter or value, which
    the route answers."""
    if not query:
        return "s"
    params = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    if len(params) != 1 or params[0][0] != "precision" or params[0][1] not in PRECISIONS:
        return None
    return params[0][1]


async def _refusal(
    scope: Scope,
    send: Send,
    exc: Exception,
    handlers: Handlers,
    recorder: RequestRecorder,
    started: float,
) -> int:
    """Answer what the commit refused (cardinality, retention horizon, database down) through
    the app's own exception handler; an error nobody handles propagates, as in the framework."""
    handler = next((handlers[c] for c in type(exc).__mro__ if c in handlers), None)
    if handler is None:
        raise exc
    response = handler(Request(scope), exc)
    if inspect.isawaitable(response):
        response = await response
    status: int = getattr(response, "status_code", 500)

    async def send_timed(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message["headers"], recorder.server_timing(started)]}
        await send(message)

    await response(scope, _no_body, send_timed)
    return status


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A receive that gives back what was already read, then reads on."""
    pending = collections.deque(messages)  # popleft: a body in many chunks stays linear

    async def replay() -> Message:
        if pending:
            return pending.popleft()
        return await receive()

    return replay
