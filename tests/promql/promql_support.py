"""Evaluating PromQL over series held in memory, for the evaluator's own tests.

`Universe` plays the part of the store behind `app.promql.loader`: for each selector of the
plan it hands over the matching series' samples in the planned range, stale markers included.
The evaluator itself is the real one.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from app.promql import plan
from app.promql.engine import Evaluator, Limits
from app.promql.query import _keeps_order, prepare
from app.promql.results import instant_result, range_result
from app.promql.selectors import LOOKBACK_MS, SeriesSet
from app.promql.values import labels_of

STALE = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]


@dataclass
class Universe:
    series: list[tuple[dict[str, str], np.ndarray, np.ndarray]] = field(default_factory=list)

    def add(self, labels: Mapping[str, str], ts: Sequence[int], values: Sequence[float]) -> None:
        order = np.argsort(np.asarray(ts, dtype=np.int64), kind="stable")
        self.series.append(
            (
                dict(labels),
                np.asarray(ts, dtype=np.int64)[order],
                np.asarray(values, dtype=np.float64)[order],
            )
        )

    def data(self, ranges: plan.Ranges) -> dict[Any, SeriesSet]:
        out = {}
        for matchers, (lo, hi) in ranges.items():
            labels, rows, ts, values = [], [], [], []
            for series_labels, s_ts, s_values in self.series:
                if not all(m.matches(series_labels) for m in matchers):
                    continue
                keep = (s_ts >= lo) & (s_ts <= hi)
                if not keep.any():
                    continue
                rows.append(np.full(int(keep.sum()), len(labels)))
                labels.append(labels_of(series_labels))
                ts.append(s_ts[keep])
                values.append(s_values[keep])
            if not labels:
                out[matchers] = SeriesSet.empty()
                continue
            out[matchers] = SeriesSet.from_rows(
                labels, np.concatenate(rows), np.concatenate(ts), np.concatenate(values)
            )
        return out


def _evaluate(universe: Universe, expr: str, times: np.ndarray, lookback: int) -> Any:
    node = prepare(expr, int(times[0]), int(times[-1]))
    ranges = plan.selector_ranges(node, int(times[0]), int(times[-1]), lookback, 10**9)
    limits = Limits(lookback_ms=lookback)
    return node, Evaluator(universe.data(ranges), limits).eval(node, times)


def instant(universe: Universe, expr: str, t_ms: int, lookback: int = LOOKBACK_MS) -> Any:
    """The `data` of /api/v1/query's answer, as parsed JSON."""
    node, value = _evaluate(universe, expr, np.array([t_ms], dtype=np.int64), lookback)
    result = instant_result(value, t_ms, keep_order=_keeps_order(node))
    return orjson.loads(result.envelope())["data"]


def range_query(universe: Universe, expr: str, start: int, end: int, step: int) -> Any:
    times = np.arange(start, end + 1, step, dtype=np.int64)
    _, value = _evaluate(universe, expr, times, LOOKBACK_MS)
    return orjson.loads(range_result(value, times).envelope())["data"]


def vector(data: Any) -> dict[tuple[tuple[str, str], ...], float]:
    """An instant vector answer as {labels: value}."""
    assert data["resultType"] == "vector", data
    return {
        tuple(sorted(item["metric"].items())): float(item["value"][1]) for item in data["result"]
    }


def one(data: Any) -> float:
    """The single value of an instant answer (vector of one series, or scalar)."""
    if data["resultType"] == "scalar":
        return float(data["result"][1])
    values = list(vector(data).values())
    assert len(values) == 1, data
    return values[0]


def matrix(data: Any) -> dict[tuple[tuple[str, str], ...], list[tuple[float, float]]]:
    assert data["resultType"] == "matrix", data
    return {
        tuple(sorted(item["metric"].items())): [(float(t), float(v)) for t, v in item["values"]]
        for item in data["result"]
    }


def close(a: float, b: float, rel: float = 1e-9) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-300) or abs(a - b) < 1e-12
