"""Request bodies under control, for every request whatever server runs the app: the ASGI layer's
share of the limits a production server sets (the server's share, the request head, is in
app.server).

- **Slow bodies**: while the app waits for the next part of a body, it waits at most
  HTTP_BODY_TIMEOUT, and a body may not average less than HTTP_BODY_MIN_RATE bytes per second of
  waiting beyond the first HTTP_BODY_TIMEOUT. Either is answered 408 and the connection closed.
  Only the time spent waiting for the client counts, not the app's own work.
- **Answers before the body was read** (413, 401, a 422 on an early line, a 503): the rest of the
  body is read and dropped, at most HTTP_LINGER_BYTES within HTTP_LINGER_TIMEOUT, before the
  answer is completed, then the connection is closed. A client that writes its whole body before
  it reads (urllib, most remote-write senders) then gets the answer instead of a connection reset.
- **Buffered bodies**: readers that hold a body in memory take its bytes from a process-wide
  budget of MAX_BUFFERED_BODY_BYTES (`body_budget`); beyond it a request is answered 503 with
  Retry-After. What a request took is given back when it ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
from starlette.types import Message, Receive, Scope, Send

from app.config import Settings

log = logging.getLogger("app.http")
ASGICall = Callable[[Scope, Receive, Send], Awaitable[None]]
BUDGET_KEY = "metrics.body_budget"
OVERLOAD_RETRY_AFTER = 1


class BodyTimeout(Exception):
    """The client sent its body too slowly (HTTP_BODY_TIMEOUT, HTTP_BODY_MIN_RATE)."""


class Overloaded(Exception):
    """Taking a body into memory would exceed MAX_BUFFERED_BODY_BYTES."""


class BodyBudget:
    """Bytes of request bodies held in memory by the process, against MAX_BUFFERED_BODY_BYTES."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, n: int) -> None:
        if self.held + n > self.limit:
            raise Overloaded(
                f"body: the service holds {self.held} bytes of request bodies and this one would "
                f"pass MAX_BUFFERED_BODY_BYTES ({self.limit}); retry shortly"
            )
        self.held += n

    def give_back(self, n: int) -> None:
        self.held = max(0, self.held - n)


@dataclass
class RequestBudget:
    """One request's share of the budget, given back when the request ends."""

    budget: BodyBudget
    taken: int = 0

    def take(self, n: int) -> None:
        self.budget.take(n)
        self.taken += n

    def release(self) -> None:
        self.budget.give_back(self.taken)
        self.taken = 0


def body_budget(scope: Scope) -> RequestBudget | None:
    """The budget a reader that buffers a body must take its bytes from (None outside the app,
    e.g. a router mounted alone)."""
    found = scope.get(BUDGET_KEY)
    return found if isinstance(found, RequestBudget) else None


class BodyGuard:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.budget = BodyBudget(settings.max_buffered_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send, app: ASGICall) -> None:
        request = GuardedRequest(self.settings, receive, send)
        request.expects_continue = (b"expect", b"100-continue") in [
            (name, value.lower()) for name, value in scope.get("headers", [])
        ]
        share = RequestBudget(self.budget)
        scope[BUDGET_KEY] = share
        try:
            await app(scope, request.receive, request.send)
        except BodyTimeout as exc:
            if request.response_started:
                return  # the server closes a connection whose answer was cut short
            for message in timeout_response(str(exc)):
                await request.send(message)
        finally:
            share.release()


def timeout_response(detail: str) -> tuple[Message, Message]:
    body = orjson.dumps({"detail": detail})
    start: Message = {
        "type": "http.response.start",
        "status": 408,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


class GuardedRequest:
    """The receive and send of one request, with the body timeouts and the lingering read."""

    def __init__(self, settings: Settings, receive: Receive, send: Send) -> None:
        self.settings = settings
        self._receive = receive
        self._send = send
        self.body_done = False
        self.timed_out = False
        self.response_started = False
        self.received = 0
        self.waited = 0.0
        self.app_read = False
        self.expects_continue = False

    async def receive(self) -> Message:
        if self.body_done:
            return await self._receive()  # waiting for a disconnect: no deadline
        self.app_read = True
        return await self._next(self._wait_limit())

    def _wait_limit(self) -> float:
        """Seconds the next part of the body may take: HTTP_BODY_TIMEOUT, less when the body is
        behind HTTP_BODY_MIN_RATE."""
        limit = self.settings.http_body_timeout.total_seconds()
        rate = self.settings.http_body_min_rate
        if rate > 0:
            allowed = limit + self.received / rate  # waiting allowed so far, all in all
            limit = min(limit, allowed - self.waited)
        if limit <= 0:
            self.timed_out = True
            raise BodyTimeout(
                f"body: sent slower than HTTP_BODY_MIN_RATE ({rate} bytes/s); closing"
            )
        return limit

    async def _next(self, limit: float) -> Message:
        started = time.monotonic()
        try:
            async with asyncio.timeout(limit):
                message = await self._receive()
        except TimeoutError:
            self.timed_out = True
            raise BodyTimeout(
                f"body: nothing received for {limit:.3g}s (HTTP_BODY_TIMEOUT, "
                "HTTP_BODY_MIN_RATE); closing"
            ) from None
        finally:
            self.waited += time.monotonic() - started
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if not message.get("more_body", False):
                self.body_done = True
        else:
            self.body_done = True  # the client went away
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.response_started = True
            if not self.body_done:  # the rest of the body is read and dropped, then close
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
        elif (
            message["type"] == "http.response.body"
            and not message.get("more_body", False)
            and not self.body_done
            and not self.timed_out
            and not (self.expects_continue and not self.app_read)  # it will not come
        ):
            await self._send({**message, "more_body": True})
            await self._linger()
            message = {"type": "http.response.body", "body": b"", "more_body": False}
        await self._send(message)

    async def _linger(self) -> None:
        """Read and drop the rest of the body, within HTTP_LINGER_BYTES and HTTP_LINGER_TIMEOUT,
        so that a client still sending it reads the answer instead of a reset connection."""
        deadline = time.monotonic() + self.settings.http_linger_timeout.total_seconds()
        dropped = 0
        per_part = self.settings.http_body_timeout.total_seconds()
        while not self.body_done and dropped <= self.settings.http_linger_bytes:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                async with asyncio.timeout(min(left, per_part)):
                    message = await self._receive()
            except TimeoutError:
                break
            if message["type"] != "http.request":
                break
            dropped += len(message.get("body", b""))
            self.body_done = not message.get("more_body", False)
        if not self.body_done:
            log.info("closing after %d bytes of an unread body were dropped", dropped)
