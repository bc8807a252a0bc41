"""Domain errors -> HTTP answers. Every error body is `{"detail": "<what is wrong, naming it>"}`."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from app.matchers import MatcherError
from app.storage.store import (
    CardinalityExceeded,
    HistoryConflict,
    QueryTimeout,
    UnknownMetric,
    is_connection_error,
)
from app.timeutil import TimeParseError
from app.validation import BatchTooLarge, InvalidInput

log = logging.getLogger("app.errors")


class PayloadTooLarge(Exception):
    """A request body larger than MAX_BODY_BYTES."""


class BadRequest(Exception):
    """Input that cannot be read at all (not JSON, wrong content)."""


def _json(status: int, detail: object) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _field_path(loc: tuple[object, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("query", "body", "path", "header")]
    return ".".join(parts) or "request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        messages = [f"{_field_path(tuple(e['loc']))}: {e['msg']}" for e in exc.errors()]
        return _json(422, "; ".join(messages))

    @app.exception_handler(BatchTooLarge)
    async def _too_many(_: Request, exc: BatchTooLarge) -> JSONResponse:
        return _json(413, str(exc))

    @app.exception_handler(PayloadTooLarge)
    async def _too_large(_: Request, exc: PayloadTooLarge) -> JSONResponse:
        return _json(413, str(exc))

    @app.exception_handler(BadRequest)
    async def _bad(_: Request, exc: BadRequest) -> JSONResponse:
        return _json(400, str(exc))

    for bad_input in (InvalidInput, MatcherError, TimeParseError):
        app.add_exception_handler(bad_input, _unprocessable)

    @app.exception_handler(HistoryConflict)
    async def _history(_: Request, exc: HistoryConflict) -> JSONResponse:
        return _json(422, f"sample {exc.position}: {exc}")

    @app.exception_handler(CardinalityExceeded)
    async def _cardinality(_: Request, exc: CardinalityExceeded) -> JSONResponse:
        return _json(429, str(exc))

    @app.exception_handler(QueryTimeout)
    async def _slow(_: Request, exc: QueryTimeout) -> JSONResponse:
        return _json(503, str(exc))

    @app.exception_handler(UnknownMetric)
    async def _unknown(_: Request, exc: UnknownMetric) -> JSONResponse:
        return _json(404, f"metric_name: unknown metric {exc.args[0]!r}")

    @app.exception_handler(SQLAlchemyError)
    async def _database(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        return _unavailable(request, exc)

    for outage in (OSError, ConnectionError, TimeoutError):
        app.add_exception_handler(outage, _unavailable_handler)


async def _unprocessable(_: Request, exc: Exception) -> JSONResponse:
    return _json(422, str(exc))


async def _unavailable_handler(request: Request, exc: Exception) -> JSONResponse:
    return _unavailable(request, exc)


def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    if is_connection_error(exc) or isinstance(exc, TimeoutError):
        log.warning("database unavailable on %s: %s", request.url.path, exc)
        return _json(503, f"database unavailable: {type(exc).__name__}: {exc}"[:500])
    sqlstate = str(getattr(getattr(exc, "orig", None), "sqlstate", "") or "")
    if sqlstate.startswith("22"):  # PostgreSQL "data exception": a value it cannot store
        return _json(422, f"a value the database cannot store: {getattr(exc, 'orig', exc)}"[:500])
    log.error("database error on %s", request.url.path, exc_info=exc)
    return _json(500, "internal database error")
