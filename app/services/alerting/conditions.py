"""When a rule's condition holds for one series: runs of time, from the detector's events
(anomaly rules) or from the points themselves (threshold rules). Pure."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.services.alerting.rules import ThresholdCondition
from app.services.anomaly.calibration import likelihood
from app.services.anomaly.detector import AutoResult


@dataclass(frozen=True)
class Run:
    """The condition held from start to end (inclusive); `open` when it still holds at the
    series' latest point, so it may go on."""

    start_ms: int
    end_ms: int
    open: bool
    value: float  # the value to report: the run's most extreme point
    score: float | None  # the likelihood (anomaly rules)
    kind: str = "threshold"


def threshold_runs(
    ts_ms: np.ndarray, values: np.ndarray, condition: ThresholdCondition, after_ms: int
) -> list[Run]:
    """Runs of consecutive points after `after_ms` beyond the threshold (strictly)."""
    keep = (ts_ms > after_ms) & np.isfinite(values)
    ts, x = ts_ms[keep], values[keep]
    hit = x > condition.value if condition.op == ">" else x < condition.value
    if not hit.any():
        return []
    edges = np.flatnonzero(np.diff(np.concatenate(([0], hit.astype(np.int8), [0]))))
    runs = []
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        part = x[start:stop]
        peak = float(part.max() if condition.op == ">" else part.min())
        runs.append(Run(int(ts[start]), int(ts[stop - 1]), bool(stop == ts.size), peak, None))
    return runs


def anomaly_runs(result: AutoResult, after_ms: int, now_ms: int) -> list[Run]:
    """The events still going on after `after_ms`; open when they reach the latest point (or,
    for missing data, now)."""
    if result.event_ts.size == 0:
        return []
    latest = int(result.event_ts[-1])
    runs = []
    for event in result.events:
        if event.end_ms <= after_ms:
            continue
        reaches = event.end_ms >= latest or (event.kind == "missing" and event.end_ms >= now_ms)
        value = float(result.event_values[event.peak])
        score = float(likelihood(event.p))
        runs.append(Run(event.start_ms, event.end_ms, reaches, value, score, event.kind))
    return runs
