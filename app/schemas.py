"""The HTTP contract as pydantic models, for the OpenAPI page at /docs.

Request bodies are validated by `app.validation` (one pass, no object per sample); these models
describe the same shapes. Responses are built as plain data and serialized with orjson.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

TIME_DOC = "RFC 3339 (no offset means UTC) or epoch seconds (fractions allowed)."


class IngestSample(BaseModel):
    metric_name: str = Field(
        max_length=255, pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$", examples=["cpu_usage"]
    )
    value: float = Field(description="A finite number.", examples=[75.5])
    timestamp: str | float | None = Field(
        None, description=f"{TIME_DOC} Defaults to server time.", examples=["2025-12-03T12:00:00Z"]
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="At most 32; names match ^[a-zA-Z_][a-zA-Z0-9_]*$, values up to 1,024 chars.",
        examples=[{"host": "server1", "region": "us-west"}],
    )


class ColumnarSeries(BaseModel):
    metric_name: str = Field(examples=["cpu_usage"])
    labels: dict[str, str] = Field(default_factory=dict)
    timestamps: list[str | float] = Field(description=f"Each {TIME_DOC}")
    values: list[float] = Field(description="Same length as timestamps.")


class BackfillRequest(BaseModel):
    metrics: list[IngestSample] | None = Field(
        None, description="Samples, at most MAX_BATCH in one request (all-or-nothing)."
    )
    series: list[ColumnarSeries] | None = Field(
        None, description="Columnar form: one entry per series with parallel arrays."
    )


WRITE_COUNTS = {
    "raw": "Samples stored raw (at or after the metric's raw data retention cut-off).",
    "rollups_only": "Older samples merged into the rollups that still retain their time only.",
    "beyond_retention": "Samples older than every retention of their metric: not stored.",
}


class IngestResponse(BaseModel):
    """What became of the sample (docs/rollups-and-retention.md): one of the counts is 1."""

    status: str = "ok"
    raw: int = Field(description=WRITE_COUNTS["raw"])
    rollups_only: int = Field(description=WRITE_COUNTS["rollups_only"])
    beyond_retention: int = Field(description=WRITE_COUNTS["beyond_retention"])


class BackfillResponse(BaseModel):
    status: str = "ok"
    imported: int = Field(description="Samples stored: raw + rollups_only.")
    series: int
    raw: int = Field(description=WRITE_COUNTS["raw"])
    rollups_only: int = Field(description=WRITE_COUNTS["rollups_only"])
    beyond_retention: int = Field(description=WRITE_COUNTS["beyond_retention"])


class NamesResponse(BaseModel):
    names: list[str]


class RawPoint(BaseModel):
    timestamp: str
    value: float | None = Field(description="null when `special` is set.")
    special: Literal["stale", "NaN", "+Inf", "-Inf"] | None = Field(
        None,
        description="Only on points JSON cannot carry as a number: a Prometheus stale marker"
        " (the series ended), NaN, or an infinity, stored bit for bit as the outside protocols"
        " sent them.",
    )


class RawSeries(BaseModel):
    labels: dict[str, str]
    points: list[RawPoint]


class RawQueryResponse(BaseModel):
    metric_name: str
    start_time: str
    end_time: str
    raw_retained_from: str = Field(
        description="Raw samples of this metric are kept from this time on; the answer holds "
        "none before it (older data lives in the rollups that retain it)."
    )
    series: list[RawSeries] = Field(description="Series with points in the range.")
    truncated: bool = Field(description="True when `limit` cut the answer short.")


class RollupPoint(BaseModel):
    timestamp: str = Field(description="Bucket start, aligned to the Unix epoch.")
    avg: float
    min: float
    max: float
    sum: float
    count: int
    stddev: float = Field(description="Population standard deviation within the bucket.")
    last: float = Field(description="The value at the latest timestamp in the bucket.")


class RollupSeries(BaseModel):
    labels: dict[str, str]
    points: list[RollupPoint]


class RollupQueryResponse(BaseModel):
    metric_name: str
    window: str
    start_time: str
    end_time: str
    materialized_until: str | None = Field(
        description="Buckets before this come from rollup tables; later ones from raw, live."
    )
    retained_from: str = Field(
        description="Buckets of this window are kept from this time on; none before it."
    )
    series: list[RollupSeries] = Field(description="Series with buckets in the range.")


class Anomaly(BaseModel):
    timestamp: str
    value: float
    zscore: float


class AnomalySeries(BaseModel):
    labels: dict[str, str]
    count: int
    mean: float | None
    stddev: float | None
    anomalies: list[Anomaly]


class AnomalyResponse(BaseModel):
    metric_name: str
    threshold: float
    method: str
    window: str | None = Field(None, description="The rollup scored, if any.")
    series: list[AnomalySeries] = Field(description="Series with points in the range.")


class ErrorResponse(BaseModel):
    detail: Any


DOCUMENTED_MODELS: list[type[BaseModel]] = [
    IngestSample,
    ColumnarSeries,
    BackfillRequest,
    ErrorResponse,
]
