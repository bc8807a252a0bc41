"""Query results in the shape of Prometheus' HTTP API (`resultType` and `result`), encoded to
JSON bytes without a Python object per character: values formatted as Prometheus formats them
(app.promql.format), timestamps as seconds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import orjson

from app.promql.format import format_timestamp, format_timestamps, format_values
from app.promql.selectors import window_samples
from app.promql.values import InstantVector, Labels, RangeVector, Scalar, StringValue, Value

ResultType = Literal["vector", "matrix", "scalar", "string"]


@dataclass
class QueryResult:
    result_type: ResultType
    result: object  # JSON-ready
    warnings: list[str] = field(default_factory=list)

    def envelope(self) -> bytes:
        body: dict[str, object] = {
            "status": "success",
            "data": {"resultType": self.result_type, "result": self.result},
        }
        if self.warnings:
            body["warnings"] = self.warnings
        return orjson.dumps(body)

    @property
    def series_count(self) -> int:
        return len(self.result) if isinstance(self.result, list) else 0


def _metric(labels: Labels) -> dict[str, str]:
    return dict(labels)


def matrix_series(labels: Labels, ts: np.ndarray, values: np.ndarray) -> dict[str, object]:
    pairs = list(zip(format_timestamps(ts), format_values(values), strict=True))
    return {"metric": _metric(labels), "values": pairs}


def range_result(value: Value, times: np.ndarray) -> QueryResult:
    """A range query's answer: a matrix sorted by labels (a scalar becomes one series)."""
    if isinstance(value, Scalar):
        value = InstantVector([()], value.values[None, :], np.ones((1, times.size), dtype=bool))
    assert isinstance(value, InstantVector)
    out = []
    for row in sorted(range(len(value.labels)), key=lambda r: value.labels[r]):
        here = value.present[row]
        if here.any():
            out.append(matrix_series(value.labels[row], times[here], value.values[row, here]))
    return QueryResult("matrix", out)


def instant_result(value: Value, time_ms: int, keep_order: bool) -> QueryResult:
    if isinstance(value, Scalar):
        return QueryResult("scalar", [format_timestamp(time_ms), format_values(value.values)[0]])
    if isinstance(value, StringValue):
        return QueryResult("string", [format_timestamp(time_ms), value.value])
    if isinstance(value, RangeVector):
        samples = sorted(window_samples(value), key=lambda item: item[0])
        return QueryResult("matrix", [matrix_series(lb, ts, v) for lb, ts, v in samples])
    rows = [r for r in range(len(value.labels)) if value.present[r, 0]]
    if not keep_order:
        rows.sort(key=lambda r: value.labels[r])
    texts = format_values(value.values[rows, 0]) if rows else []
    stamp = format_timestamp(time_ms)
    out = [
        {"metric": _metric(value.labels[r]), "value": [stamp, text]}
        for r, text in zip(rows, texts, strict=True)
    ]
    return QueryResult("vector", out)
