"""Domain errors -> HTTP answers, from one table.

`RULES` maps each domain error to its status, the rejection reason `/metrics` counts it under
(`metrics_rejected_writes{reason}`), and the sentence the OpenAPI page gives for it. Every route
(through the handlers installed here), the framework-free ingest path (which calls the same
handlers), the streaming import (`status_of`) and `/metrics` (`reason_of_status` and the reason
an answer carries) read it; nothing else maps errors to statuses.

Outside protocols answer in their senders' terms (`Dialect`): a remote-write sender retries some
statuses forever (vmagent: everything but 400 and 409), so there every refusal of the data itself
is a 400; InfluxDB clients read `{"error": ...}`. A route picks its dialect with `use_dialect`.
Error bodies are `{"detail": "<what is wrong, naming it>"}` (InfluxDB routes add `"error"`).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException

from app.http_guard import OVERLOAD_RETRY_AFTER, BodyTimeout, Overloaded
from app.matchers import MatcherError
from app.storage.faults import classify
from app.storage.store import (
    CardinalityExceeded,
    HistoryConflict,
    QueryTimeout,
    UnknownMetric,
    WriteTimeout,
)
from app.timeutil import TimeParseError
from app.validation import BatchTooLarge, InvalidInput

log = logging.getLogger("app.errors")
RETRY_AFTER_SECONDS = 5


class PayloadTooLarge(Exception):
    """A request body larger than MAX_BODY_BYTES (compressed or once decompressed)."""


class BadRequest(Exception):
    """Input that cannot be read at all (not JSON, not the protocol's encoding, truncated)."""


class Unauthorized(Exception):
    """No API key, or a wrong one, where keys are configured."""


class UnsupportedMediaType(Exception):
    """A body encoding or protocol version this endpoint does not speak."""


class PartialWrite(Exception):
    """Some series, samples or lines were refused; the rest of the request is stored."""


class Unavailable(Exception):
    """The database cannot be reached, or the server is shutting down: retry later."""


class LineTooLong(Exception):
    """A line of a streamed body longer than the limit."""

    def __init__(self, line: int, limit: int) -> None:
        super().__init__(f"line {line}: longer than {limit} bytes")


@dataclass(frozen=True)
class Rule:
    status: int
    reason: str  # the `reason` label of metrics_rejected_writes
    doc: str  # what the answer means, for the OpenAPI page
    remote_write_status: int | None = None  # when remote write needs another status


# Order matters only for `reason_of_status`: the first rule of a status names its reason.
RULES: Mapping[type[Exception], Rule] = {
    BadRequest: Rule(400, "bad_request", "The body cannot be read (not JSON, not the encoding)"),
    PartialWrite: Rule(400, "partial_write", "Some series or lines refused; the rest stored"),
    Unauthorized: Rule(401, "auth", "API key missing or wrong (when keys are configured)"),
    UnknownMetric: Rule(404, "unknown_metric", "Unknown metric"),
    PayloadTooLarge: Rule(413, "payload_too_large", "Body too large", 400),
    BatchTooLarge: Rule(413, "payload_too_large", "More samples than MAX_BATCH", 400),
    LineTooLong: Rule(413, "payload_too_large", "A line longer than the limit", 400),
    UnsupportedMediaType: Rule(415, "unsupported", "Encoding or protocol version not spoken"),
    InvalidInput: Rule(422, "validation", "A rule broken; `detail` names the field or item", 400),
    RequestValidationError: Rule(422, "validation", "A parameter broken; `detail` names it", 400),
    MatcherError: Rule(422, "validation", "A label filter that cannot be parsed", 400),
    TimeParseError: Rule(422, "validation", "A time that cannot be read", 400),
    HistoryConflict: Rule(
        422, "retention", "History into a rollup bucket that already holds data", 400
    ),
    CardinalityExceeded: Rule(429, "cardinality", "Cardinality limit reached", 400),
    BodyTimeout: Rule(408, "slow_body", "Body sent too slowly (HTTP_BODY_TIMEOUT, _MIN_RATE)"),
    Unavailable: Rule(503, "unavailable", "Database unavailable; retry after `Retry-After`"),
    QueryTimeout: Rule(503, "timeout", "The query ran longer than QUERY_TIMEOUT"),
    WriteTimeout: Rule(503, "timeout", "The write took longer than DB_WRITE_TIMEOUT"),
    Overloaded: Rule(503, "overloaded", "Request bodies in memory at MAX_BUFFERED_BODY_BYTES"),
}
# Headers beside the status: how soon to retry, and closing a connection whose body came slowly.
EXTRA_HEADERS: Mapping[type[Exception], Mapping[str, str]] = {
    BodyTimeout: {"Connection": "close"},
    Overloaded: {"Retry-After": str(OVERLOAD_RETRY_AFTER)},
}
# The database's own errors: 503 when unreachable, 422 for a value it cannot store, else 500.
DATABASE_ERRORS = (SQLAlchemyError, OSError, ConnectionError, TimeoutError)


def rule_of(exc: BaseException) -> Rule | None:
    for cls in type(exc).__mro__:
        if cls in RULES:
            return RULES[cls]
    return None


class Dialect(enum.Enum):
    """How an endpoint's clients read errors."""

    JSON = "json"
    REMOTE_WRITE = "remote_write"  # statuses senders do not retry forever
    INFLUX = "influx"  # `{"error": ...}` beside `detail`


def status_of(exc: BaseException, dialect: Dialect = Dialect.JSON) -> int:
    """The status a domain error is answered with (500 for one the table does not know)."""
    rule = rule_of(exc)
    if rule is None:
        return 500
    if dialect is Dialect.REMOTE_WRITE and rule.remote_write_status is not None:
        return rule.remote_write_status
    return rule.status


def reason_of_status(status: int) -> str:
    """The rejection reason of an answer whose error is not known, from its status alone."""
    for rule in RULES.values():
        if rule.status == status:
            return rule.reason
    return "server_error" if status >= 500 else "other"


def responses_for(*errors: type[Exception]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for a route that may answer these errors."""
    out: dict[int | str, dict[str, Any]] = {}
    for cls in errors:
        rule = RULES[cls]
        entry = out.setdefault(rule.status, {"model": _error_model(), "description": rule.doc})
        if rule.doc not in entry["description"]:
            entry["description"] += f"; {rule.doc}"
    return out


def line_write_responses(bad_lines: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` of the line-oriented write endpoints (line protocol, JSON lines,
    Prometheus text): 204 once committed, 400 described as `bad_lines` says."""
    out = responses_for(
        BadRequest,
        PartialWrite,
        Unauthorized,
        PayloadTooLarge,
        UnsupportedMediaType,
        InvalidInput,
        Unavailable,
    )
    out[400]["description"] = bad_lines
    out[204] = {"description": "Stored (committed)"}
    return out


def _error_model() -> type:
    from app.schemas import ErrorResponse

    return ErrorResponse


# -- answering ------------------------------------------------------------------------------


def use_dialect(dialect: Dialect) -> Callable[[Request], None]:
    """A route dependency: answer this route's errors in `dialect` (list it first)."""

    def mark(request: Request) -> None:
        request.state.error_dialect = dialect

    return mark


def dialect_of(request: Request) -> Dialect:
    found = getattr(request.state, "error_dialect", None)
    return found if isinstance(found, Dialect) else Dialect.JSON


def retry_after(seconds: int) -> dict[str, str]:
    """The header of a 503: when to try again (remote-write senders and Telegraf read it)."""
    return {"Retry-After": str(seconds)}


def error_response(
    request: Request,
    status: int,
    detail: str,
    reason: str,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """An error answer in the request's dialect; notes the rejection reason for /metrics."""
    request.state.rejection_reason = reason
    body: dict[str, object] = {"detail": detail}
    if dialect_of(request) is Dialect.INFLUX:
        body = {"error": detail, **body}
    extra = dict(headers or {})
    if status == 503:
        extra.setdefault("Retry-After", str(RETRY_AFTER_SECONDS))
    return JSONResponse(body, status_code=status, headers=extra or None)


def detail_of(exc: BaseException) -> str:
    if isinstance(exc, RequestValidationError):
        return "; ".join(f"{_field_path(tuple(e['loc']))}: {e['msg']}" for e in exc.errors())
    if isinstance(exc, HistoryConflict):
        return f"sample {exc.position}: {exc}"
    if isinstance(exc, UnknownMetric):
        return f"metric_name: unknown metric {exc.args[0]!r}"
    return str(exc)


def _field_path(loc: tuple[object, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("query", "body", "path", "header")]
    return ".".join(parts) or "request"


async def _answer(request: Request, exc: Exception) -> JSONResponse:
    rule = rule_of(exc)
    assert rule is not None  # installed for the table's classes only
    status = status_of(exc, dialect_of(request))
    headers = dict(EXTRA_HEADERS.get(type(exc), {}))
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, WriteTimeout):
        log.warning("database too slow on %s: %s", request.url.path, exc)
    detail = f"database too slow: {exc}" if isinstance(exc, WriteTimeout) else detail_of(exc)
    return error_response(request, status, detail, rule.reason, headers)


async def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    """HTTPException (the framework's own 404/405, and routes that raise it): its status, in the
    request's dialect."""
    assert isinstance(exc, HTTPException)
    return error_response(
        request, exc.status_code, str(exc.detail), reason_of_status(exc.status_code), exc.headers
    )


async def _database(request: Request, exc: Exception) -> JSONResponse:
    fault = classify(exc)  # unreachable, too slow, disk full, read-only (app.storage.faults)
    if fault is not None:
        log.warning("%s on %s", fault.message, request.url.path)
        headers = {"Retry-After": str(fault.retry_after)}
        return error_response(request, 503, fault.message, "unavailable", headers)
    sqlstate = str(getattr(getattr(exc, "orig", None), "sqlstate", "") or "")
    if sqlstate.startswith("22"):  # PostgreSQL "data exception": a value it cannot store
        detail = f"a value the database cannot store: {getattr(exc, 'orig', exc)}"[:500]
        status = 400 if dialect_of(request) is Dialect.REMOTE_WRITE else 422
        return error_response(request, status, detail, "validation")
    log.error("database error on %s", request.url.path, exc_info=exc)
    return error_response(request, 500, "internal database error", "server_error")


def install_error_handlers(app: FastAPI) -> None:
    for cls in RULES:
        app.add_exception_handler(cls, _answer)
    app.add_exception_handler(HTTPException, _http_exception)
    for cls in DATABASE_ERRORS:
        app.add_exception_handler(cls, _database)
