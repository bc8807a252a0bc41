"""Reading what the causal detector needs through the store's public reads, then judging: the
one place the HTTP route and the alert job share. The decisions are pure (`resolution.plan`,
`detector.detect`); this module only fetches and hands over.

For raw points: the hourly rollups of the range and the day before it (volume and interval),
the blocks of the warm-up from the rollup of the block width (exact aggregates, so a verdict is
the same as if every raw point of the warm-up had been read), and the raw points from one block
before the range's first block. For a rollup resolution: its buckets over warm-up and range.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from app.matchers import Matcher
from app.services.anomaly import resolution
from app.services.anomaly.blocks import DAY_MS, Blocks, from_rollups
from app.services.anomaly.detector import AutoResult, detect
from app.services.buckets import bucket_avg_stddev
from app.services.rollup import BY_NAME, Resolution
from app.storage.reads import RollupData, SeriesData

LabelKey = tuple[tuple[str, str], ...]


class Reads(Protocol):
    """The store's public read methods this module uses."""

    async def select_raw(
        self, metric: str, matchers: Sequence[Matcher], start_ms: int, end_ms: int, limit: int
    ) -> tuple[list[SeriesData], bool]: ...

    async def select_rollup(
        self,
        metric: str,
        matchers: Sequence[Matcher],
        res: Resolution,
        start_ms: int,
        end_ms: int,
    ) -> tuple[list[RollupData], int | None]: ...


@dataclass(frozen=True, eq=False)
class Judged:
    labels: dict[str, str]
    result: AutoResult


@dataclass(frozen=True, eq=False)
class AutoAnswer:
    plan: resolution.Plan
    series: list[Judged]


def key(labels: dict[str, str]) -> LabelKey:
    return tuple(sorted(labels.items()))


async def detect_auto(
    store: Reads,
    metric: str,
    matchers: Sequence[Matcher],
    start_ms: int,
    end_ms: int,
    *,
    threshold: float,
    max_query_points: int,
    now_ms: int,
    window: str | None = None,
) -> AutoAnswer:
    """Judge every series of `metric` matching `matchers` with points in [start, end]."""
    hourly, _ = await store.select_rollup(
        metric, matchers, BY_NAME["1h"], start_ms - DAY_MS, end_ms
    )
    volumes = {
        key(s.labels): resolution.volume(s.bucket, s.count, start_ms, end_ms) for s in hourly
    }
    present = {k: v for k, v in volumes.items() if v.points > 0}
    plan = resolution.plan(list(present.values()), start_ms, end_ms, max_query_points, window)
    settings = _Judging(threshold, end_ms, min(end_ms, now_ms))
    if plan.window is None:
        judged = await _judge_raw(
            store, metric, matchers, start_ms, plan, settings, max_query_points
        )
        if judged is not None:
            return AutoAnswer(plan, [j for j in judged if key(j.labels) in present])
        plan = resolution.plan(list(present.values()), start_ms, end_ms, 0, None)
    judged = await _judge_rollups(store, metric, matchers, start_ms, plan, settings)
    return AutoAnswer(plan, [j for j in judged if key(j.labels) in present])


@dataclass(frozen=True)
class _Judging:
    threshold: float
    end_ms: int
    now_ms: int


async def _judge_raw(
    store: Reads,
    metric: str,
    matchers: Sequence[Matcher],
    start_ms: int,
    plan: resolution.Plan,
    judging: _Judging,
    limit: int,
) -> list[Judged] | None:
    """Raw points judged with warm-up blocks from the rollups; None when the raw points of the
    range are more than `limit` (the caller then judges a rollup)."""
    width = plan.block_ms
    raw_from = start_ms - start_ms % width - width
    history = await read_blocks(store, metric, matchers, width, raw_from - plan.warmup_ms, raw_from)
    raw, truncated = await store.select_raw(metric, matchers, raw_from, judging.end_ms, limit)
    if truncated:
        return None
    return [
        Judged(
            s.labels,
            judge(s.ts, s.values, width, history.get(key(s.labels)), start_ms, judging),
        )
        for s in raw
    ]


async def _judge_rollups(
    store: Reads,
    metric: str,
    matchers: Sequence[Matcher],
    start_ms: int,
    plan: resolution.Plan,
    judging: _Judging,
) -> list[Judged]:
    assert plan.window is not None
    res = BY_NAME[plan.window]
    first = start_ms - start_ms % res.ms
    buckets, _ = await store.select_rollup(
        metric, matchers, res, first - plan.warmup_ms, judging.end_ms
    )
    out = []
    for b in buckets:
        avg, _ = bucket_avg_stddev(b.count, b.sum, b.sumsq)
        keep = b.count > 0
        result = judge(b.bucket[keep], avg[keep], plan.block_ms, None, first, judging)
        out.append(Judged(b.labels, result))
    return out


def judge(
    ts: np.ndarray,
    values: np.ndarray,
    block_ms: int,
    history: Blocks | None,
    judge_from_ms: int,
    judging: _Judging,
) -> AutoResult:
    return detect(
        ts,
        values,
        block_ms=block_ms,
        threshold=judging.threshold,
        history=history,
        judge_from_ms=judge_from_ms,
        complete_until_ms=judging.end_ms + 1,
        now_ms=judging.now_ms,
    )


async def read_blocks(
    store: Reads,
    metric: str,
    matchers: Sequence[Matcher],
    block_ms: int,
    start_ms: int,
    end_ms: int,
) -> dict[LabelKey, Blocks]:
    """Blocks of `block_ms` per series over [start, end), from the stored rollups."""
    res = resolution.rollup_for_blocks(block_ms)
    start = start_ms - start_ms % block_ms
    if end_ms <= start:
        return {}
    rollups, _ = await store.select_rollup(metric, matchers, res, start, end_ms - 1)
    out = {}
    for r in rollups:
        inside = r.bucket < end_ms - end_ms % block_ms
        blocks = from_rollups(
            r.bucket[inside],
            r.count[inside],
            r.sum[inside],
            r.sumsq[inside],
            r.min[inside],
            r.max[inside],
            res.ms,
            block_ms,
        )
        out[key(r.labels)] = blocks
    return out
