"""The Prometheus API's envelope, for the OpenAPI page (answers are built as bytes directly)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class PrometheusResponse(BaseModel):
    """`{"status": "success", "data": ...}` or `{"status": "error", "errorType", "error"}`."""

    status: Literal["success", "error"]
    data: Any = None
    errorType: str | None = Field(None, description="bad_data, execution, timeout, unavailable")
    error: str | None = None
    warnings: list[str] | None = None


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": PrometheusResponse, "description": "bad_data: a parameter or the query"},
    422: {"model": PrometheusResponse, "description": "execution: cannot be evaluated"},
    503: {"model": PrometheusResponse, "description": "timeout or unavailable database"},
}
