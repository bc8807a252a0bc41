"""Pure retention decisions: per-resolution cut-offs from the defaults and per-metric overrides,
and what a write does with a sample given them.

Cut-offs are aligned down to the hour, the coarsest rollup, so no bucket of any resolution ever
straddles a cut-off: a bucket is either wholly kept or wholly expired.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from app.config import Settings
from app.services.rollup import BY_NAME, RESOLUTIONS, bucket_start, closed_before
from app.timeutil import to_ms

KINDS = ("raw", *(res.name for res in RESOLUTIONS))
ALIGN = BY_NAME["1h"]


def cutoff(now_ms: int, keep_ms: int) -> int:
    """Data before this has been kept for at least `keep_ms` and may go."""
    return bucket_start(now_ms - keep_ms, ALIGN)


@dataclass(frozen=True)
class RetentionPlan:
    """What may be dropped: per kind, '*' is the default cut-off, other keys are metrics."""

    raw_cutoffs: Mapping[str, int]
    rollup_cutoffs: Mapping[str, Mapping[str, int]]
    overridden: frozenset[str]

    def raw_cutoff(self, metric: str) -> int:
        return self.raw_cutoffs.get(metric, self.raw_cutoffs["*"])


def plan_retention(
    now_ms: int,
    defaults: Mapping[str, int],
    overrides: Mapping[str, Mapping[str, int]],
    rolled_up_before: int | None = None,
) -> RetentionPlan:
    """`defaults` maps each kind to how long it is kept (ms); `overrides` metric -> kind -> ms.
    Raw data at or after `rolled_up_before` (where the coarsest closed bucket ends) is kept
    whatever the policy says: it is not rolled up at every resolution yet."""

    def cutoffs(kind: str, ceiling: int | None = None) -> dict[str, int]:
        out = {"*": cutoff(now_ms, defaults[kind])}
        for metric, policy in overrides.items():
            out[metric] = cutoff(now_ms, policy.get(kind, defaults[kind]))
        if ceiling is not None:
            out = {key: min(value, ceiling) for key, value in out.items()}
        return out

    return RetentionPlan(
        raw_cutoffs=cutoffs("raw", rolled_up_before),
        rollup_cutoffs={res.name: cutoffs(res.name) for res in RESOLUTIONS},
        overridden=frozenset(overrides),
    )


def effective_policy(
    defaults: Mapping[str, int], override: Mapping[str, int] | None
) -> dict[str, int]:
    return {kind: (override or {}).get(kind, defaults[kind]) for kind in KINDS}


def retention_defaults(settings: Settings) -> dict[str, int]:
    """How long each kind of data is kept (ms) when a metric has no override."""
    return {
        "raw": to_ms(settings.retention_raw),
        "1m": to_ms(settings.retention_1m),
        "5m": to_ms(settings.retention_5m),
        "1h": to_ms(settings.retention_1h),
    }


# What a write does with a sample (docs/rollups-and-retention.md#writes-older-than-raw-retention).
RAW = 0  # at or after the metric's raw floor: stored raw
HISTORY = 1  # older, but within a rollup resolution's retention: into those rollups only
BEYOND = 2  # older than every retention of its metric: not stored


@dataclass(frozen=True)
class Floors:
    """What of one metric is kept now: raw samples from `raw` on, the buckets of each rollup
    resolution that start at or after `rollups[name]`."""

    raw: int
    rollups: Mapping[str, int]

    @property
    def oldest(self) -> int:
        """Before this nothing of the metric is kept."""
        return min(self.raw, *self.rollups.values())


def metric_floors(
    now_ms: int,
    defaults: Mapping[str, int],
    override: Mapping[str, int] | None,
    horizon: int | None,
    grace_ms: int,
) -> Floors:
    """The raw floor is the later of the raw cut-off as a retention run now computes it
    (`plan_retention`, rolled up before the last closed hour) and `horizon`, the time before which
    raw data has been dropped or history merged without it (it only moves forward, so a floor
    never moves back over data whose raw samples are gone). Rollup floors are the cut-offs."""
    policy = effective_policy(defaults, override)
    raw = min(cutoff(now_ms, policy["raw"]), closed_before(now_ms, grace_ms, ALIGN))
    if horizon is not None:
        raw = max(raw, horizon)
    return Floors(raw, {res.name: cutoff(now_ms, policy[res.name]) for res in RESOLUTIONS})


def classify(ts: np.ndarray, raw_floor: np.ndarray, oldest: np.ndarray) -> np.ndarray:
    """RAW, HISTORY or BEYOND per sample, from its time and its metric's floors (per sample)."""
    kinds = np.full(ts.size, RAW, dtype=np.int8)
    old = ts < raw_floor
    if old.any():
        kinds[old] = HISTORY
        kinds[old & (ts < oldest)] = BEYOND
    return kinds
