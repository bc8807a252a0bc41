"""Liveness and database status."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api.deps import StoreDep

router = APIRouter(tags=["health"])
PING_TIMEOUT_SECONDS = 5.0


@router.get("/health", summary="Liveness: the process answers")
async def health(store: StoreDep) -> dict[str, object]:
    return {"status": "ok", "backend": store.backend}


@router.get(
    "/db/status",
    summary="Database reachability and round-trip latency",
    responses={503: {"description": "Database unreachable; `detail` says why"}},
)
async def db_status(store: StoreDep) -> JSONResponse:
    try:
        latency = await asyncio.wait_for(store.ping(), PING_TIMEOUT_SECONDS)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"[:500]
        return JSONResponse(
            {"status": "error", "backend": store.backend, "detail": reason}, status_code=503
        )
    return JSONResponse({"status": "ok", "backend": store.backend, "latency_ms": round(latency, 3)})
