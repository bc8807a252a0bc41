"""The JSON shape of `GET /anomaly/detect` answers, from detector results (pure)."""

from __future__ import annotations

import math

import numpy as np

from app.services.anomaly import calibration, classic
from app.services.anomaly.classic_query import Scored
from app.services.anomaly.detector import AutoResult
from app.services.anomaly.events import MERGE_POINTS, Event
from app.services.anomaly.reader import AutoAnswer
from app.timeutil import format_ms, format_ms_array

Json = dict[str, object]


def classic_series(scored: Scored) -> Json:
    """The API.md shape, plus `likelihood` per anomaly and merged `events`."""
    result = scored.result
    idx = result.indices
    stamps = format_ms_array(scored.ts[idx])
    likelihoods = calibration.gaussian_likelihood(result.zscores).tolist()
    values = scored.values[idx].tolist()
    anomalies = [
        {"timestamp": t, "value": v, "zscore": z, "likelihood": lk}
        for t, v, z, lk in zip(stamps, values, result.zscores.tolist(), likelihoods, strict=True)
    ]
    return {
        "labels": scored.labels,
        "count": result.count,
        "mean": result.mean,
        "stddev": result.stddev,
        "anomalies": anomalies,
        "events": _classic_events(anomalies, idx, result),
    }


def _classic_events(
    anomalies: list[Json], idx: np.ndarray, result: classic.SeriesAnomalies
) -> list[Json]:
    """Flagged points at most MERGE_POINTS unflagged positions apart, as one event each."""
    if idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) > MERGE_POINTS + 1) + 1
    events = []
    for run in np.split(np.arange(idx.size), breaks):
        peak = int(run[np.argmax(np.abs(result.zscores[run]))])
        events.append(
            {
                "start": anomalies[int(run[0])]["timestamp"],
                "end": anomalies[int(run[-1])]["timestamp"],
                "kind": "spike" if result.zscores[peak] > 0 else "dip",
                "score": anomalies[peak]["likelihood"],
                "points": int(run.size),
                "peak": anomalies[peak],
            }
        )
    return events


def auto_series(labels: dict[str, str], r: AutoResult, block_name: str) -> Json:
    judged = r.judged
    values = r.values
    mean = float(np.mean(values)) if values.size else None
    stddev = float(np.std(values)) if values.size else None
    flagged = np.flatnonzero(r.anomalous)
    stamps = format_ms_array(r.ts[flagged])
    anomalies = [
        {
            "timestamp": t,
            "value": float(values[i]),
            "zscore": _finite(r.zscore[i]),
            "likelihood": float(r.likelihood[i]),
            "expected": _finite(r.expected[i]),
        }
        for t, i in zip(stamps, flagged.tolist(), strict=True)
    ]
    return {
        "labels": labels,
        "count": int(values.size),
        "mean": mean,
        "stddev": stddev,
        "judged": int(judged.sum()),
        "season": r.season,
        "interval_ms": None if r.interval_ms is None else round(r.interval_ms),
        "block": block_name,
        "anomalies": anomalies,
        "events": [_auto_event(e, r) for e in r.events],
    }


def _auto_event(event: Event, r: AutoResult) -> Json:
    offset = r.event_ts.size - r.ts.size  # events index into warm-up and judged points
    peak = event.peak
    z = r.zscore[peak - offset] if peak >= offset else math.nan
    likelihood = r.likelihood[peak - offset] if peak >= offset else math.nan
    return {
        "start": format_ms(event.start_ms),
        "end": format_ms(event.end_ms),
        "kind": event.kind,
        "score": float(calibration.likelihood(event.p)),
        "points": event.points,
        "peak": {
            "timestamp": format_ms(int(r.event_ts[peak])),
            "value": float(r.event_values[peak]),
            "zscore": _finite(z),
            "likelihood": _finite(likelihood),
        },
    }


def auto_answer(metric: str, threshold: float, answer: AutoAnswer, window: str | None) -> Json:
    block = _duration_name(answer.plan.block_ms)
    return {
        "metric_name": metric,
        "threshold": threshold,
        "threshold_kind": "likelihood",
        "method": "auto",
        "window": window,
        "resolution": answer.plan.resolution,
        "series": [auto_series(j.labels, j.result, block) for j in answer.series],
    }


def _finite(value: float) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _duration_name(ms: int) -> str:
    for unit, size in (("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
