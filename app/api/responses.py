"""A JSON response serialized by orjson (numbers, strings, lists; no per-point models), and the
ready answers of the write endpoints."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse

from app.services.retention import BEYOND, HISTORY, RAW
from app.storage.store import AppendResult


class FastJSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def write_counts(result: AppendResult) -> dict[str, int]:
    """What a write did: samples stored raw, merged into rollups only, beyond every retention
    (docs/rollups-and-retention.md#writes-older-than-raw-retention)."""
    return {
        "raw": result.raw,
        "rollups_only": result.rollups_only,
        "beyond_retention": result.beyond_retention,
    }


# `POST /metrics/ingest`, by what became of the sample: ready bytes, nothing serialized per request.
INGEST_ANSWERS = {
    kind: orjson.dumps({"status": "ok", **counts})
    for kind, counts in {
        RAW: {"raw": 1, "rollups_only": 0, "beyond_retention": 0},
        HISTORY: {"raw": 0, "rollups_only": 1, "beyond_retention": 0},
        BEYOND: {"raw": 0, "rollups_only": 0, "beyond_retention": 1},
    }.items()
}
