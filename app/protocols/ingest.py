"""Storing what a protocol request holds: the one write every outside protocol ends in."""

from __future__ import annotations

import numpy as np
from fastapi import Request

from app import observability
from app.errors import PartialWrite, Unavailable
from app.protocols.builder import SeriesBuilder
from app.protocols.report import WriteReport, describe, drop_out_of_bounds
from app.storage.store import AppendResult, Store


def accepting_writes(request: Request) -> None:
    """Refuse with a 503 (and Retry-After) once the server has begun shutting down."""
    if getattr(request.app.state, "shutting_down", False):
        raise Unavailable("the server is shutting down; retry")


async def store_request(
    request: Request,
    store: Store,
    builder: SeriesBuilder,
    report: WriteReport,
    max_ms: int,
    protocol: str,
) -> AppendResult:
    """Write the request's valid samples (one transaction, committed before the answer), refuse
    the invalid ones series by series, count both on /metrics; raise PartialWrite when anything
    was refused, after the rest is stored."""
    batch = drop_out_of_bounds(builder.build(), max_ms, report)
    result = await store.append(batch, all_or_nothing=False)
    if result.rejected:
        counts = np.bincount(batch.series_index, minlength=len(batch.keys))
        for slot, reason in result.rejected.items():
            report.refuse(f"series {describe(batch, slot)}: {reason}", int(counts[slot]))
    observability.count_ingested(request, result.written)
    observability.count_protocol(request, protocol, result, report)
    if report.refused:
        raise PartialWrite(report.summary())
    return result
