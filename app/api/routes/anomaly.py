"""Anomaly detection over a range: z-score (default), rolling z-score, MAD, or the causal
detector (`auto`); raw points or rollups."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query

from app.api.deps import FiltersDep, MetricName, RangeDep, ReadKey, SettingsDep, StoreDep
from app.api.responses import FastJSON
from app.config import parse_duration
from app.schemas import AnomalyResponse, ErrorResponse
from app.services.anomaly import answers, classic_query, reader
from app.services.anomaly.detector import DEFAULT_LIKELIHOOD
from app.timeutil import now_ms, to_ms

router = APIRouter(
    tags=["anomaly detection"], dependencies=[ReadKey], default_response_class=FastJSON
)
Method = Literal["zscore", "rolling", "mad", "auto"]
DEFAULT_ZSCORE = 3.0


@router.get(
    "/anomaly/detect",
    response_model=AnomalyResponse,
    responses={404: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
    summary="Find anomalous points and events per series",
)
async def detect(
    metric_name: MetricName,
    time_range: RangeDep,
    filters: FiltersDep,
    store: StoreDep,
    settings: SettingsDep,
    threshold: Annotated[
        float | None,
        Query(
            gt=0,
            allow_inf_nan=False,
            description="A |z-score| for zscore, rolling and mad (default 3.0); a likelihood"
            " between 0 and 1 for auto (default 0.99999). Anomalies lie strictly above it.",
        ),
    ] = None,
    method: Method = "zscore",
    lookback: Annotated[
        str | None,
        Query(
            description="Trailing window for method=rolling, e.g. 1h. Default: 1h, or 60"
            " intervals of the series when longer; 60 buckets with `window`."
        ),
    ] = None,
    window: Annotated[
        Literal["1m", "5m", "1h"] | None,
        Query(
            description="Score rollup bucket averages instead of raw points. With method=auto"
            " the resolution is otherwise chosen from the data."
        ),
    ] = None,
) -> FastJSON:
    """`zscore`: |value - mean| / stddev over the range (population stddev); `rolling`: against a
    trailing `lookback` window; `mad`: 0.6745·|x - median| / MAD (MeanAD when MAD is 0). These
    judge each point with the whole range. `auto`: the causal detector: each point judged only on
    data before it (warm-up read from before start_time), seasonality found in the data, level
    shifts reported once, a calibrated likelihood; see docs/anomaly-detection.md."""
    start, end = time_range.start_ms, time_range.end_ms
    if method == "auto":
        likelihood = _likelihood(threshold)
        answer = await reader.detect_auto(
            store,
            metric_name,
            filters,
            start,
            end,
            threshold=likelihood,
            max_query_points=settings.max_query_points,
            now_ms=now_ms(),
            window=window,
        )
        return FastJSON(answers.auto_answer(metric_name, likelihood, answer, window))
    limit = DEFAULT_ZSCORE if threshold is None else threshold
    try:
        scored = await classic_query.detect_classic(
            store,
            metric_name,
            filters,
            start,
            end,
            method=method,
            threshold=limit,
            lookback_ms=_lookback_ms(lookback),
            window=window,
            max_query_points=settings.max_query_points,
        )
    except classic_query.TooManyPoints:
        raise HTTPException(
            422,
            "start_time: the range holds more than MAX_QUERY_POINTS"
            f" ({settings.max_query_points}) raw points; narrow it, score rollups with"
            " window=1m|5m|1h, or use method=auto",
        ) from None
    except ValueError as exc:  # sums of squares beyond float range
        raise HTTPException(
            422, f"window: cannot score rollups of these values ({exc}); omit window"
        ) from None
    return FastJSON(
        {
            "metric_name": metric_name,
            "threshold": limit,
            "threshold_kind": "zscore",
            "method": method,
            "window": window,
            "series": [answers.classic_series(s) for s in scored],
        }
    )


def _likelihood(threshold: float | None) -> float:
    if threshold is None:
        return DEFAULT_LIKELIHOOD
    if threshold >= 1:
        raise HTTPException(
            422,
            "threshold: with method=auto it is a likelihood between 0 and 1 (e.g. 0.99999),"
            f" got {threshold:g}",
        )
    return threshold


def _lookback_ms(lookback: str | None) -> int | None:
    if lookback is None:
        return None
    try:
        lookback_ms = to_ms(parse_duration(lookback))
    except ValueError as exc:
        raise HTTPException(422, f"lookback: {exc}") from None
    if lookback_ms <= 0:
        raise HTTPException(422, "lookback: must be positive")
    return lookback_ms
