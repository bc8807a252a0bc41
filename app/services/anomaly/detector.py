"""The causal, streaming detector (`method=auto`): every point judged only on data before it.

    detect(ts, values, block_ms=..., history=..., judge_from_ms=..., threshold=...)

`history` holds the blocks before the first point (from stored rollups, or carried by a
`DetectorState`); `values` may start before `judge_from_ms` (warm-up, not reported). Because every
baseline comes from earlier, epoch-aligned blocks within a bounded look-back (`warmup_ms`), the
verdict on a point depends neither on where the query range starts nor on anything after it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.services.anomaly import calibration, events, points
from app.services.anomaly.blocks import DAY_MS, HOUR_MS, MINUTE_MS, WEEK_MS, Blocks, aggregate
from app.services.anomaly.model import BlockModel, Tuning, fit

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

DEFAULT_LIKELIHOOD = 0.99999
SEASONS = (None, "daily", "weekly")


def validate_likelihood(threshold: float) -> float:
    value = float(threshold)
    if not 0.0 < value < 1.0:
        raise ValueError(
            f"the likelihood threshold must lie strictly between 0 and 1, got {threshold!r}"
        )
    return value


def block_width(interval_ms: float) -> int:
    """The block width for a series sampled every `interval_ms`: 5 minutes up to 1-minute data,
    1 hour up to hourly data, 1 day up to daily data, else 1 week. Always a width the stored
    rollups have (5m, 1h) or can be merged into (1d, 1w from 1h)."""
    if interval_ms <= MINUTE_MS:
        return 5 * MINUTE_MS
    if interval_ms <= HOUR_MS:
        return HOUR_MS
    if interval_ms <= DAY_MS:
        return DAY_MS
    return WEEK_MS


def warmup_ms(block_ms: int, tuning: Tuning | None = None) -> int:
    """How much history before the first judged point the detector reads: the weekly profile's
    periods plus the longest chain of trailing windows, aligned to the block width."""
    t = tuning or Tuning()
    return t.weekly_periods * WEEK_MS + (t.horizon(block_ms) + 1) * block_ms


@dataclass(frozen=True, eq=False)
class AutoResult:
    """Verdicts on the points from `judge_from_ms` on (arrays over those points)."""

    ts: IntArray
    values: FloatArray
    judged: BoolArray
    expected: FloatArray
    zscore: FloatArray
    likelihood: FloatArray
    anomalous: BoolArray  # the points listed as anomalies (one per level shift)
    events: list[events.Event]
    event_ts: IntArray  # all points the events index into (warm-up included)
    event_values: FloatArray
    season: str | None
    block_ms: int
    interval_ms: float | None
    model: BlockModel

    @property
    def count(self) -> int:
        return int(self.ts.size)


def detect(
    ts_ms: npt.ArrayLike,
    values: npt.ArrayLike,
    *,
    block_ms: int,
    threshold: float = DEFAULT_LIKELIHOOD,
    history: Blocks | None = None,
    judge_from_ms: int | None = None,
    complete_until_ms: int | None = None,
    now_ms: int | None = None,
    tuning: Tuning | None = None,
) -> AutoResult:
    """Judge the points from `judge_from_ms` on. Blocks ending by `complete_until_ms` (default:
    all but the last block with data) are complete; `now_ms` also judges the silence after the
    last point. Non-finite values (stale markers) are left out."""
    alpha = 1.0 - validate_likelihood(threshold)
    ts = np.asarray(ts_ms, dtype=np.int64)
    x = np.asarray(values, dtype=np.float64)
    if ts.shape != x.shape or ts.ndim != 1:
        raise ValueError("timestamps and values must be one-dimensional and of one length")
    keep = np.isfinite(x)
    ts, x = ts[keep], x[keep]
    if ts.size and np.any(np.diff(ts) <= 0):
        raise ValueError("timestamps must be strictly ascending")
    own = aggregate(ts, x, block_ms)
    past = history.before(int(own.index[0])) if history is not None and ts.size else history
    blocks = past.concat(own) if past is not None else own
    complete = _complete_blocks(blocks, complete_until_ms)
    model = fit(blocks, complete, alpha, tuning)
    verdicts = points.judge(ts, x, model)
    found = events.find(ts, verdicts, model, alpha)
    if now_ms is not None and ts.size:
        found += _silence(model, ts, now_ms, alpha)
    start = judge_from_ms if judge_from_ms is not None else (int(ts[0]) if ts.size else 0)
    return _result(ts, x, verdicts, model, found, start, alpha)


def _complete_blocks(blocks: Blocks, complete_until_ms: int | None) -> int:
    if len(blocks) == 0:
        return 0
    if complete_until_ms is None:
        return len(blocks) - 1
    ends = (blocks.index + 1) * blocks.width_ms
    return int(np.searchsorted(ends, complete_until_ms, side="right"))


def _silence(model: BlockModel, ts: IntArray, now_ms: int, alpha: float) -> list[events.Event]:
    p = points.trailing_gap_p(model, int(ts[-1]), now_ms)
    if not calibration.below(np.array([p]), alpha)[0]:
        return []
    return [events.Event(int(ts[-1]), int(now_ms), "missing", p, int(ts.size - 1), 0)]


def _result(
    ts: IntArray,
    x: FloatArray,
    verdicts: points.PointVerdicts,
    model: BlockModel,
    found: list[events.Event],
    start: int,
    alpha: float,
) -> AutoResult:
    first = int(np.searchsorted(ts, start, side="left"))
    sl = slice(first, None)
    anomalous = calibration.below(verdicts.p, alpha)
    for event in found:
        if event.kind == "level_shift":  # reported once: its first anomalous point only
            lo = int(np.searchsorted(ts, event.start_ms, side="left"))
            hi = int(np.searchsorted(ts, event.end_ms, side="right"))
            hits = np.flatnonzero(anomalous[lo:hi])
            anomalous[lo:hi] = False
            anomalous[lo + (int(hits[0]) if hits.size else 0)] = True
    kept = [e for e in found if e.end_ms >= start]
    judged = verdicts.judged[sl]
    last_judged = np.flatnonzero(model.judged)
    season = SEASONS[int(model.season[last_judged[-1]])] if last_judged.size else None
    interval = float(model.interval[last_judged[-1]]) if last_judged.size else None
    return AutoResult(
        ts=ts[sl],
        values=x[sl],
        judged=judged,
        expected=np.where(judged, verdicts.expected[sl], np.nan),
        zscore=verdicts.zscore[sl],
        likelihood=np.where(judged, calibration.likelihood(verdicts.p[sl]), np.nan),
        anomalous=anomalous[sl] & judged,
        events=kept,
        event_ts=ts,
        event_values=x,
        season=season,
        block_ms=model.blocks.width_ms,
        interval_ms=interval,
        model=model,
    )
