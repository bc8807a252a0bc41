"""Liveness and database status."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api.deps import StoreDep
from app.errors import retry_after
from app.storage import faults

router = APIRouter(tags=["health"])
PING_TIMEOUT_SECONDS = 5.0


@router.get("/health", summary="Liveness: the process answers")
async def health(store: StoreDep) -> dict[str, object]:
    return {"status": "ok", "backend": store.backend}


@router.get(
    "/db/status",
    summary="Whether the database takes writes now, and its round-trip latency",
    responses={
        503: {
            "description": "Writes would fail: the database is unreachable or too slow, its "
            "disk is full, or it is read-only; `detail` says which"
        }
    },
)
async def db_status(store: StoreDep) -> JSONResponse:
    """Checked on the path writes take: a round trip on the connection single-sample writes use
    (PostgreSQL, with its read-only state), the database file's disk (SQLite: `free_bytes`), and
    the fault the last write met unless one has succeeded since."""
    try:
        state = await asyncio.wait_for(store.write_path(), PING_TIMEOUT_SECONDS)
    except Exception as exc:
        fault = faults.classify(exc) or faults.Fault("unavailable", f"{type(exc).__name__}: {exc}")
        if isinstance(exc, TimeoutError):
            fault = faults.Fault("unavailable", f"no answer within {PING_TIMEOUT_SECONDS:g}s")
        return _error(store.backend, fault)
    if state.problem is not None:
        return _error(store.backend, state.problem, state.free_bytes)
    body: dict[str, object] = {
        "status": "ok",
        "backend": store.backend,
        "latency_ms": round(state.latency_ms, 3),
        "writable": True,
    }
    if state.free_bytes is not None:
        body["free_bytes"] = state.free_bytes
    return JSONResponse(body)


def _error(backend: str, fault: faults.Fault, free_bytes: int | None = None) -> JSONResponse:
    body: dict[str, object] = {
        "status": "error",
        "backend": backend,
        "detail": fault.message,
        "reason": fault.kind,
        "writable": False,
    }
    if free_bytes is not None:
        body["free_bytes"] = free_bytes
    return JSONResponse(body, status_code=503, headers=retry_after(fault.retry_after))
